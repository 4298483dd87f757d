"""After training: chunked evaluation with progress equals one call; a signal while evaluating says what is saved."""

import os
import signal

import numpy as np
import pytest

from minireptile.backends import get_backend
from minireptile.checkpoint import load_checkpoint
from minireptile.cli import main
from minireptile.commands import sine
from minireptile.commands.after_training import evaluate_in_chunks
from minireptile.evaluation import evaluate_sine
from minireptile.mlp import MLPSpec, init_params
from minireptile.optim import InnerOptimizer
from minireptile.progress import Counter
from minireptile.tasks import EVAL, get_preset, sine_eval_tasks, stream_rng

OMNIGLOT = ["--ways", "3", "--shots", "1", "--train-shots", "2", "--queries", "2", "--iters", "2", "--meta-batch", "2",
            "--inner-iters", "2", "--inner-batch", "3", "--hidden", "8", "--size", "12", "--eval-episodes", "4",
            "--eval-inner-iters", "2", "--backend", "numpy"]
RUN = ["--iters", "5", "--eval-tasks", "3", "--no-plot", "--backend", "numpy", "--seed", "3"]


@pytest.mark.parametrize("n, chunk", [(7, 3), (9, 4), (5, 10)])   # last chunks of 1, 1 and all tasks in one
def test_chunked_evaluation_is_bitwise_one_call(n, chunk):
    spec = MLPSpec((1, 16, 1), "tanh", "mse")
    theta = init_params(spec, np.random.default_rng(0), np.float32)
    tasks = sine_eval_tasks(stream_rng(1, EVAL), n, get_preset("gist"), np.float32)
    opt, backend = InnerOptimizer("sgd", 0.02), get_backend("numba")
    counter = Counter(n, "evaluate", "off")
    got = evaluate_in_chunks(spec, theta, tasks.x_shots, tasks.y_shots, tasks.x_grid, tasks.y_grid, opt, backend,
                             (0, 1, 4), counter, chunk=chunk)
    ref = evaluate_sine(spec, theta, tasks, opt, backend, (0, 1, 4))
    assert got.steps == ref.steps and counter.n == n
    assert got.losses.tobytes() == ref.losses.tobytes() and got.mean.tobytes() == ref.mean.tobytes()
    assert got.ci95.tobytes() == ref.ci95.tobytes()


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_a_signal_while_evaluating_says_the_checkpoint_is_complete(tmp_path, capsys, monkeypatch, signum, status):
    def evaluate_and_signal(*args, **kw):
        os.kill(os.getpid(), signum)        # delivered here, in the middle of the evaluation
        raise AssertionError("the signal did not stop the evaluation")

    monkeypatch.setattr(sine, "evaluate_in_chunks", evaluate_and_signal)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        assert main(["sine", *RUN, "--out", str(tmp_path), "--quiet", "--json", str(tmp_path / "r.json")]) == status
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    err = capsys.readouterr().err.strip().splitlines()
    name = signal.Signals(signum).name
    assert err == [f"minireptile sine: {name} during the evaluation: stopped. Training is complete and saved in "
                   f"{tmp_path / 'checkpoint.npz'} (iteration 5); `minireptile sine --resume "
                   f"{tmp_path / 'checkpoint.npz'}` goes straight to the evaluation and the results."]
    assert load_checkpoint(tmp_path / "checkpoint.npz")["status"] == "complete"
    assert not (tmp_path / "r.json").exists()


def test_sine_shows_evaluation_progress_lines(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Counter, "__init__", _counter_every_call(Counter.__init__))
    assert main(["sine", *RUN, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "evaluate (meta-learned, then random init): 3/6 tasks" in out


def _counter_every_call(init):
    def patched(self, total, desc, mode="auto", every=5.0, unit="episode"):
        init(self, total, desc, "lines" if mode != "off" else mode, 0.0, unit)
    return patched


def test_omniglot_says_the_same_when_signalled_while_evaluating(tmp_path, capsys, monkeypatch):
    from fake_omniglot import write_small_splits

    from minireptile.commands import omniglot

    data = write_small_splits(tmp_path / "data", drawings=4)

    def evaluate_and_signal(*args, **kw):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the signal did not stop the evaluation")

    monkeypatch.setattr(omniglot, "evaluate_episodes", evaluate_and_signal)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        status = main(["omniglot", "--data", str(data), *OMNIGLOT, "--out", str(tmp_path / "run"), "--quiet"])
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    assert status == 143
    err = capsys.readouterr().err
    assert "minireptile omniglot: SIGTERM during the evaluation: stopped. Training is complete" in err
    assert "`minireptile omniglot --resume" in err and "Traceback" not in err
