"""Test helpers: random MLP problems drawn from hypothesis-chosen shapes."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from minireptile import InnerOptimizer, MLPSpec, init_params, inner_loop, loss


@st.composite
def mlp_problems(draw, max_hidden_layers=3, max_width=16, max_batch=8, losses=("mse", "ce"), dtype=np.float64):
    """An (spec, theta, X, Y) problem with hypothesis-drawn depth, widths, batch, activation, loss."""
    depth = draw(st.integers(1, max_hidden_layers))
    widths = draw(st.lists(st.integers(1, max_width), min_size=depth, max_size=depth))
    d_in = draw(st.integers(1, 4))
    loss = draw(st.sampled_from(losses))
    d_out = draw(st.integers(2, 4)) if loss == "ce" else draw(st.integers(1, 3))
    activation = draw(st.sampled_from(["tanh", "relu"]))
    batch = draw(st.integers(1, max_batch))
    seed = draw(st.integers(0, 2**32 - 1))
    spec = MLPSpec((d_in, *widths, d_out), activation, loss)
    rng = np.random.default_rng(seed)
    theta = init_params(spec, rng, np.float64)
    theta += rng.normal(0, 0.3, size=theta.shape)  # move off the init so no layer is special
    X = rng.normal(size=(batch, d_in))
    Y = rng.integers(0, d_out, size=batch) if loss == "ce" else rng.normal(size=(batch, d_out))
    return spec, theta.astype(dtype), X.astype(dtype), (Y if loss == "ce" else Y.astype(dtype)), rng


def central_differences(f, theta, h=1e-5):
    """Central finite-difference gradient of a scalar function of a float64 vector."""
    g = np.empty_like(theta)
    for i in range(theta.size):
        tp = theta.copy()
        tm = theta.copy()
        tp[i] += h
        tm[i] -= h
        g[i] = (f(tp) - f(tm)) / (2 * h)
    return g


def max_rel_error(a, b):
    """Largest absolute difference relative to the largest magnitude of the reference ``b``."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def tasks_for(problem, n_tasks, steps, batch, n_query):
    """n_tasks tasks with the problem's shapes: data, a support plan and query indices."""
    spec, theta, X, Y, rng = problem
    n_points = max(X.shape[0], batch, n_query)
    Xs = rng.normal(size=(n_tasks, n_points, spec.d_in))
    Ys = (rng.integers(0, spec.d_out, size=(n_tasks, n_points)) if spec.loss == "ce"
          else rng.normal(size=(n_tasks, n_points, spec.d_out)))
    plan = rng.integers(0, n_points, size=(n_tasks, steps, batch))
    query = rng.integers(0, n_points, size=(n_tasks, n_query))
    return spec, theta, Xs, Ys, plan, query


def min_abs_preactivation(spec, theta, X) -> float:
    """Smallest |z| over hidden units (relu kinks make finite differences of gradients jump)."""
    a, out = X, np.inf
    for i, (w_off, b_off) in enumerate(spec.offsets[:-1]):
        W = theta[w_off:b_off].reshape(spec.sizes[i + 1], spec.sizes[i])
        z = a @ W.T + theta[b_off:b_off + spec.sizes[i + 1]]
        out = min(out, float(np.abs(z).min()))
        a = np.maximum(z, 0) if spec.activation == "relu" else np.tanh(z)
    return out


def far_from_kinks(spec, phis, X, margin=1e-3) -> bool:
    """True if every adapted network's hidden pre-activations stay ``margin`` away from relu kinks."""
    if spec.activation != "relu":
        return True
    return all(min_abs_preactivation(spec, phi[i], X[i]) > margin for phi in phis for i in range(len(X)))


def unrolled_objective(spec, X, Y, plan, query, lr):
    """θ ↦ mean_i L_q,i(φ_k,i(θ)), the whole inner loop unrolled with the reference inner loop."""
    opt = InnerOptimizer("sgd", lr)

    def f(theta):
        phi = inner_loop(spec, theta, X, Y, plan, opt).phi
        return np.mean([loss(spec, phi[i], X[i, query[i]], Y[i, query[i]]) for i in range(len(X))])
    return f


def start_long_run(out, *extra, every=50):
    """A ``minireptile sine`` run (numpy backend) far too long to finish during a test, checkpointing every
    ``every`` iterations; stdout and stderr are pipes."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "minireptile", "sine", "--iters", "10000000", "--backend", "numpy",
                             "--out", str(out), "--checkpoint-every", str(every), "--no-plot", "--quiet", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for_progress(proc, ckpt, past=0, limit=300.0):
    """Poll (no timing assertion) until the checkpoint shows training beyond iteration ``past``."""
    import time

    import pytest

    from minireptile.checkpoint import load_checkpoint
    from minireptile.errors import CheckpointError

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if load_checkpoint(ckpt)["iteration"] > past:
                return
        except (CheckpointError, OSError):  # not written yet
            pass
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the run never wrote a checkpoint")


# a sine run of a few milliseconds (numpy backend, no plot, no progress)
TINY_SINE = ["--iters", "20", "--backend", "numpy", "--eval-tasks", "2", "--no-plot", "--quiet"]


def tiny_sine(*argv) -> int:
    """``minireptile sine`` with :data:`TINY_SINE` and ``argv`` (str() of each) in this process; its exit status."""
    from minireptile.cli import main

    return main(["sine", *TINY_SINE, *map(str, argv)])


def one_error_line(capsys) -> str:
    """The one line a user error printed on stderr (no traceback)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]
