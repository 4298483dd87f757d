"""The numba backend computes the NumPy reference's function: inner loops, whole chunks, tanh, products.

Numba compiles one kernel signature per dtype, so every hypothesis test here draws shapes for ONE
dtype (no new signature per example). Tolerances (max |Δ| / max |reference|): float64 ≤ 1e-10
after up to 32 inner steps, float32 ≤ 1e-4. 1 and 2 threads must agree bit for bit. Concurrent
calls from two Python threads are covered by tests/commands/test_concurrency.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numba
import numpy as np
from numba import njit
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minireptile import AdamState, InnerOptimizer, MLPSpec, get_backend, get_preset, init_params, reference
from minireptile.backends import numba_cpu as numba_backend
from minireptile.backends import kernel_math as km
from minireptile.backends import numba_threads
from minireptile.backends.numba_kernels import _transpose, tanh_array
from minireptile.backends.numba_simd import (ISA, MODE_ACCUMULATE, MODE_SGD, MODE_STORE, dot, dot_reference, gemm,
                                              gemm_reference, tanh_inplace)
from minireptile.backends.numba_views import view1d
from minireptile.reptile import train_chunk_generic
from minireptile.tasks import sine_block

from helpers import max_rel_error, mlp_problems

NUMBA = numba_backend.backend()
njit_cached = njit(cache=True)
TOL = {np.float64: 1e-10, np.float32: 1e-4}


# ---------------------------------------------------------------------------------------------
# problems: a hypothesis-drawn MLP with a meta-batch of tasks
# ---------------------------------------------------------------------------------------------
def tasks_for(problem, n_tasks, steps, batch, dtype, leading=()):
    """θ, X, Y, plan for ``n_tasks`` tasks of the problem's shapes (optionally with a leading iters axis)."""
    spec, theta, _, _, rng = problem
    n_points = batch + int(rng.integers(0, 4))
    X = rng.normal(size=leading + (n_tasks, n_points, spec.d_in)).astype(dtype)
    if spec.loss == "ce":
        Y = rng.integers(0, spec.d_out, size=leading + (n_tasks, n_points))
    else:
        Y = rng.normal(size=leading + (n_tasks, n_points, spec.d_out)).astype(dtype)
    plan = rng.integers(0, n_points, size=leading + (n_tasks, steps, batch))
    return theta.astype(dtype), X, Y, plan


def optimizers():
    """SGD or Adam (β1 0 or 0.9) with either state policy, at step sizes that keep 32 steps finite."""
    sgd = st.builds(lambda lr: InnerOptimizer("sgd", lr), st.floats(1e-3, 0.1))
    adam = st.builds(lambda lr, b1, policy: InnerOptimizer("adam", lr, b1, 0.999, 1e-8, policy),
                     st.floats(1e-4, 1e-2), st.sampled_from([0.0, 0.9]), st.sampled_from(["reset", "carry"]))
    return st.one_of(sgd, adam)


def random_state(rng, P, rows, dtype):
    m = rng.normal(0, 0.1, size=(rows, P) if rows else P).astype(dtype)
    v = rng.uniform(0, 0.01, size=m.shape).astype(dtype)
    return AdamState(m, v, int(rng.integers(0, 5)))


def assert_inner_loops_agree(problem, n_tasks, steps, batch, opt, per_task_theta, with_state, dtype):
    spec = problem[0]
    theta, X, Y, plan = tasks_for(problem, n_tasks, steps, batch, dtype)
    rng = problem[4]
    if per_task_theta:
        theta = (theta + rng.normal(0, 0.1, size=(n_tasks, theta.size))).astype(dtype)
    state = random_state(rng, spec.n_params, n_tasks if per_task_theta else 0, dtype) if with_state else None
    got = NUMBA.inner_loop(spec, theta, X, Y, plan, opt, state)
    want = reference.inner_loop(spec, theta, X, Y, plan, opt, state)
    tol = TOL[dtype]
    assert got.phi.shape == want.phi.shape and got.phi.dtype == want.phi.dtype
    assert max_rel_error(got.phi, want.phi) <= tol
    assert got.loss.shape == (n_tasks,) and got.loss.dtype == np.float64
    assert max_rel_error(got.loss, want.loss) <= tol
    if opt.name == "sgd":
        assert got.state is None
    else:
        assert got.state.t == want.state.t
        assert max_rel_error(got.state.m, want.state.m) <= tol
        assert max_rel_error(got.state.v, want.state.v) <= tol


# ---------------------------------------------------------------------------------------------
# inner loop against the reference
# ---------------------------------------------------------------------------------------------
@given(mlp_problems(), st.integers(1, 4), st.integers(1, 32), st.integers(1, 8), optimizers(), st.booleans(),
       st.booleans())
def test_inner_loop_float64_equals_reference_after_up_to_32_steps(problem, n_tasks, steps, batch, opt,
                                                                   per_task_theta, with_state):
    assert_inner_loops_agree(problem, n_tasks, steps, batch, opt, per_task_theta, with_state, np.float64)


@given(mlp_problems(), st.integers(1, 4), st.integers(1, 8), st.integers(1, 8), optimizers(), st.booleans(),
       st.booleans())
def test_inner_loop_float32_equals_reference(problem, n_tasks, steps, batch, opt, per_task_theta, with_state):
    assert_inner_loops_agree(problem, n_tasks, steps, batch, opt, per_task_theta, with_state, np.float32)


def test_inner_loop_on_the_gist_network_in_both_dtypes():
    """The shapes the benchmarks time: every register tile and the dot-product head are exercised."""
    spec = MLPSpec((1, 64, 64, 1))
    for dtype in (np.float32, np.float64):
        X, Y, plans = sine_block(0, 0, 1, 3, get_preset("gist"), 5, 10, dtype)
        theta = init_params(spec, np.random.default_rng(1), dtype)
        for opt in (InnerOptimizer("sgd", 0.02), InnerOptimizer("adam", 1e-3)):
            got = NUMBA.inner_loop(spec, theta, X[0], Y[0], plans[0], opt)
            want = reference.inner_loop(spec, theta, X[0], Y[0], plans[0], opt)
            assert max_rel_error(got.phi, want.phi) <= TOL[dtype] / 100
            assert max_rel_error(got.loss, want.loss) <= TOL[dtype] / 100


# ---------------------------------------------------------------------------------------------
# whole chunks against train_chunk_generic(reference.inner_loop, ...)
# ---------------------------------------------------------------------------------------------
def assert_chunks_agree(problem, iters, n_tasks, steps, batch, opt, with_state, dtype):
    spec, rng = problem[0], problem[4]
    theta, X, Y, plans = tasks_for(problem, n_tasks, steps, batch, dtype, leading=(iters,))
    eps = rng.uniform(0.0, 1.0, size=iters)
    state = random_state(rng, spec.n_params, 0, dtype) if with_state and opt.name == "adam" else None
    theta_got, losses_got, state_got = NUMBA.train_chunk(spec, theta, X, Y, plans, eps, opt, state)
    theta_want, losses_want, state_want = train_chunk_generic(reference.inner_loop, spec, theta, X, Y, plans, eps,
                                                              opt, state)
    tol = TOL[dtype]
    assert theta_got.shape == theta.shape and theta_got.dtype == theta.dtype
    assert max_rel_error(theta_got, theta_want) <= tol
    assert losses_got.shape == (iters,)
    assert max_rel_error(losses_got, losses_want) <= tol
    assert (state_got is None) == (state_want is None)
    if state_want is not None:
        assert state_got.t == state_want.t
        assert state_got.m.shape == state_want.m.shape == theta.shape
        assert max_rel_error(state_got.m, state_want.m) <= tol
        assert max_rel_error(state_got.v, state_want.v) <= tol


@given(mlp_problems(), st.integers(1, 4), st.integers(1, 3), st.integers(1, 8), st.integers(1, 6), optimizers(),
       st.booleans())
def test_train_chunk_float64_equals_the_generic_chunk_of_the_reference(problem, iters, n_tasks, steps, batch, opt,
                                                                       with_state):
    assert_chunks_agree(problem, iters, n_tasks, steps, batch, opt, with_state, np.float64)


@settings(max_examples=10)
@given(mlp_problems(), st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 6), optimizers(),
       st.booleans())
def test_train_chunk_float32_equals_the_generic_chunk_of_the_reference(problem, iters, n_tasks, steps, batch, opt,
                                                                       with_state):
    assert_chunks_agree(problem, iters, n_tasks, steps, batch, opt, with_state, np.float32)


@pytest.mark.parametrize("opt", [InnerOptimizer("sgd", 0.02), InnerOptimizer("adam", 1e-3)], ids=["sgd", "adam"])
def test_a_serial_call_ends_with_the_new_theta_and_its_transposes_in_its_scratch(monkeypatch, opt):
    """Within a serial call the next task starts from the new θ's Wᵀ directly, so the scratch θᵀ is not
    updated each iteration; the call's last outer update refills it, as the kernel's contract says (a later
    call without ``start`` reads it)."""
    calls = []
    kernels = numba_backend._kernels()
    real = kernels.chunk_kernel

    def recording(*codes):
        kernel = real(*codes)
        return lambda *args: (calls.append(args), kernel(*args))[1]

    monkeypatch.setattr(kernels, "chunk_kernel", recording)
    spec, dtype = MLPSpec((1, 16, 12, 1)), np.float64
    X, Y, plans = sine_block(5, 0, 4, 1, get_preset("gist"), 3, 6, dtype)
    theta = NUMBA.train_chunk(spec, init_params(spec, np.random.default_rng(5), dtype), X, Y, plans,
                              np.array([0.5, 0.4, 0.3, 0.2]), opt)[0]
    assert len(calls) == 1
    tht = calls[0][10]
    want = theta.copy()
    for w, b, fi, fo in spec.offsets_array().tolist():
        if fo >= numba_backend._kernels().FWD_DOT_MAX_FANOUT:   # the layers whose forward reads Wᵀ
            want[w:b] = theta[w:b].reshape(fo, fi).T.ravel()
    np.testing.assert_array_equal(tht, want)


@pytest.mark.parametrize("task_block", [1, 3, 4, 10, 16])
def test_the_outer_update_sums_tasks_in_blocks_in_order(task_block):
    """θ + ε·(M − θ) with M = (Σ_blocks Σ_tasks φ in task order) / n, float32, written out in NumPy: bitwise."""
    spec, dtype, n = MLPSpec((1, 16, 1)), np.float32, 10
    X, Y, plans = sine_block(4, 0, 1, n, get_preset("gist"), 3, 5, dtype)
    theta = init_params(spec, np.random.default_rng(3), dtype)
    opt = InnerOptimizer("sgd", 0.02)
    got = NUMBA.train_chunk(spec, theta, X, Y, plans, np.array([0.3]), opt, task_block=task_block)[0]
    phi = NUMBA.inner_loop(spec, theta, X[0], Y[0], plans[0], opt).phi
    total = None
    for a in range(0, n, task_block):
        part = phi[a].copy()
        for i in range(a + 1, min(a + task_block, n)):
            part = part + phi[i]
        total = part if total is None else total + part
    want = theta + dtype(0.3) * (total / dtype(n) - theta)
    np.testing.assert_array_equal(got, want)


def test_an_empty_chunk_returns_theta_and_state_unchanged():
    spec = MLPSpec((1, 4, 1))
    theta = init_params(spec, np.random.default_rng(0))
    state = AdamState(np.ones(spec.n_params), np.ones(spec.n_params), 3)
    out, losses, st_out = NUMBA.train_chunk(spec, theta, np.zeros((0, 1, 2, 1)), np.zeros((0, 1, 2, 1)),
                                            np.zeros((0, 1, 1, 2), np.int64), np.zeros(0),
                                            InnerOptimizer("adam", 1e-3, state_policy="carry"), state)
    np.testing.assert_array_equal(out, theta)
    assert losses.shape == (0,) and st_out is state


# ---------------------------------------------------------------------------------------------
# determinism: 1 and 2 threads
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def restore_threads(monkeypatch):
    """Restore numba's thread count after the test. The threading policy's inputs are fixed, whatever
    else runs on the test machine: every core counts as free, so a test of 2 threads runs 2, and the
    clock of the hold-up rule stands still, so no wait counts as a hold-up."""
    monkeypatch.setattr(numba_threads, "_free_cores", lambda ours=0, read=None: numba.config.NUMBA_NUM_THREADS)
    monkeypatch.setattr(numba_threads, "_clock", lambda: 0.0)
    n = numba.get_num_threads()
    yield
    numba.set_num_threads(n)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba has one thread (NUMBA_NUM_THREADS=1)")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt", [InnerOptimizer("sgd", 0.02), InnerOptimizer("adam", 1e-3, state_policy="carry")],
                         ids=["sgd", "adam-carry"])
def test_one_and_two_threads_give_bitwise_equal_results(restore_threads, dtype, opt):
    spec = MLPSpec((1, 64, 64, 1))
    X, Y, plans = sine_block(3, 0, 4, 7, get_preset("gist"), 5, 10, dtype)    # 7 tasks: uneven split
    theta = init_params(spec, np.random.default_rng(2), dtype)
    eps = np.linspace(0.5, 0.1, 4)
    runs = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        chunk = NUMBA.train_chunk(spec, theta, X, Y, plans, eps, opt)
        inner = NUMBA.inner_loop(spec, theta, X[0], Y[0], plans[0], opt)
        runs.append((chunk, inner))
    (c1, i1), (c2, i2) = runs
    np.testing.assert_array_equal(c1[0], c2[0])
    np.testing.assert_array_equal(c1[1], c2[1])
    np.testing.assert_array_equal(i1.phi, i2.phi)
    np.testing.assert_array_equal(i1.loss, i2.loss)
    if opt.name == "adam":
        np.testing.assert_array_equal(c1[2].m, c2[2].m)
        np.testing.assert_array_equal(i1.state.v, i2.state.v)


# ---------------------------------------------------------------------------------------------
# the vectorisable tanh
# ---------------------------------------------------------------------------------------------
SPECIAL = [0.0, -0.0, 1e-30, -1e-30, 1e-8, 3e-4, 5e-4, 0.625, 7.9, 8.0, 19.0, 20.0, 25.0, 1e10, 3e38,
           -3e38, np.inf, -np.inf]


def fast_tanh(x):
    """tanh as the CPU kernel computes it (vectors of the target, the tail one element at a time)."""
    out = np.empty_like(x)
    tanh_array(out, x)
    return out


_km_tanh = {np.dtype(np.float32): njit(km.tanh_f32), np.dtype(np.float64): njit(km.tanh_f64)}


@njit_cached
def _scalar_tanh_loop(out, x, tanh):
    for i in range(x.shape[0]):
        out[i] = tanh(x[i])


def scalar_tanh(x):
    """kernel_math's tanh compiled as plain scalar code (what the CUDA backend compiles)."""
    out = np.empty_like(x)
    _scalar_tanh_loop(out, x, _km_tanh[x.dtype])
    return out


TANHS = [pytest.param(fast_tanh, id="kernel"), pytest.param(scalar_tanh, id="kernel_math")]


@pytest.mark.parametrize("tanh", TANHS)
def test_tanh_float32_on_a_dense_grid_and_special_values(tanh):
    x = np.concatenate([np.linspace(-12, 12, 2_000_001), SPECIAL, np.geomspace(1e-38, 12, 100_000)]).astype(np.float32)
    x = np.concatenate([x, -x])
    got, want = tanh(x), np.tanh(x)
    assert got.dtype == np.float32
    assert np.max(np.abs(got.astype(np.float64) - want)) <= 1e-6
    np.testing.assert_array_equal(np.signbit(got[x == 0]), np.signbit(x[x == 0]))   # ±0 keeps its sign
    assert np.all(np.abs(got) <= 1)


@pytest.mark.parametrize("tanh", TANHS)
def test_tanh_float64_on_a_dense_grid_and_special_values(tanh):
    x = np.concatenate([np.linspace(-25, 25, 2_000_001), SPECIAL, [1e300, 5e-324, 2.2e-308],
                        np.geomspace(1e-300, 25, 200_000)])
    x = np.concatenate([x, -x])
    got, want = tanh(x), np.tanh(x)
    assert got.dtype == np.float64
    nonzero = want != 0
    assert np.max(np.abs(got[nonzero] - want[nonzero]) / np.abs(want[nonzero])) <= 1e-13
    np.testing.assert_array_equal(got[~nonzero], want[~nonzero])
    np.testing.assert_array_equal(np.signbit(got[x == 0]), np.signbit(x[x == 0]))
    assert np.all(np.abs(got) <= 1)


@pytest.mark.parametrize("tanh", TANHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_propagates_nan(dtype, tanh):
    x = np.array([np.nan, -np.nan, 1.0, np.nan] * 5, dtype)
    got = tanh(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(x))


@given(hnp.arrays(np.float32, st.integers(1, 64), elements=st.floats(width=32, allow_nan=True)))
def test_tanh_float32_on_drawn_values(x):
    got, want = fast_tanh(x), np.tanh(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    assert np.all(np.abs(got[ok].astype(np.float64) - want[ok]) <= 1e-6)


@given(hnp.arrays(np.float64, st.integers(1, 64), elements=st.floats(allow_nan=True)))
def test_tanh_float64_on_drawn_values(x):
    got, want = fast_tanh(x), np.tanh(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    assert np.all(np.abs(got[ok] - want[ok]) <= 1e-13 * np.abs(want[ok]))


# ---------------------------------------------------------------------------------------------
# the register-tiled product
# ---------------------------------------------------------------------------------------------
@given(st.integers(0, 15), st.integers(0, 70), st.integers(0, 12), st.integers(0, 3), st.integers(0, 4),
       st.sampled_from([MODE_STORE, MODE_ACCUMULATE, MODE_SGD]), st.booleans(), st.integers(0, 2**32 - 1))
def test_gemm_float64_equals_its_numpy_twin_and_its_transpose(R, n, K, pad_c, pad_v, mode, transposed_u, seed):
    """All tile sizes (6/4/2/1 rows x 4/1 vectors, scalar columns) on buffers without spare room."""
    rng = np.random.default_rng(seed)
    ldc, ldv = n + pad_c, n + pad_v
    u = rng.normal(size=R * K + 1)
    us_r, us_k = (1, R) if transposed_u else (K, 1)
    v = rng.normal(size=max(K * ldv - pad_v, 0) + 2)
    c = rng.normal(size=max(R * ldc - pad_c, 0) + 3)
    want = c.copy()
    _gemm(c, 3, ldc, R, n, u, 1, us_r, us_k, v, 2, ldv, K, 0.3, mode)
    gemm_reference(want, 3, ldc, R, n, u, 1, us_r, us_k, v, 2, ldv, K, 0.3, mode)
    assert max_rel_error(c, want) <= 1e-13
    # (U V)ᵀ computed as Vᵀ Uᵀ is bitwise the same: what keeps W and Wᵀ exact transposes under SGD
    if R and n and mode == MODE_STORE and transposed_u:
        ct = np.zeros(n * R)
        _gemm(ct, 0, R, n, R, v, 2, 1, ldv, u, 1, R, K, 0.0, MODE_STORE)
        np.testing.assert_array_equal(ct.reshape(n, R).T, c[3:3 + R * ldc - pad_c].reshape(R, -1)[:, :n]
                                      if pad_c == 0 else np.stack([c[3 + r * ldc:3 + r * ldc + n] for r in range(R)]))


@njit_cached
def _gemm(c, c_off, ldc, R, n, u, u_off, us_r, us_k, v, v_off, ldv, K, alpha, mode):
    gemm(c, c_off, ldc, R, n, u, u_off, us_r, us_k, v, v_off, ldv, K, alpha, mode)  # gemm has no Python wrapper


@njit_cached
def _dot(x, xo, y, yo, n):
    return dot(x, xo, y, yo, n)


@njit_cached
def _tanh_one_at_a_time(a):
    for i in range(a.shape[0]):
        tanh_inplace(view1d(a, i, 1))   # an array shorter than a vector: the scalar tail alone


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kernels_vector_tanh_is_bitwise_its_scalar_tail(dtype):
    """tanh_inplace gives every element bitwise what it gives that element alone, so the result does not
    depend on the vector width or on where an element falls in the array."""
    x = np.concatenate([np.linspace(-25, 25, 100_003), SPECIAL, -np.asarray(SPECIAL), [np.nan, 1e-9, -3e-5],
                        np.random.default_rng(0).normal(scale=3, size=10_001)]).astype(dtype)
    alone = x.copy()
    _tanh_one_at_a_time(alone)
    np.testing.assert_array_equal(fast_tanh(x).view(np.uint8), alone.view(np.uint8))
    np.testing.assert_array_equal(fast_tanh(x[1:]).view(np.uint8), alone[1:].view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kernels_tanh_and_kernel_maths_differ_by_rounding_only(dtype):
    """The kernel fuses kernel_math's multiply-adds where the CPU has FMA (and is kernel_math's operations
    one for one without it): the two differ by no more than their accuracy bounds against np.tanh
    (measured: 6 float32 ulp, 4 float64 ulp)."""
    x = np.concatenate([np.linspace(-25, 25, 200_003), SPECIAL, -np.asarray(SPECIAL),
                        np.random.default_rng(1).normal(scale=3, size=10_001)]).astype(dtype)
    got, want = fast_tanh(x), scalar_tanh(x)
    if dtype == np.float32:
        assert np.max(np.abs(got.astype(np.float64) - want)) <= 4e-7
    else:
        assert np.all(np.abs(got - want) <= 1e-15 * np.abs(want))
    if not ISA.fma:
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


@given(st.integers(0, 300), st.integers(0, 3), st.integers(0, 3), st.integers(0, 2**32 - 1))
def test_dot_float64_equals_its_numpy_twin(n, xo, yo, seed):
    """Every path: blocks of 4 vectors, single vectors, the scalar tail; buffers without spare room."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=xo + n), rng.normal(size=yo + n)
    scale = max(1.0, float(np.abs(x[xo:] * y[yo:]).sum()))
    assert abs(_dot(x, xo, y, yo, n) - dot_reference(x, xo, y, yo, n)) <= 1e-13 * scale


@njit_cached
def _transpose_from_python(dst, src):
    """The kernel's private helpers have no CPython wrapper: call them inside an njit function."""
    _transpose(dst, src)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(256, 784), (64, 64), (64, 1), (1, 64), (37, 23), (17, 33), (8, 16), (0, 5)])
def test_the_kernels_transpose_moves_every_element_whole_blocks_and_edges(dtype, shape):
    src = np.random.default_rng(sum(shape)).normal(size=shape).astype(dtype)
    dst = np.full(shape[::-1], np.nan, dtype)
    _transpose_from_python(dst, src)
    np.testing.assert_array_equal(dst, src.T)


@pytest.mark.parametrize("update", [False, True], ids=["inner-loop", "chunk"])
def test_an_error_in_a_helper_thread_is_raised_by_the_call_and_every_thread_stops(update):
    import threading
    import time

    def kernel(*args):  # the compiled kernel's call convention; scratch row k = 1 is the helper's
        lo, hi, k = args[-7], args[-6], args[-1]
        if k == 1 and hi > lo:
            raise RuntimeError("boom in the helper")
        if hi > lo:
            time.sleep(0.005)  # the caller's blocks take a while: the helper gets some
        return args[-12], args[-11]  # (t, has_state)

    before = threading.active_count()
    with pytest.raises(RuntimeError, match="boom in the helper"):
        numba_threads._in_threads(kernel, (), n=64, iters=3, P=10, threads=2, t=0, hs=False, carry=False,
                                  update=update)
    assert threading.active_count() == before


def _watch_kernels(monkeypatch, before_call, after_call=None):
    """Make the backend's kernels call ``before_call(lo, hi, k)`` (task range, scratch row) first, and
    ``after_call(lo, hi, k)`` after."""
    real = numba_backend._kernels()

    class Watched:
        def __getattr__(self, name):
            return getattr(real, name)

        def chunk_kernel(self, *codes):
            kernel = real.chunk_kernel(*codes)

            def watched(*args):
                before_call(args[-7], args[-6], args[-1])
                try:
                    return kernel(*args)
                finally:
                    if after_call is not None:
                        after_call(args[-7], args[-6], args[-1])
            return watched

    monkeypatch.setattr(numba_backend, "_kernels", Watched)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba has one thread (NUMBA_NUM_THREADS=1)")
def test_a_held_up_helper_makes_the_caller_run_alone_with_bitwise_the_same_result(restore_threads, monkeypatch):
    """A helper thread that stalls (as when it is descheduled on a busy machine) holds the caller up
    once; the caller then runs the next iterations alone, tries again after 16, 64 … iterations (or,
    when other jobs hold the cores, not at all), and the result is bitwise the 1-thread result.

    The hold-up is made certain, not left to timing: the helper's block waits until the caller has
    finished its own block of that iteration, then 0.3 s more (the caller's blocks take well under a
    millisecond), and the caller's first block waits until the helper has started one."""
    import threading
    import time

    helper_blocks = []
    caller_done = threading.Event()
    wait_for_helper = _helper_runs_first_block()

    def before(lo, hi, k):
        if hi <= lo:
            return
        if k == 1:
            helper_blocks.append(lo)
            wait_for_helper(lo, hi, k)
            assert caller_done.wait(120)
            time.sleep(0.3)  # far longer than the caller's own block
        else:
            caller_done.clear()
            wait_for_helper(lo, hi, k)

    def after(lo, hi, k):
        if hi > lo and k == 0:
            caller_done.set()

    spec = MLPSpec((1, 64, 64, 1))
    iters, n = 40, 16
    X, Y, plans = sine_block(5, 0, iters, n, get_preset("gist"), 5, 10, np.float64)
    theta = init_params(spec, np.random.default_rng(4), np.float64)
    eps = np.linspace(0.5, 0.1, iters)
    opt = InnerOptimizer("sgd", 0.02)
    numba.set_num_threads(1)
    want_theta, want_losses, _ = NUMBA.train_chunk(spec, theta, X, Y, plans, eps, opt)
    numba.set_num_threads(2)
    monkeypatch.setattr(numba_threads, "_clock", time.perf_counter)
    _watch_kernels(monkeypatch, before, after)
    got_theta, got_losses, _ = NUMBA.train_chunk(spec, theta, X, Y, plans, eps, opt)
    np.testing.assert_array_equal(got_theta, want_theta)
    np.testing.assert_array_equal(got_losses, want_losses)
    # a probe, then 16 iterations alone, a probe, then 64 alone: at most 3 probes in 40 iterations
    assert 1 <= len(helper_blocks) <= 3, helper_blocks
    # other jobs hold the cores when the caller checks after the hold-up: alone to the end of the call
    helper_blocks.clear()
    wait_for_helper = _helper_runs_first_block()
    monkeypatch.setattr(numba_threads, "_free_cores", lambda ours=0, read=None: 2 if ours == 0 else 0)
    got_theta, got_losses, _ = NUMBA.train_chunk(spec, theta, X, Y, plans, eps, opt)
    np.testing.assert_array_equal(got_theta, want_theta)
    assert len(helper_blocks) == 1, helper_blocks


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba has one thread (NUMBA_NUM_THREADS=1)")
@pytest.mark.parametrize("free", [0, 1, 2])
def test_with_the_cores_busy_two_threads_run_as_one_with_bitwise_the_same_result(restore_threads, monkeypatch,
                                                                                 free):
    spec = MLPSpec((1, 32, 1))
    X, Y, plans = sine_block(6, 0, 3, 64, get_preset("gist"), 2, 10, np.float64)
    theta = init_params(spec, np.random.default_rng(1), np.float64)
    eps, opt = np.linspace(0.5, 0.1, 3), InnerOptimizer("sgd", 0.02)
    numba.set_num_threads(1)
    want = NUMBA.train_chunk(spec, theta, X, Y, plans, eps, opt)[0]
    want_phi = NUMBA.inner_loop(spec, theta, X[0], Y[0], plans[0], opt).phi
    numba.set_num_threads(2)
    rows = set()
    wait_for_helper = _helper_runs_first_block() if free == 2 else (lambda lo, hi, k: None)

    def before(lo, hi, k):
        if hi > lo:
            rows.add(k)
            wait_for_helper(lo, hi, k)
    _watch_kernels(monkeypatch, before)
    monkeypatch.setattr(numba_threads, "_free_cores", lambda ours=0, read=None: free)
    np.testing.assert_array_equal(NUMBA.train_chunk(spec, theta, X, Y, plans, eps, opt)[0], want)
    np.testing.assert_array_equal(NUMBA.inner_loop(spec, theta, X[0], Y[0], plans[0], opt).phi, want_phi)
    assert rows == ({0} if free < 2 else {0, 1})


def _helper_runs_first_block(timeout=120.0):
    """Hooks that hold the calling thread's first task block (k = 0) until the helper (k = 1) has
    started one, so a helper takes part however slowly the machine schedules it."""
    import threading

    started = threading.Event()
    first = [True]

    def before(lo, hi, k):
        if hi <= lo:
            return
        if k == 1:
            started.set()
        elif first[0]:
            first[0] = False
            assert started.wait(timeout), "the helper thread never ran"
    return before


def _loadavg(*texts):
    """A /proc/loadavg reader that returns ``texts`` in turn (the last one from then on)."""
    it = iter(texts)
    last = [texts[-1]]

    def read():
        last[0] = next(it, last[0])
        return last[0]
    return read


@pytest.mark.parametrize("texts, ours, free", [
    (["0.50 0.40 0.30 1/80 123"], 0, 4),                 # only the caller runs: every CPU is free
    (["2.00 1.90 1.50 3/80 123"] * 3, 0, 2),             # two other jobs
    (["6.00 5.00 4.00 9/80 123"] * 3, 0, 0),             # more jobs than CPUs
    (["2.00 1.90 1.50 3/80 123"] * 3, 1, 3),             # one of the other runnable threads is this call's
    (["0.5 0.4 0.3 3/80 1", "0.5 0.4 0.3 1/80 1"], 0, 4),  # a thread that ran for a moment is not a job
    (["no numbers here"], 0, 4),                         # unreadable: every CPU counts as free
])
def test_free_cores_reads_the_runnable_threads_of_proc_loadavg(monkeypatch, texts, ours, free):
    monkeypatch.setattr(numba_threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(numba_threads.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(numba_threads, "_LOAD_READ_GAP_S", 0.0)
    assert numba_threads._free_cores(ours, read=_loadavg(*texts)) == free


def test_free_cores_counts_every_cpu_free_when_the_count_covers_more_cpus_than_the_process_may_use(monkeypatch):
    """In a container limited to CPUs 0 and 1 of a 64-CPU host, /proc/loadavg counts the host's threads."""
    monkeypatch.setattr(numba_threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(numba_threads.os, "cpu_count", lambda: 64)
    assert numba_threads._free_cores(read=_loadavg("40.0 40.0 40.0 50/900 1")) == 2


# ---------------------------------------------------------------------------------------------
# the backend object, warmup, threading layer
# ---------------------------------------------------------------------------------------------
def test_get_backend_numba_returns_the_backend_and_warmup_reports_seconds():
    be = get_backend("numba")
    assert be.name == "numba"
    seconds = be.warmup(MLPSpec((1, 8, 1)), np.float64, InnerOptimizer("adam", 1e-3))
    assert isinstance(seconds, float) and seconds >= 0


def test_the_sine_command_defaults_to_numba_and_checks_the_thread_count():
    from minireptile.commands.common import FlagError, set_threads
    from minireptile.commands import sine

    assert sine.DEFAULT_BACKEND == "numba"
    with pytest.raises(FlagError, match="--threads: expected at most"):
        set_threads("--threads", numba.config.NUMBA_NUM_THREADS + 1)


def test_importing_minireptile_selects_no_threading_layer_until_the_backend_is_used():
    script = ("import numba, minireptile\n"
              "print(numba.config.THREADING_LAYER)\n"
              "from minireptile import get_backend\n"
              "get_backend('numba')\n"
              "print(numba.config.THREADING_LAYER)\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "NUMBA_THREADING_LAYER"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["default", numba_backend.THREADING_LAYER]


def test_item14_a_damaged_on_disk_cache_is_dropped_with_a_warning_and_recompiled(tmp_path, monkeypatch):
    """A truncated cache file made every later run fail with UnpicklingError; now the kernels' cache files are
    removed, a warning says so, and the call is retried (numba then compiles). The failure is raised from a frame
    of numba's cache loader, as a truncated .nbc file makes it."""
    from minireptile.backends import numba_cpu

    for name in ("numba_kernels.run_chunk-1.py311.nbi", "numba_kernels.run_chunk-1.py311.1.nbc",
                 "numba_simd._rows-2.py311.nbi", "other.txt"):
        (tmp_path / name).write_bytes(b"x")
    calls = []

    def run():
        calls.append(1)
        if len(calls) == 1:
            exec(compile("import pickle\nraise pickle.UnpicklingError('pickle data was truncated')",
                         os.path.join("site-packages", "numba", "core", "caching.py"), "exec"))
        return "compiled"

    monkeypatch.setattr(numba_cpu, "_cache_dir", lambda: str(tmp_path))
    with pytest.warns(RuntimeWarning, match="cache of minireptile's kernels .* was damaged .*UnpicklingError"):
        assert numba_cpu._with_cache_recovery(run) == "compiled"
    assert len(calls) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["other.txt"]
    # any other error is the caller's: raised as it is, nothing removed
    (tmp_path / "numba_kernels.x.nbi").write_bytes(b"x")
    with pytest.raises(ZeroDivisionError):
        numba_cpu._with_cache_recovery(lambda: 1 / 0)
    assert (tmp_path / "numba_kernels.x.nbi").exists()


FORK_SCRIPT = """
import multiprocessing as mp
import numpy as np
from minireptile import (InnerOptimizer, MLPSpec, ReptileConfig, get_backend, get_preset, init_params, meta_train,
                         sine_block, stream_rng)

spec, preset = MLPSpec((1, 8, 1)), get_preset("gist")
cfg = ReptileConfig(iters=8, meta_batch=4, eps0=0.5, inner=InnerOptimizer("sgd", 0.02), inner_steps=2, inner_batch=5)


def train(seed):
    theta = init_params(spec, stream_rng(seed, 0), np.float64)
    sample = lambda b: sine_block(seed, b, 8, 4, preset, 2, 5, np.float64)
    return meta_train(spec, theta, sample, 8, cfg, get_backend("numba"))[0].tolist()


if __name__ == "__main__":
    expected = [train(seed) for seed in (1, 2)]          # the parent trains on the numba backend first
    with mp.get_context("fork").Pool(2) as pool:
        assert pool.map(train, [1, 2]) == expected        # forked workers train too, bitwise alike
    print("ok")
"""


def test_item16_a_fork_after_numba_training_works(tmp_path):
    """Forked workers used to hang (GNU OpenMP is not fork-safe); the backend's threads are plain Python threads
    started per call, so a fork between calls is safe. The timeout is a hang guard, not a timing check."""
    script = tmp_path / "fork.py"
    script.write_text(FORK_SCRIPT)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "NUMBA_NUM_THREADS": "2"})
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
