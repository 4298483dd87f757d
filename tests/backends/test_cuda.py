"""The CUDA backend against the NumPy reference, in numba's CUDA simulator when there is no GPU.

How these tests run
-------------------
``tests/conftest.py`` sets ``NUMBA_ENABLE_CUDASIM=1`` before any test module is imported (numba.cuda
reads it once, at its first import), so a plain ``python -m pytest`` on a machine without a GPU runs
the real kernel source, thread by thread, in the simulator. ``MINIREPTILE_TEST_GPU=1 python -m pytest
tests/backends/test_cuda.py`` runs the same tests on a GPU instead. The simulator is slow (one Python
thread per CUDA thread), so shapes are tiny, blocks are small (``threads_per_block`` 1–8, which also
makes every thread stride over several work items) and hypothesis draws few examples.

Tolerances: float64 ≤ 1e-10 relative to the reference, float32 ≤ 1e-4.
"""

import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("numba_cuda", reason='numba-cuda is part of the test extra: pip install -e ".[test]"')

from minireptile import AdamState, InnerOptimizer, MLPSpec, get_backend, init_params  # noqa: E402
from minireptile.backends import cuda as cb  # noqa: E402
from minireptile import reference  # noqa: E402
from minireptile.errors import BackendUnavailableError  # noqa: E402
from minireptile.reptile import train_chunk_generic  # noqa: E402

from helpers import max_rel_error  # noqa: E402

ON_GPU = os.environ.get("MINIREPTILE_TEST_GPU") == "1"
TOL = {np.float64: 1e-10, np.float32: 1e-4}


@st.composite
def inner_problems(draw, dtype, lead=()):
    """A small inner-loop problem with every option of the kernel drawn.

    ``lead`` = () draws (theta, X, Y, plan) for one meta-batch; (iters,) adds an outer axis.
    """
    depth = draw(st.integers(1, 2))
    widths = draw(st.lists(st.integers(1, 5), min_size=depth, max_size=depth))
    loss = draw(st.sampled_from(["mse", "ce"]))
    d_in = draw(st.integers(1, 3))
    d_out = draw(st.integers(2, 3)) if loss == "ce" else draw(st.integers(1, 2))
    spec = MLPSpec((d_in, *widths, d_out), draw(st.sampled_from(["tanh", "relu"])), loss)
    n_tasks = draw(st.integers(1, 3))
    n_points = draw(st.integers(1, 6))
    steps = draw(st.integers(1, 3))
    batch = draw(st.integers(1, 4))
    opt = InnerOptimizer(draw(st.sampled_from(["sgd", "adam"])), draw(st.sampled_from([0.05, 0.3])),
                         beta1=draw(st.sampled_from([0.0, 0.5])),
                         state_policy=draw(st.sampled_from(["reset", "carry"])))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (*lead, n_tasks, n_points)
    theta = init_params(spec, rng, np.float64) + rng.normal(0, 0.3, spec.n_params)
    X = rng.normal(size=(*shape, d_in)).astype(dtype)
    Y = rng.integers(0, d_out, size=shape) if loss == "ce" else rng.normal(size=(*shape, d_out)).astype(dtype)
    plan = rng.integers(0, n_points, size=(*lead, n_tasks, steps, batch))
    return spec, theta.astype(dtype), X, Y, plan, opt, rng


def kernel_options(draw_from):
    """threads per block (1–8, or the default) and shared memory small enough to force φ to global memory."""
    return draw_from(st.sampled_from([None, 1, 3, 8])), draw_from(st.booleans())


def shared_limit(spec, batch, dtype, phi_global: bool) -> int:
    if not phi_global:
        return cb.SHARED_MEMORY_BYTES
    layout = cb.shared_layout(spec, batch, dtype, 10**9)
    return layout.nbytes - 1  # one byte short of fitting φ: φ then lives in its row of the global output


def assert_inner_equal(got, ref, tol):
    assert got.phi.shape == ref.phi.shape and got.phi.dtype == ref.phi.dtype
    assert max_rel_error(got.phi, ref.phi) <= tol
    assert got.loss.shape == ref.loss.shape and got.loss.dtype == np.float64
    assert max_rel_error(got.loss, ref.loss) <= tol
    if ref.state is None:
        assert got.state is None
    else:
        assert got.state.t == ref.state.t
        assert max_rel_error(got.state.m, ref.state.m) <= tol
        assert max_rel_error(got.state.v, ref.state.v) <= tol


def check_inner_loop(data, dtype):
    spec, theta, X, Y, plan, opt, rng = data.draw(inner_problems(dtype))
    threads, phi_global = kernel_options(data.draw)
    n_tasks, P = plan.shape[0], spec.n_params
    if data.draw(st.booleans()):  # one start point per task
        theta = (theta + rng.normal(0, 0.1, (n_tasks, P))).astype(dtype)
    state = None
    if opt.name == "adam" and data.draw(st.booleans()):  # resume Adam from given moments
        rows = data.draw(st.sampled_from([(P,), (n_tasks, P)]))
        state = AdamState((rng.normal(size=rows) * 0.01).astype(dtype), (rng.random(rows) * 1e-3).astype(dtype),
                          data.draw(st.integers(0, 5)))
    limit = shared_limit(spec, plan.shape[2], dtype, phi_global)
    got = cb.inner_loop(spec, theta, X, Y, plan, opt, state, threads_per_block=threads, shared_limit=limit)
    assert cb.shared_layout(spec, plan.shape[2], dtype, limit).phi_in_shared == (not phi_global)
    assert_inner_equal(got, reference.inner_loop(spec, theta, X, Y, plan, opt, state), TOL[dtype])


@settings(max_examples=20)
@given(st.data())
def test_inner_loop_matches_reference_float64(data):
    check_inner_loop(data, np.float64)


@settings(max_examples=10)
@given(st.data())
def test_inner_loop_matches_reference_float32(data):
    check_inner_loop(data, np.float32)


@settings(max_examples=8)
@given(st.data())
def test_train_chunk_matches_generic_float64(data):
    iters = data.draw(st.integers(1, 3))
    spec, theta, X, Y, plans, opt, rng = data.draw(inner_problems(np.float64, lead=(iters,)))
    threads, phi_global = kernel_options(data.draw)
    eps = rng.uniform(0.1, 1.0, iters)
    P = spec.n_params
    state = None
    if opt.name == "adam" and opt.state_policy == "carry" and data.draw(st.booleans()):
        state = AdamState(rng.normal(size=P) * 0.01, rng.random(P) * 1e-3, data.draw(st.integers(0, 5)))
    limit = shared_limit(spec, plans.shape[3], np.float64, phi_global)
    theta_c, losses_c, state_c = cb.train_chunk(spec, theta, X, Y, plans, eps, opt, state,
                                                threads_per_block=threads, shared_limit=limit)
    theta_r, losses_r, state_r = train_chunk_generic(reference.inner_loop, spec, theta, X, Y, plans, eps, opt, state)
    assert theta_c.shape == (P,) and theta_c.dtype == np.float64
    assert max_rel_error(theta_c, theta_r) <= 1e-10
    assert max_rel_error(losses_c, losses_r) <= 1e-10
    assert (state_c is None) == (state_r is None)
    if state_r is not None:  # carried Adam moments: the mean over the meta-batch, t advanced
        assert state_c.t == state_r.t
        assert max_rel_error(state_c.m, state_r.m) <= 1e-10
        assert max_rel_error(state_c.v, state_r.v) <= 1e-10


def test_train_chunk_float32_adam_carry_through_get_backend():
    spec = MLPSpec((1, 4, 3, 1), "tanh", "mse")
    rng = np.random.default_rng(7)
    iters, n, pts, steps, batch = 2, 3, 5, 2, 3
    theta = init_params(spec, rng, np.float32)
    X = rng.normal(size=(iters, n, pts, 1)).astype(np.float32)
    Y = rng.normal(size=(iters, n, pts, 1)).astype(np.float32)
    plans = rng.integers(0, pts, (iters, n, steps, batch))
    opt = InnerOptimizer("adam", 0.05, state_policy="carry")
    eps = np.array([0.5, 0.25])
    backend = get_backend("cuda")
    assert backend.name == "cuda"
    got = backend.train_chunk(spec, theta, X, Y, plans, eps, opt, None)
    ref = train_chunk_generic(reference.inner_loop, spec, theta, X, Y, plans, eps, opt, None)
    assert got[0].dtype == np.float32
    assert max_rel_error(got[0], ref[0]) <= 1e-4
    assert max_rel_error(got[1], ref[1]) <= 1e-4
    assert got[2].t == ref[2].t == iters * steps
    assert max_rel_error(got[2].m, ref[2].m) <= 1e-4 and max_rel_error(got[2].v, ref[2].v) <= 1e-4


def test_inner_loop_adapts_in_place_into_out():
    """``out``: the result lands in the given host arrays, θ and the Adam state may be them (bitwise as a new call)."""
    spec = MLPSpec((2, 3, 2), "relu", "ce")
    rng = np.random.default_rng(4)
    n, pts, P = 2, 4, spec.n_params
    theta = init_params(spec, rng)[None] + rng.normal(0, 0.1, (n, P))
    X = rng.normal(size=(n, pts, 2))
    Y = rng.integers(0, 2, (n, pts))
    plan = rng.integers(0, pts, (n, 2, 3))
    opt = InnerOptimizer("adam", 0.05)
    backend = get_backend("cuda")
    once = backend.inner_loop(spec, theta, X, Y, plan, opt, threads_per_block=4)
    twice = backend.inner_loop(spec, once.phi, X, Y, plan, opt, once.state, threads_per_block=4)
    out = (theta.copy(), np.empty((n, P)), np.empty((n, P)))
    first = backend.inner_loop(spec, out[0], X, Y, plan, opt, out=out, threads_per_block=4)
    assert first.phi is out[0] and first.state.m is out[1] and first.state.v is out[2]
    np.testing.assert_array_equal(first.phi, once.phi)
    second = backend.inner_loop(spec, out[0], X, Y, plan, opt, first.state, out=out, threads_per_block=4)
    np.testing.assert_array_equal(second.phi, twice.phi)
    np.testing.assert_array_equal(second.state.v, twice.state.v)
    assert second.state.t == twice.state.t == 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gist_network_default_launch(dtype):
    """The gist's 1-64-64-1 tanh net with the default block size: φ in shared memory in float32
    (with padded W rows), in global memory in float64 (28 KiB vs 55 KiB would not fit 48 KiB)."""
    spec = MLPSpec((1, 64, 64, 1))
    rng = np.random.default_rng(3)
    layout = cb.shared_layout(spec, 10, dtype)
    assert layout.phi_in_shared == (dtype == np.float32) and layout.threads == cb.MAX_THREADS == 128
    theta = init_params(spec, rng, dtype)
    X = rng.uniform(-5, 5, (1, 50, 1)).astype(dtype)
    Y = (2 * np.sin(X + 1)).astype(dtype)
    plan = rng.permutation(50)[None, :20].reshape(1, 2, 10)
    opt = InnerOptimizer("sgd", 0.02)
    assert_inner_equal(cb.inner_loop(spec, theta, X, Y, plan, opt),
                       reference.inner_loop(spec, theta, X, Y, plan, opt), TOL[dtype])


def test_sizes_beyond_shared_memory_raise_value_error_naming_them():
    spec = MLPSpec((1, 512, 512, 1))
    X = np.zeros((1, 40, 1), np.float32)
    with pytest.raises(ValueError, match=r"inner batch x layer widths too large .*batch 40 .*\(1, 512, 512, 1\)"):
        get_backend("cuda").inner_loop(spec, np.zeros(spec.n_params, np.float32), X, X, np.zeros((1, 1, 40), int),
                                       InnerOptimizer())
    with pytest.raises(ValueError, match="batch 40"):
        cb.check_sizes(spec, 1, 40, 1, 40, np.float32)
    cb.check_sizes(spec, 1, 40, 1, 2, np.float32)  # a batch of 2 fits (φ then lives in global memory)


def test_bad_arguments_raise_named_errors():
    spec = MLPSpec((1, 3, 1))
    X = np.zeros((1, 4, 1))
    theta = np.zeros(spec.n_params)
    with pytest.raises(ValueError, match="plan: indices must lie in"):
        cb.inner_loop(spec, theta, X, X, np.full((1, 1, 2), 4), InnerOptimizer())
    with pytest.raises(TypeError, match="theta: expected float32 or float64"):
        cb.inner_loop(spec, theta.astype(np.int64), X, X, np.zeros((1, 1, 2), int), InnerOptimizer())
    with pytest.raises(ValueError, match="X: expected at least one task"):
        cb.inner_loop(spec, theta, X[:0], X[:0], np.zeros((0, 1, 2), int), InnerOptimizer())
    with pytest.raises(ValueError, match="threads_per_block"):
        cb.inner_loop(spec, theta, X, X, np.zeros((1, 1, 2), int), InnerOptimizer(), threads_per_block=0)


def test_missing_numba_cuda_raises_one_line_backend_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba_cuda", None)  # import numba_cuda now raises ImportError
    monkeypatch.setattr(cb, "_kernels", None)
    with pytest.raises(BackendUnavailableError) as info:
        get_backend("cuda")
    message = str(info.value)
    assert "\n" not in message
    assert "numba-cuda is not installed" in message and 'pip install "minireptile[cuda]"' in message
    assert "--backend numba" in message


def _cli(prelude: str, env: dict) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as tmp:        # the run folder, outside the working tree
        out = os.path.join(tmp, "unused")
        code = (f"{prelude}; import sys; from minireptile.cli import main; "
                f"sys.exit(main(['sine', '--backend', 'cuda', '--iters', '1', '--quiet', '--no-plot', '--out', {out!r}]))")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.skipif(ON_GPU, reason="checks the message of a machine without a GPU")
def test_cli_without_gpu_exits_with_one_line():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    no_gpu = _cli("pass", env)
    missing = _cli("import sys; sys.modules['numba_cuda'] = None", env)
    for proc, what in [(no_gpu, "no CUDA GPU found"), (missing, "numba-cuda is not installed")]:
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert re.match(r"minireptile( sine)?: error: ", lines[0]) and what in lines[0]
        assert 'pip install "minireptile[cuda]"' in lines[0] and "--backend numba" in lines[0]


def test_importing_minireptile_never_imports_numba_cuda():
    code = ("import sys, minireptile, minireptile.backends.cuda, minireptile.backends.kernel_math; "
            "assert 'numba.cuda' not in sys.modules and 'numba_cuda' not in sys.modules, 'imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_device_functions_are_kernel_math_compiled_for_cuda():
    """The CUDA backend's per-element math is kernel_math's source, not a copy."""
    from minireptile.backends import kernel_math as km

    device = cb._load().device
    for name in ("activate", "activate_grad", "adam_update"):
        assert device[name].py_func.__code__ is getattr(km, name).__code__


PTX_CHECK = r"""
import sys
from numba import cuda
import numba.cuda.dispatcher as dispatcher
import numpy as np
import minireptile.backends.cuda_kernels as ck

class Sm90:  # device functions compile for the current device; there is none here: pretend sm_90
    compute_capability = (9, 0)

dispatcher.get_current_device = lambda: Sm90()
kernels = ck.compile_kernels(cuda)
for t in ("float32", "float64"):
    a2 = f"{t}[:, ::1]"
    inner = kernels.inner[np.dtype(t)].py_func
    sigs = [(inner,
             f"void({a2}, {a2}, {a2}, float64[::1], {a2}, {a2}, {a2}, {t}[:, :, ::1], {t}[:, :, ::1], "
             f"int64[:, ::1], int64[:, :, ::1], int64[:, ::1], int64[::1], {t}[::1], {a2})"),
            (kernels.sum_rows.py_func, f"void({a2}, {a2}, int64)"),
            (kernels.mean_rows.py_func, f"void({t}[::1], {a2}, {t}[::1])"),
            (kernels.reptile_update.py_func, f"void({t}[::1], {a2}, {t}[::1], {t}[::1], int64)")]
    for fn, sig in sigs:
        try:
            ptx, _ = cuda.compile_ptx(fn, sig, cc=(9, 0))
        except Exception as exc:
            if "nvvm" in str(exc).lower() or "nvrtc" in str(exc).lower() or "libnvvm" in repr(exc).lower():
                print(exc)
                sys.exit(77)  # no CUDA toolkit libraries: cannot compile here
            raise
        if t == "float32" and fn is inner:
            # float32 math stays float32: the only f64 adds are thread 0's loss sum (8 lines of PTX)
            assert ptx.count("add.f64") < 12, ptx.count("add.f64")
print("ok")
"""


def test_kernels_compile_to_ptx_without_a_gpu():
    """The simulator runs Python, so it cannot catch numba typing errors: compile the real kernels
    for sm_90 when libNVVM and NVRTC are installed (pip install "cuda-toolkit[nvvm,nvrtc]==13.*")."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-c", PTX_CHECK], capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode == 77:
        pytest.skip(f"libNVVM/NVRTC not installed: {proc.stdout.strip()[:200]}")
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
