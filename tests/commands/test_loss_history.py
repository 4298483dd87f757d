"""A resumed run keeps its whole training-loss history: figure and JSON equal the uninterrupted run's."""

import json

import numpy as np
import pytest

from minireptile.checkpoint import load_checkpoint, save_checkpoint
from minireptile.cli import main
from minireptile.commands import loss_history
from minireptile.commands.loss_history import LossHistory
from minireptile.errors import CheckpointError

RUN = ["--iters", "40", "--eval-tasks", "2", "--no-plot", "--backend", "numpy", "--seed", "4", "--quiet",
       "--checkpoint-every", "7"]


def test_the_history_does_not_depend_on_how_training_was_cut(monkeypatch):
    monkeypatch.setattr(loss_history, "MAX_WINDOWS", 8)              # 50 iterations: windows of 7
    values = np.random.default_rng(0).random(50).astype(np.float32)
    whole = LossHistory.for_run(None, 50)
    whole.add(values)
    assert whole.every == 7 and len(whole.sums) == 8
    pieces = LossHistory.for_run(None, 50)
    for a, b in [(0, 3), (3, 10), (10, 11), (11, 50)]:
        ck = {"iteration": a, "loss_history": pieces.state(a)}      # through a checkpoint at every cut
        pieces = LossHistory.for_run(ck, 50)
        pieces.add(values[a:b])
    assert pieces.state(50)[2].tobytes() == whole.state(50)[2].tobytes()
    it, loss, every = whole.curve(points=3)
    assert every == 14 and it.tolist() == [14, 28, 42]
    np.testing.assert_allclose(loss, values[:42].astype(np.float64).reshape(3, 14).mean(axis=1), rtol=1e-12)


def test_with_windows_of_one_the_curve_averages_whole_groups_of_iterations():
    values = np.random.default_rng(1).random(1000)
    history = LossHistory.for_run(None, 1000)
    history.add(values[:400])
    history.add(values[400:])
    it, loss, every = history.curve()                                 # 300 points: groups of 3, the last one dropped
    assert every == 3 and it.tolist() == list(range(3, 1000, 3))
    np.testing.assert_array_equal(loss, values[:999].reshape(333, 3).mean(axis=1))


def test_a_resumed_run_reports_the_uninterrupted_runs_history(tmp_path):
    main(["sine", *RUN, "--out", str(tmp_path / "a"), "--json", str(tmp_path / "a.json")])
    main(["sine", *RUN, "--out", str(tmp_path / "b"), "--stop-after", "17"])
    main(["sine", "--resume", str(tmp_path / "b" / "checkpoint.npz"), "--no-plot", "--quiet", "--json",
          str(tmp_path / "b.json")])
    main(["sine", "--resume", str(tmp_path / "a" / "checkpoint.npz"), "--no-plot", "--quiet", "--json",
          str(tmp_path / "again.json")])                                  # a finished run, resumed
    a, b, again = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("a", "b", "again"))
    assert b["start_iteration"] == 17 and again["start_iteration"] == 40
    assert len(a["train_loss"]["loss"]) == 40 and a["train_loss"]["iteration"][0] == 1
    assert b["train_loss"] == a["train_loss"] == again["train_loss"]
    ck_a, ck_b = (load_checkpoint(tmp_path / n / "checkpoint.npz") for n in ("a", "b"))
    assert ck_a["loss_history"][:2] == ck_b["loss_history"][:2] == (0, 1)
    assert ck_a["loss_history"][2].tobytes() == ck_b["loss_history"][2].tobytes()


def test_a_checkpoint_without_a_history_still_resumes(tmp_path):
    main(["sine", *RUN, "--out", str(tmp_path), "--stop-after", "10"])
    ck = load_checkpoint(tmp_path / "checkpoint.npz")
    save_checkpoint(tmp_path / "checkpoint.npz", ck["theta"], ck["config"], 10, status="stopped")   # as before
    assert load_checkpoint(tmp_path / "checkpoint.npz")["loss_history"] is None
    assert main(["sine", "--resume", str(tmp_path / "checkpoint.npz"), "--no-plot", "--quiet", "--json",
                 str(tmp_path / "r.json")]) == 0
    curve = json.loads((tmp_path / "r.json").read_text())["train_loss"]
    assert curve["iteration"][0] == 11 and curve["iteration"][-1] == 40    # from where the history starts
    assert load_checkpoint(tmp_path / "checkpoint.npz")["loss_history"][:2] == (10, 1)


def test_a_history_that_does_not_fit_the_iteration_is_refused(tmp_path):
    theta = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="loss_history: 2 windows of 1 iterations from iteration 0 do not end"):
        save_checkpoint(tmp_path / "c.npz", theta, {}, 3, loss_history=(0, 1, np.zeros(2)))
    save_checkpoint(tmp_path / "c.npz", theta, {}, 3, loss_history=(0, 2, np.ones(2)))
    assert load_checkpoint(tmp_path / "c.npz")["loss_history"][:2] == (0, 2)
    with np.load(tmp_path / "c.npz") as z:
        arrays = dict(z)
    arrays["loss_history_at"] = np.array([0, 1])
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CheckpointError, match="corrupted: loss history: 2 windows of 1 iterations"):
        load_checkpoint(tmp_path / "bad.npz")
    del arrays["loss_history"]
    np.savez(tmp_path / "half.npz", **arrays)
    with pytest.raises(CheckpointError, match="the loss history is incomplete"):
        load_checkpoint(tmp_path / "half.npz")
