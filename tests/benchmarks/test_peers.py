"""Framework peers (benchmarks/peers/) compute minireptile's function: float64 agreement, no timing.

Each peer consumes minireptile's own θ0, sine tasks, minibatch plans and ε schedule and must land
on the same θ as minireptile's backends to 1e-12 relative (max |Δθ| / max |θ|). A peer whose
framework is not installed is skipped with the install line; a backend is skipped only when it
reports itself unavailable. The float32 full-length (30000 iterations) check is too slow for CI:
``python benchmarks/compare.py`` reports it.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from minireptile import (BackendUnavailableError, InnerOptimizer, MLPSpec, epsilon_schedule, get_backend,
                         get_preset, init_params, sine_block, stream_rng)
from minireptile.tasks import INIT

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from peers import check_inputs  # noqa: E402

GIST = get_preset("gist")
SPEC = MLPSpec((1, *GIST.hidden, 1), GIST.activation, "mse")
SGD = InnerOptimizer("sgd", GIST.inner_lr)
ADAM = InnerOptimizer("adam", 1e-3)
PEERS = ["torch-eager", "torch-vmap", "jax-jit-step", "jax-jit-scan"]
TOL = 1e-12


def peer(name: str):
    """The peer's train function; skips the test when its framework is not installed."""
    framework, mode = name.split("-", 1)
    pytest.importorskip(framework, reason=f"{framework} not installed (pip install -e \".[bench]\")")
    if framework == "torch":
        from peers import torch_peer as module
    else:
        from peers import jax_peer as module
    return module.MODES[mode]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """PyTorch on one intra-op thread: same results, and no OpenMP spinning on shared CI cores."""
    try:
        import torch
    except ImportError:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def backend(name: str):
    try:
        return get_backend(name)
    except (ImportError, BackendUnavailableError) as exc:
        pytest.skip(f"backend {name} unavailable: {exc}")


@functools.lru_cache(maxsize=None)
def problem(iters: int, meta_batch: int, dtype=np.float64, seed: int = 0):
    """θ0 and the first ``iters`` outer iterations of a 30000-iteration gist run."""
    theta0 = init_params(SPEC, stream_rng(seed, INIT), dtype)
    X, Y, plans = sine_block(seed, 0, iters, meta_batch, GIST, GIST.inner_steps, GIST.inner_batch, dtype)
    eps = epsilon_schedule(np.arange(iters), GIST.iters, GIST.eps0, GIST.eps_final)
    return theta0, X, Y, plans, eps


@functools.lru_cache(maxsize=None)
def reference_theta(backend_name: str, iters: int, meta_batch: int, opt: InnerOptimizer):
    theta0, X, Y, plans, eps = problem(iters, meta_batch)
    theta, _, _ = backend(backend_name).train_chunk(SPEC, theta0, X, Y, plans, eps, opt)
    moved = np.abs(theta - theta0).max() / np.abs(theta0).max()
    assert moved > 1e-3, "the reference run must move θ, or agreement would prove nothing"
    return theta


def rel_diff(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("peer_name", PEERS)
@pytest.mark.parametrize("backend_name", ["numpy", "numba"])
def test_gist_300_iterations_float64_peer_theta_equals_backend_theta(backend_name, peer_name):
    train = peer(peer_name)
    ref = reference_theta(backend_name, 300, 1, SGD)
    theta0, X, Y, plans, eps = problem(300, 1)
    theta = train(SPEC, theta0, X, Y, plans, eps, SGD)
    assert theta.shape == theta0.shape and theta.dtype == np.float64
    assert rel_diff(theta, ref) <= TOL


@pytest.mark.parametrize("peer_name", PEERS)
@pytest.mark.parametrize("opt", [SGD, ADAM], ids=["sgd", "adam"])
def test_meta_batch_float64_peer_theta_equals_numpy(peer_name, opt):
    """Batched Reptile (vmap paths, the mean over tasks) and Adam with reset state."""
    train = peer(peer_name)
    ref = reference_theta("numpy", 20, 4, opt)
    theta = train(SPEC, *problem(20, 4), opt)
    assert rel_diff(theta, ref) <= TOL


@pytest.mark.parametrize("peer_name", ["torch-eager", "jax-jit-scan"])
def test_float32_peer_returns_float32_close_to_numpy(peer_name):
    train = peer(peer_name)
    theta0, X, Y, plans, eps = problem(50, 1, np.float32)
    ref, _, _ = get_backend("numpy").train_chunk(SPEC, theta0, X, Y, plans, eps, SGD)
    theta = train(SPEC, theta0, X, Y, plans, eps, SGD)
    assert theta.dtype == np.float32
    assert rel_diff(theta, ref) <= 1e-5


def test_jax_float64_call_does_not_leave_x64_enabled():
    pytest.importorskip("jax", reason='jax not installed (pip install -e ".[bench]")')
    if os.environ.get("JAX_ENABLE_X64"):
        pytest.skip("JAX_ENABLE_X64 is set in the environment")
    import jax.numpy as jnp

    train = peer("jax-jit-step")
    train(SPEC, *problem(2, 1), SGD)
    assert jnp.asarray(1.0).dtype == jnp.float32


def test_inputs_are_checked_with_the_argument_named():
    theta0, X, Y, plans, eps = problem(2, 1)
    with pytest.raises(ValueError, match="spec: the peers implement loss='mse'"):
        check_inputs(MLPSpec((1, 4, 2), loss="ce"), theta0, X, Y, plans, eps, SGD)
    with pytest.raises(ValueError, match="opt: .*state_policy='reset'"):
        check_inputs(SPEC, theta0, X, Y, plans, eps, InnerOptimizer("adam", 1e-3, state_policy="carry"))
    with pytest.raises(TypeError, match="X: expected dtype float64"):
        check_inputs(SPEC, theta0, X.astype(np.float32), Y, plans, eps, SGD)
    with pytest.raises(ValueError, match="theta: expected shape"):
        check_inputs(SPEC, theta0[:-1], X, Y, plans, eps, SGD)
    with pytest.raises(ValueError, match="plans: indices must lie in"):
        check_inputs(SPEC, theta0, X, Y, plans + X.shape[2], eps, SGD)
    with pytest.raises(ValueError, match="eps: expected shape"):
        check_inputs(SPEC, theta0, X, Y, plans, eps[:1], SGD)
    check_inputs(SPEC, theta0, X, Y, plans, eps, SGD)          # the good inputs pass
