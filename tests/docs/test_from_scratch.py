"""docs/from_scratch.py computes what the library computes: reference.inner_loop + reptile_update."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from minireptile import (InnerOptimizer, MLPSpec, forward, get_preset, init_params, inner_loop, loss_and_grad,
                         reptile_update, sample_sine_tasks)

SOURCE = Path(__file__).resolve().parents[2] / "docs" / "from_scratch.py"
SPEC = MLPSpec((1, 64, 64, 1), "tanh", "mse")


def load(source: str | None = None):
    """Import docs/from_scratch.py (or a modified copy of its text) as a module."""
    spec = importlib.util.spec_from_file_location("from_scratch", SOURCE)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source if source is not None else SOURCE.read_text(), str(SOURCE), "exec"), module.__dict__)
    return module


def library_train(seed: int, iters: int, inner_steps=5, batch=10, lr=0.02, eps0=0.1):
    """from_scratch.train's random draws, in the same order, run through minireptile's functions."""
    rng = np.random.default_rng(seed)
    theta = init_params(SPEC, rng, np.float64)
    x = np.linspace(-5, 5, 50)[:, None]
    opt = InnerOptimizer("sgd", lr)
    for t in range(iters):
        amp, phase = rng.uniform(0.1, 5.0), rng.uniform(0.0, 2 * np.pi)
        plan = rng.permutation(50)[:inner_steps * batch].reshape(1, inner_steps, batch)
        y = amp * np.sin(x + phase)
        phi = inner_loop(SPEC, theta, x[None], y[None], plan, opt).phi
        theta = reptile_update(theta, phi, eps0 * (1 - t / iters))
    return theta


def check_against_library(fs) -> None:
    rng = np.random.default_rng(3)
    # the same tasks and minibatch plans for both, from the library's sampler (gist protocol)
    X, Y, plans = sample_sine_tasks(rng, 12, get_preset("gist"), 5, 10, np.float64)
    theta = init_params(SPEC, np.random.default_rng(0), np.float64)
    np.testing.assert_array_equal(fs.init(np.random.default_rng(0)), theta)
    np.testing.assert_allclose(fs.forward(theta, X[0]), forward(SPEC, theta, X[0]),
                               rtol=0, atol=1e-12)
    loss, grad = fs.loss_and_grad(theta, X[0, :10], Y[0, :10])
    ref_loss, ref_grad = loss_and_grad(SPEC, theta, X[0, :10], Y[0, :10])
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=1e-12)
    opt = InnerOptimizer("sgd", 0.02)
    mine, ref = theta.copy(), theta.copy()
    for t in range(0, 12, 3):                        # four outer steps of a meta-batch of 3 tasks
        phis = np.stack([fs.inner_loop(mine, X[i], Y[i], plans[i], 0.02) for i in range(t, t + 3)])
        mine = fs.reptile_update(mine, phis, 0.3)
        ref = reptile_update(ref, inner_loop(SPEC, ref, X[t:t + 3], Y[t:t + 3], plans[t:t + 3], opt).phi, 0.3)
    np.testing.assert_allclose(mine, ref, rtol=0, atol=1e-12)
    # the whole serial training loop, task sampling and ε schedule included
    np.testing.assert_allclose(fs.train(np.random.default_rng(7), iters=6), library_train(7, 6), rtol=0, atol=1e-12)
    # adaptation for the plot is full-batch SGD
    path = fs.adapt(theta, X[0, :10], Y[0, :10], 3)
    full = np.broadcast_to(np.arange(10), (1, 3, 10))
    np.testing.assert_allclose(path[3], inner_loop(SPEC, theta, X[:1, :10], Y[:1, :10], full, opt).phi[0],
                               rtol=0, atol=1e-12)


def test_from_scratch_equals_reference_inner_loop_and_reptile_update():
    check_against_library(load())


def test_from_scratch_is_at_most_150_lines_and_uses_only_numpy():
    text = SOURCE.read_text()
    assert len(text.splitlines()) <= 150
    imports = [line.strip() for line in text.splitlines() if line.strip().startswith(("import ", "from "))]
    assert all("minireptile" not in line for line in imports)


# one-line breaks a reader could make; each must make the comparison fail
MUTATIONS = [
    ("(1 - acts[l] * acts[l])", "(1 - acts[l])"),
    ("db += delta.sum(axis=0)", "db += delta.mean(axis=0)"),
    ("(2.0 / diff.size) * diff", "(1.0 / diff.size) * diff"),
    ("phi -= lr *", "phi += lr *"),
    ("eps * (np.mean(phis, axis=0) - theta)", "eps * (np.mean(phis, axis=0) + theta)"),
    ("eps0 * (1 - t / iters)", "eps0"),
    ("rng.uniform(0.0, 2 * np.pi)", "rng.uniform(0.0, np.pi)"),
]


@pytest.mark.parametrize("old, new", MUTATIONS)
def test_breaking_one_line_fails_the_comparison(old, new):
    text = SOURCE.read_text()
    assert text.count(old) == 1, old
    with pytest.raises(AssertionError):
        check_against_library(load(text.replace(old, new)))


def test_main_writes_the_plot(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "plot.png"
    load().main(iters=3, out=str(out))
    assert out.stat().st_size > 10_000
