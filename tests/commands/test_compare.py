"""``minireptile compare`` end to end on a tiny budget, and its flag errors."""

import json

import numpy as np
import pytest

from minireptile.checkpoint import load_checkpoint
from minireptile.cli import main
from minireptile.commands.compare import ALGORITHMS, LABELS


def test_compare_prints_the_table_for_every_algorithm_and_writes_json(tmp_path, capsys):
    out = tmp_path / "compare.json"
    status = main(["compare", "--out", str(tmp_path / "run"), "--iters", "3", "--meta-batch", "2", "--eval-tasks", "6", "--backend", "numpy",
                   "--quiet", "--json", str(out)])
    assert status == 0
    text = capsys.readouterr().out
    header = "| algorithm | K=5, 1 step | K=5, 5 steps | K=5, 10 steps | K=10, 1 step | K=10, 5 steps | K=10, 10 steps |"
    assert header in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "±" in line]
    assert [r.split(" | ")[0][2:] for r in rows] == [LABELS[a] for a in ALGORITHMS]
    summary = json.loads(out.read_text())
    assert summary["iters"] == 3 and set(summary["results"]) == set(ALGORITHMS)
    maml = summary["results"]["maml"]["10"]
    assert maml["steps"] == [0, 1, 5, 10] and np.isfinite(maml["mean"]).all()
    # random init is θ0 unchanged: its step-0 loss is the same for K = 5 and 10 (same query points)
    rnd = summary["results"]["random"]
    assert rnd["5"]["mean"][0] == rnd["10"]["mean"][0]
    # every trained algorithm moved away from θ0
    for name in ("reptile", "fomaml", "maml", "joint"):
        assert summary["results"][name]["10"]["mean"][0] != rnd["10"]["mean"][0]


def test_compare_runs_on_a_torchmeta_family_with_noise(tmp_path, capsys):
    assert main(["compare", "--out", str(tmp_path), "--family", "harmonic", "--noise-std", "0.1", "--iters", "2", "--meta-batch", "2",
                 "--eval-tasks", "4", "--algorithms", "maml", "random", "--shots", "5", "--eval-steps", "1",
                 "--backend", "numpy", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "| algorithm | K=5, 1 step |" in text and "harmonic" in text
    assert "Reptile" not in text


@pytest.mark.parametrize("flags, message", [
    (["--iters", "0"], "--iters"),
    (["--family", "cosine"], "--family"),
    (["--noise-std", "-1"], "--noise-std"),
    (["--algorithms", "sgd"], "--algorithms"),
    (["--inner-lr", "0"], "--inner-lr"),
])
def test_compare_rejects_bad_flags_with_one_line(flags, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare", *flags])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_outlier_notes_count_diverged_adaptations():
    from minireptile.commands.compare import outlier_notes
    from minireptile.evaluation.regression import EvalResult
    losses = np.ones((600, 3))
    losses[:4, 2] = 1e6                                         # four tasks blow up after 5 steps
    r = EvalResult((0, 1, 5), losses, losses.mean(axis=0), np.zeros(3))
    notes = outlier_notes({"maml": {5: r}}, threshold=40.0)
    assert notes == ["note: MAML, K=5, 5 steps: 4 of 600 tasks above MSE 40 (adaptation diverged); median 1.000"]
    assert outlier_notes({"maml": {5: EvalResult((0, 1), np.ones((5, 2)), np.ones(2), np.zeros(2))}}, 40.0) == []


def test_compare_saves_every_theta(tmp_path):
    path = tmp_path / "thetas.npz"
    assert main(["compare", "--out", str(tmp_path), "--iters", "2", "--meta-batch", "2", "--eval-tasks", "3",
                 "--algorithms", "fomaml",
                 "random", "--backend", "numpy", "--quiet", "--save", str(path)]) == 0
    saved = np.load(path)
    assert set(saved.files) == {"theta0", "fomaml", "random"}
    np.testing.assert_array_equal(saved["random"], saved["theta0"])
    assert not np.array_equal(saved["fomaml"], saved["theta0"])


TINY = ["--meta-batch", "2", "--eval-tasks", "3", "--shots", "5", "--eval-steps", "1", "--backend", "numpy", "--quiet"]


@pytest.mark.parametrize("cuts", [(3,), (5, 6, 13), (12,)])
def test_compare_stopped_anywhere_and_resumed_is_the_uninterrupted_run(tmp_path, cuts):
    """Each model trains 6 iterations (reptile, maml, joint: 18 in all); stops mid-model and on model ends."""
    flags = ["--iters", "6", "--algorithms", "reptile", "maml", "joint", "random", "--checkpoint-every", "2", *TINY]
    assert main(["compare", "--out", str(tmp_path / "full"), *flags, "--save", str(tmp_path / "full.npz")]) == 0
    ckpt = tmp_path / "cut" / "checkpoint.npz"
    assert main(["compare", "--out", str(tmp_path / "cut"), *flags, "--stop-after", str(cuts[0])]) == 0
    for k in cuts[1:]:
        assert main(["compare", "--resume", str(ckpt), "--stop-after", str(k), "--quiet"]) == 0
    assert load_checkpoint(ckpt)["iteration"] == cuts[-1]
    assert main(["compare", "--resume", str(ckpt), "--quiet", "--save", str(tmp_path / "cut.npz")]) == 0
    full, cut = np.load(tmp_path / "full.npz"), np.load(tmp_path / "cut.npz")
    for name in ("reptile", "maml", "joint"):
        np.testing.assert_array_equal(full[name], cut[name])
    assert load_checkpoint(ckpt)["status"] == "complete"


def test_compare_checkpoint_refuses_a_changed_flag_and_a_crafted_field(tmp_path, capsys):
    flags = ["--iters", "4", "--algorithms", "maml", "reptile", *TINY]
    assert main(["compare", "--out", str(tmp_path), *flags, "--stop-after", "2"]) == 0
    ckpt = tmp_path / "checkpoint.npz"
    assert main(["compare", "--resume", str(ckpt), "--inner-lr", "0.5"]) == 2
    assert "argument --inner-lr: cannot change a resumed run" in capsys.readouterr().err
    with np.load(ckpt) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.pop("adam_m"), arrays.pop("adam_v"), arrays.pop("adam_t")     # MAML's outer Adam state removed
    with open(ckpt, "wb") as f:
        np.savez(f, **arrays)
    assert main(["compare", "--resume", str(ckpt)]) == 2
    assert "is corrupted" in capsys.readouterr().err


@pytest.mark.parametrize("flags,flag", [
    (["--seed", "-1"], "--seed"), (["--eval-tasks", "1"], "--eval-tasks"), (["--noise-std", "1e308"], "--noise-std"),
    (["--threads", "99999"], "--threads"), (["--meta-batch", "100000000"], "--meta-batch"),
])
def test_item11_item21_compare_user_errors_are_one_line_exit_2(tmp_path, capsys, flags, flag):
    try:
        status = main(["compare", "--out", str(tmp_path), "--iters", "2", *TINY, *flags])
    except SystemExit as exc:
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"argument {flag}: " in err[0], err
