"""Exact resume, --stop-after, the divergence guard and safe interruption (SIGINT/SIGTERM).

Bitwise properties, for every CPU backend: a chunk's result does not depend on where it starts
or ends, so a run stopped at any iteration (mid-block too) and resumed is the uninterrupted run.
"""

import re
import signal

import numpy as np
import pytest

from minireptile import (DivergenceError, InnerOptimizer, MLPSpec, ReptileConfig, get_backend, get_preset,
                         init_params, meta_train, sine_block, stream_rng)
from minireptile.backends import Backend
from minireptile.checkpoint import load_checkpoint
from minireptile.cli import main
from minireptile.tasks import INIT

from cpu_backends import CPU_BACKENDS
from helpers import start_long_run, wait_for_progress

SPEC = MLPSpec((1, 16, 16, 1), "tanh", "mse")
OPTS = {"sgd": InnerOptimizer("sgd", 0.02), "adam-carry": InnerOptimizer("adam", 0.01, state_policy="carry")}


def sine_run(opt, iters=60, meta_batch=2, block_iters=16, dtype=np.float64):
    cfg = ReptileConfig(iters=iters, meta_batch=meta_batch, eps0=0.5, inner=opt, inner_steps=3, inner_batch=5)
    preset = get_preset("gist")
    theta0 = init_params(SPEC, stream_rng(0, INIT), dtype)
    sample = lambda b: sine_block(0, b, block_iters, meta_batch, preset, 3, 5, dtype)  # noqa: E731
    return cfg, theta0, sample, block_iters


@pytest.mark.parametrize("opt", list(OPTS))
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_a_chunk_does_not_depend_on_where_it_is_cut(backend, opt):
    cfg, theta0, sample, _ = sine_run(OPTS[opt])
    X, Y, plans = sample(0)
    eps = np.linspace(0.5, 0.1, 16)
    be = get_backend(backend)
    whole, losses, state = be.train_chunk(SPEC, theta0, X, Y, plans, eps, cfg.inner)
    for k in (1, 7, 15):
        a, la, sa = be.train_chunk(SPEC, theta0, X[:k], Y[:k], plans[:k], eps[:k], cfg.inner)
        b, lb, sb = be.train_chunk(SPEC, a, X[k:], Y[k:], plans[k:], eps[k:], cfg.inner, sa)
        np.testing.assert_array_equal(b, whole)
        np.testing.assert_array_equal(np.concatenate([la, lb]), losses)
        if opt == "adam-carry":
            np.testing.assert_array_equal(sb.m, state.m)
            np.testing.assert_array_equal(sb.v, state.v)
            assert sb.t == state.t == 16 * 3


@pytest.mark.parametrize("opt", list(OPTS))
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_meta_train_stopped_anywhere_and_resumed_is_the_uninterrupted_run(backend, opt):
    cfg, theta0, sample, block_iters = sine_run(OPTS[opt])
    be = get_backend(backend)
    straight, straight_state = meta_train(SPEC, theta0, sample, block_iters, cfg, be)
    for cuts in ((30,), (5, 16, 17, 41), (1, 59)):  # mid-block, on block ends, one iteration from either end
        theta, state, start = theta0, None, 0
        for stop in (*cuts, cfg.iters):
            theta, state = meta_train(SPEC, theta, sample, block_iters, cfg, be, start=start, stop=stop, state=state)
            start = stop
        np.testing.assert_array_equal(theta, straight)
        if opt == "adam-carry":
            np.testing.assert_array_equal(state.m, straight_state.m)
    # chunks cut at every 7th iteration too (what --checkpoint-every 7 does)
    seen = []
    theta, _ = meta_train(SPEC, theta0, sample, block_iters, cfg, be, chunk_iters=7,
                          callback=lambda it, *_: seen.append(it))
    np.testing.assert_array_equal(theta, straight)
    assert seen == [7, 14, 16, 21, 28, 32, 35, 42, 48, 49, 56, 60]


def test_a_callback_returning_true_stops_after_that_chunk():
    cfg, theta0, sample, block_iters = sine_run(OPTS["sgd"])
    be = get_backend("numpy")
    seen = []
    theta, _ = meta_train(SPEC, theta0, sample, block_iters, cfg, be,
                          callback=lambda it, *_: seen.append(it) or it >= 32)
    assert seen == [16, 32]
    np.testing.assert_array_equal(theta, meta_train(SPEC, theta0, sample, block_iters, cfg, be, stop=32)[0])


# ---------------------------------------------------------------------------------------------
# the divergence guard
# ---------------------------------------------------------------------------------------------
def counting_backend(bad_iteration, kind):
    """θ ← θ + 1 per iteration, loss = θ[0] before the update; X[j, 0, 0, 0] holds the global iteration.

    At ``bad_iteration`` the loss (kind 'loss') or the new θ with a finite loss (kind 'theta') turns
    NaN; like a compiled chunk, it carries on computing with the NaN afterwards.
    """
    def train_chunk(spec, theta, X, Y, plans, eps, opt, state=None):
        theta = theta.copy()
        losses = np.empty(len(eps))
        for j in range(len(eps)):
            losses[j] = theta[0]
            if X[j, 0, 0, 0] == bad_iteration:
                if kind == "loss":
                    losses[j] = np.nan
                else:
                    theta[:] = np.nan
            theta += 1
        return theta, losses, None

    return Backend("counting", None, train_chunk, None)


@pytest.mark.parametrize("kind", ["loss", "theta"])
@pytest.mark.parametrize("bad", [0, 5, 9, 10, 23, 29])
def test_divergence_names_the_iteration_and_keeps_the_last_finite_theta(bad, kind):
    spec = MLPSpec((1, 1))
    cfg = ReptileConfig(iters=30, inner_steps=1, inner_batch=1)

    def sample(b):  # blocks of 10 iterations; X carries the global iteration number
        X = np.arange(10 * b, 10 * b + 10, dtype=np.float64).reshape(10, 1, 1, 1)
        return X, X, np.zeros((10, 1, 1, 1), np.int64)

    theta0 = np.zeros(spec.n_params)
    with pytest.raises(DivergenceError, match=rf"diverged at outer iteration {bad} \(0-based; {bad} iterations "
                                              r"completed\).*Lower the inner learning rate") as info:
        meta_train(spec, theta0, sample, 10, cfg, counting_backend(bad, kind), chunk_iters=4)
    err = info.value
    assert isinstance(err, FloatingPointError) and err.iteration == bad
    np.testing.assert_array_equal(err.theta, theta0 + bad)  # θ after exactly `bad` iterations


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_a_real_divergence_mid_block_carries_the_theta_of_the_run_stopped_there(backend):
    cfg, theta0, sample, block_iters = sine_run(OPTS["sgd"])

    def poisoned(b):  # finite data, but targets so large that the loss of iteration 37 overflows
        X, Y, plans = sample(b)
        if b == 37 // block_iters:
            Y = Y.copy()
            Y[37 % block_iters] = 1e200
        return X, Y, plans

    be = get_backend(backend)
    with np.errstate(over="ignore", invalid="ignore"), pytest.raises(DivergenceError) as info:
        meta_train(SPEC, theta0, poisoned, block_iters, cfg, be)
    assert info.value.iteration == 37 and "outer iteration 37" in str(info.value)
    np.testing.assert_array_equal(info.value.theta, meta_train(SPEC, theta0, sample, block_iters, cfg, be, stop=37)[0])


# ---------------------------------------------------------------------------------------------
# the command line: --stop-after, --resume, --checkpoint-every, divergence
# ---------------------------------------------------------------------------------------------
def sine(*argv):
    return main(["sine", "--no-plot", "--quiet", "--eval-tasks", "2", *map(str, argv)])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_cli_stop_after_half_then_resume_is_bitwise_the_full_run(tmp_path, backend, capsys):
    """The issue's acceptance: --iters 2000 versus --stop-after 1000 then --resume."""
    assert sine("--iters", 2000, "--backend", backend, "--out", tmp_path / "full") == 0
    assert sine("--iters", 2000, "--backend", backend, "--out", tmp_path / "half", "--stop-after", 1000) == 0
    out = capsys.readouterr().out
    assert f"resume with: minireptile sine --resume {tmp_path / 'half' / 'checkpoint.npz'}" in out
    half = load_checkpoint(tmp_path / "half" / "checkpoint.npz")
    assert (half["iteration"], half["status"]) == (1000, "stopped")
    assert sine("--resume", tmp_path / "half" / "checkpoint.npz") == 0
    full = load_checkpoint(tmp_path / "full" / "checkpoint.npz")
    resumed = load_checkpoint(tmp_path / "half" / "checkpoint.npz")
    assert (resumed["iteration"], resumed["status"]) == (2000, "complete") == (full["iteration"], full["status"])
    np.testing.assert_array_equal(resumed["theta"], full["theta"])
    assert resumed["config"] == full["config"]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_cli_resume_carries_adam_state_across_odd_stops(tmp_path, backend):
    run = ["--iters", 120, "--meta-batch", 3, "--optimizer", "adam", "--adam-state", "carry", "--inner-lr", 0.002,
           "--dtype", "float64", "--backend", backend, "--checkpoint-every", 13]
    assert sine(*run, "--out", tmp_path / "full") == 0
    assert sine(*run, "--out", tmp_path / "part", "--stop-after", 41) == 0
    ck = tmp_path / "part" / "checkpoint.npz"
    state = load_checkpoint(ck)["state"]
    assert state is not None and state.t == 41 * 5
    assert sine("--resume", ck, "--stop-after", 90, "--inner-lr", 0.002) == 0  # an equal run flag is allowed
    assert load_checkpoint(ck)["iteration"] == 90
    assert sine("--resume", ck) == 0
    a, b = load_checkpoint(tmp_path / "full" / "checkpoint.npz"), load_checkpoint(ck)
    np.testing.assert_array_equal(a["theta"], b["theta"])
    np.testing.assert_array_equal(a["state"].m, b["state"].m)
    assert a["state"].t == b["state"].t == 120 * 5


def test_cli_writes_periodic_checkpoints(tmp_path, monkeypatch):
    from minireptile.commands import runs

    written = []
    real = runs.save_checkpoint
    monkeypatch.setattr(runs, "save_checkpoint",
                        lambda *a, **k: written.append((a[3], k["status"])) or real(*a, **k))
    assert sine("--iters", 100, "--checkpoint-every", 30, "--out", tmp_path) == 0
    assert written == [(0, "running"), (30, "running"), (60, "running"), (90, "running"), (100, "complete")]


@pytest.mark.parametrize("argv,flag,pattern", [
    (["--inner-lr", "0.5"], "--inner-lr", r"cannot change a resumed run \(the checkpoint has 0.02, got 0.5\)"),
    (["--iters", "99"], "--iters", r"the checkpoint has 40, got 99"),
    (["--seed", "2"], "--seed", r"the checkpoint has 1, got 2"),
    (["--dtype", "float64"], "--dtype", r"the checkpoint has 'float32', got 'float64'"),
    (["--stop-after", "5"], "--stop-after", r"the checkpoint is already at iteration 10; expected K >= 10"),
])
def test_cli_resume_rejects_flags_that_would_change_the_run(tmp_path, capsys, argv, flag, pattern):
    assert sine("--iters", 40, "--stop-after", 10, "--out", tmp_path) == 0
    capsys.readouterr()
    assert sine("--resume", tmp_path / "checkpoint.npz", *argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"argument {flag}: " in err[0]
    assert re.search(pattern, err[0])


def test_cli_resume_of_a_bad_file_exits_2_naming_resume(tmp_path, capsys):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert sine("--resume", tmp_path / "junk.npz") == 2
    assert sine("--resume", tmp_path / "missing.npz") == 2
    np.savez(tmp_path / "other.npz", theta=np.zeros(3))
    assert sine("--resume", tmp_path / "other.npz") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all("argument --resume: checkpoint: " in line for line in lines)
    assert "truncated, corrupted" in lines[0] and "no file at" in lines[1]
    assert "not a minireptile checkpoint" in lines[2]


@pytest.mark.parametrize("lr", [1000, 5, 1e30])   # at which iteration 1000 diverges depends on rounding;
@pytest.mark.parametrize("backend", CPU_BACKENDS)  # 5 diverges after the first iteration, 1e30 in it
def test_cli_divergence_exits_3_with_the_iteration_and_a_finite_checkpoint(tmp_path, capsys, backend, lr):
    """`minireptile sine --inner-lr 1000` (and a step size that diverges later, one at once)."""
    run = ("--inner-lr", lr, "--seed", 0, "--backend", backend)
    assert sine(*run, "--out", tmp_path / "d") == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    ck = load_checkpoint(tmp_path / "d" / "checkpoint.npz")
    assert ck["status"] == "diverged" and np.isfinite(ck["theta"]).all()
    assert f"training diverged at outer iteration {ck['iteration']}:" in err[0]
    assert f"smaller --inner-lr (now {lr:g})" in err[0] and "--outer-lr" in err[0]
    if lr == 5:
        assert ck["iteration"] > 0
    if lr == 1e30:
        assert ck["iteration"] == 0
    # the checkpoint's θ is the run's θ after that many iterations
    if ck["iteration"] == 0:
        expected = init_params(MLPSpec((1, 64, 64, 1)), stream_rng(0, INIT), np.float32)
    else:
        assert sine(*run, "--out", tmp_path / "s", "--stop-after", ck["iteration"]) == 0
        expected = load_checkpoint(tmp_path / "s" / "checkpoint.npz")["theta"]
    np.testing.assert_array_equal(ck["theta"], expected)
    assert sine("--resume", tmp_path / "d" / "checkpoint.npz") == 2  # resuming would diverge again
    assert "diverged at iteration" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Ctrl-C: a real process, a real signal
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_writes_a_checkpoint_that_resumes_exactly(tmp_path, sig, status):
    ckpt = tmp_path / "run" / "checkpoint.npz"
    proc = start_long_run(tmp_path / "run")
    wait_for_progress(proc, ckpt)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    ck = load_checkpoint(ckpt)
    assert ck["status"] == "interrupted" and ck["iteration"] > 0 and "Traceback" not in err
    assert f"interrupted at iteration {ck['iteration']}/10000000" in out
    assert f"resume with: minireptile sine --resume {ckpt}" in out
    if sig == signal.SIGTERM:
        return
    # resume it a little further; it equals a run that was never interrupted
    k = ck["iteration"] + 17
    assert sine("--resume", ckpt, "--stop-after", k) == 0
    assert sine("--iters", 10000000, "--backend", "numpy", "--out", tmp_path / "straight", "--stop-after", k) == 0
    np.testing.assert_array_equal(load_checkpoint(ckpt)["theta"],
                                  load_checkpoint(tmp_path / "straight" / "checkpoint.npz")["theta"])


def test_a_second_ctrl_c_still_leaves_a_valid_checkpoint(tmp_path):
    ckpt = tmp_path / "run" / "checkpoint.npz"
    proc = start_long_run(tmp_path / "run")
    wait_for_progress(proc, ckpt)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    ck = load_checkpoint(ckpt)  # the old or the new one, never half of one
    assert ck["iteration"] > 0 and np.isfinite(ck["theta"]).all()
    # no temporary left behind (the lock file is the run's, and dies with it)
    assert sorted(p.name for p in ckpt.parent.iterdir()) == [".minireptile.lock", "checkpoint.npz"]
