"""The CUDA backend: a meta-batch's whole inner loop in one numba.cuda kernel launch.

Contract
--------
Computes exactly what :func:`minireptile.reference.inner_loop` computes (and, for a chunk of
outer iterations, what :func:`minireptile.reptile.train_chunk_generic` computes), on an NVIDIA
GPU, and is tested against them. This module is the host side: argument checks, the
shared-memory layout (:func:`shared_layout`), launch configurations and transfers; the device code,
split into the phases of the Numba CPU kernel and named alike, is :mod:`minireptile.backends.cuda_kernels`.
Only these two modules use numba.cuda, imported on first use (:func:`backend`), never at import time.

One thread block per task, ``T`` threads per block (default: the largest per-phase work item
count rounded up to a multiple of 32, clamped to [32, 128]; any ``T`` >= 1 is correct). Supported
sizes: ``B·(Σ sizes[:-1] + 2·max(sizes[1:]) + 1)·itemsize`` must fit in 48 KiB (the portable
per-block limit; B = inner batch), else :class:`ValueError` names the sizes; :func:`check_sizes` is
the hook :func:`minireptile.backends.get_backend` calls to reject them before a launch. φ lives in
shared memory when it fits beside them (the gist's 1-64-64-1 net in float32: 28 KiB), else in its
row of the global output array.

Outer loop on the device (:func:`train_chunk`): θ, the chunk's data, plans and ε go to the
device once per chunk; per outer iteration one inner-loop launch writes φ (n_tasks, P), a
fixed-order two-level column sum (G ≤ 32 contiguous groups of tasks, then the groups in order)
forms mean_i φ_i, and θ ← θ + ε·(mean_i φ_i − θ) is applied in place; carried Adam moments
(policy 'carry') are averaged the same way. Only θ, the losses and the carried state come back.

float32 and float64 (θ's dtype is the computation's); tanh and relu; mse and ce; SGD and Adam (state
policies 'reset' and 'carry'). Under ``NUMBA_ENABLE_CUDASIM=1`` (set before numba.cuda is first
imported) the same code runs in numba's CUDA simulator, which is how the tests run without a GPU.
Without numba-cuda, a GPU and driver, or libNVVM, :func:`backend` raises
:class:`~minireptile.errors.BackendUnavailableError` with one line (what is missing, what to install,
which backend to use instead). Kernels compile once per dtype at the first launch (:func:`warmup`) and
are cached by numba (``cache=True``), keyed on cuda_kernels.py only: after editing kernel_math.py delete
``minireptile/backends/__pycache__/cuda_kernels*.nbi/.nbc``.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass

import numpy as np

from . import cuda_kernels as ck
from . import kernel_math as km
from .base import Backend
from ..errors import BackendUnavailableError, missing_extra
from ..mlp import MLPSpec
from ..optim import AdamState, InnerOptimizer, InnerResult

SHARED_MEMORY_BYTES = 48 * 1024  # portable per-block limit (no opt-in attribute needed)
MAX_THREADS = 128                # default block size cap: see 'Registers' in cuda_kernels
MAX_GROUPS = 32                  # task groups of the two-level sum over the meta-batch
REDUCE_THREADS = 128             # block size of the θ-sized kernels (sum, mean, outer update)

_INSTALL = 'pip install "minireptile[cuda]"'
_INSTEAD = "use the numba backend (CPU, --backend numba) instead"

cuda = None            # bound by _load() on first use: the numba.cuda module (host API: transfers, device arrays)
_kernels = None        # cuda_kernels.Kernels, once compiled-on-demand dispatchers exist


def _import_cuda():
    """Import numba.cuda (numba-cuda) or raise BackendUnavailableError with one line."""
    try:
        import numba_cuda  # noqa: F401  (the out-of-tree numba.cuda this backend is tested with)
    except ImportError:
        raise BackendUnavailableError(f"{missing_extra('numba-cuda', 'cuda')} (the cuda backend needs it and an "
                                      f"NVIDIA GPU); or {_INSTEAD}") from None
    try:
        from numba import cuda as numba_cuda_module
    except Exception as exc:  # broken CUDA Python bindings etc.: report, don't trace back
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendUnavailableError(f"numba.cuda failed to import ({first}); reinstall with {_INSTALL}, "
                                      f"or {_INSTEAD}") from None
    if not _simulator_enabled():
        if not numba_cuda_module.is_available():
            raise BackendUnavailableError(f"no CUDA GPU found: numba.cuda sees no NVIDIA GPU with a working driver; "
                                          f"the cuda backend needs one (and {_INSTALL}); {_INSTEAD}")
        try:  # libNVVM compiles the kernels
            from numba.cuda.cudadrv import nvvm
            nvvm_ok = nvvm.is_available()
        except Exception:  # pragma: no cover - internal API moved: let the compile report it
            nvvm_ok = True
        if not nvvm_ok:
            raise BackendUnavailableError('libNVVM (CUDA toolkit) not found: pip install "numba-cuda[cu12]" (or '
                                          f"[cu13]) or install the CUDA toolkit; or {_INSTEAD}")
    return numba_cuda_module


def _simulator_enabled() -> bool:
    try:
        from numba.cuda.core import config
    except ImportError:  # pragma: no cover - older layouts
        from numba.core import config
    return bool(config.ENABLE_CUDASIM)


def _load() -> ck.Kernels:
    """Import numba.cuda and wrap the kernels (compilation happens at the first launch per dtype)."""
    global cuda, _kernels
    if _kernels is not None:
        return _kernels
    module = _import_cuda()
    _kernels = ck.compile_kernels(module)
    cuda = module
    return _kernels


# ---------------------------------------------------------------------------------------------
# host side: shared-memory layout, argument checks, launches
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SharedLayout:
    """Where everything lives for one (spec, batch, dtype) (see :func:`shared_layout`)."""

    layers: np.ndarray   # (L, 8) int64, columns ck.L_*: w_off, b_off, fan_in, fan_out (θ layout),
    #                      ws_w_off, ws_b_off, stride (workspace layout), act_off (a_l, (fan_in, B))
    dz0: int             # shared offsets of the two gradient buffers
    dz1: int
    scratch: int         # shared offset of the per-example loss terms
    n_shared: int        # shared-memory elements per block
    nbytes: int          # n_shared · itemsize
    phi_in_shared: bool  # φ in shared memory (else in its row of the global output)
    threads: int         # default threads per block


def shared_layout(spec: MLPSpec, batch: int, dtype, limit: int = SHARED_MEMORY_BYTES) -> SharedLayout:
    """Shared-memory layout of the inner-loop kernel (see the module docstring).

    Parameters
    ----------
    spec : MLPSpec
    batch : int
        Inner minibatch size B.
    dtype : {numpy.float32, numpy.float64}
    limit : int
        Bytes of shared memory a block may use.

    Raises
    ------
    ValueError
        The activations and gradients of one minibatch do not fit in ``limit`` bytes.
    """
    itemsize = np.dtype(dtype).itemsize
    sizes = spec.sizes
    L = spec.n_layers
    n_act = batch * (sum(sizes[:-1]) + 2 * max(sizes[1:]) + 1)
    strides = [fi | 1 for fi in sizes[:-1]]
    n_phi = sum(fo * (st + 1) for st, fo in zip(strides, sizes[1:]))
    if n_act * itemsize > limit:
        raise ValueError(
            f"inner batch x layer widths too large for the cuda backend: batch {batch} with sizes {sizes} needs "
            f"{n_act * itemsize} bytes of shared memory per block for activations and gradients "
            f"(batch x (sum(sizes[:-1]) + 2*max(sizes[1:]) + 1) x {itemsize} bytes), more than the {limit} "
            f"supported; use a smaller inner batch or hidden width, or backend 'numba'")
    phi_in_shared = (n_act + n_phi) * itemsize <= limit
    table = np.zeros((L, 8), dtype=np.int64)
    off = 0
    for l, ((w_off, b_off), fi, fo) in enumerate(zip(spec.offsets, sizes[:-1], sizes[1:])):
        table[l, ck.L_W_OFF:ck.L_FAN_OUT + 1] = (w_off, b_off, fi, fo)
        if phi_in_shared:
            table[l, ck.L_WS_W], table[l, ck.L_WS_B], table[l, ck.L_STRIDE] = off, off + fo * strides[l], strides[l]
            off += fo * (strides[l] + 1)
        else:
            table[l, ck.L_WS_W], table[l, ck.L_WS_B], table[l, ck.L_STRIDE] = w_off, b_off, fi
    for l in range(L):
        table[l, ck.L_ACT] = off
        off += sizes[l] * batch
    width = max(sizes[1:]) * batch
    dz0, dz1, scratch = off, off + width, off + 2 * width
    n_shared = scratch + batch
    work = max(max(fo * batch, fi * batch, fo * fi + fo) for fi, fo in zip(sizes[:-1], sizes[1:]))
    threads = int(min(MAX_THREADS, max(32, -(-work // 32) * 32)))
    return SharedLayout(table, dz0, dz1, scratch, n_shared, n_shared * itemsize, phi_in_shared, threads)


def _compute_dtype(theta) -> np.dtype:
    """θ's dtype is the computation's (as everywhere in minireptile)."""
    dtype = np.asarray(theta).dtype
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"theta: expected float32 or float64, got {dtype}")
    return dtype


def _check_task_arrays(spec: MLPSpec, X, Y, plan, lead: tuple, dtype):
    """Validate and convert X, Y, plan (with leading axes ``lead``); returns C-contiguous copies."""
    X = np.asarray(X)
    if not np.issubdtype(X.dtype, np.floating):
        raise TypeError(f"X: expected a float array, got {X.dtype}")
    X = np.ascontiguousarray(X, dtype=dtype)
    nd = len(lead)
    if X.ndim != nd + 2 or X.shape[-1] != spec.d_in:
        raise ValueError(f"X: expected shape {(*lead, 'n_points', spec.d_in)}, got {X.shape}")
    if X.shape[:nd] != lead:
        raise ValueError(f"X: expected leading axes {lead}, got {X.shape}")
    n_points = X.shape[nd]
    if X.size == 0:
        raise ValueError(f"X: expected at least one task and one point, got shape {X.shape}")
    plan = np.asarray(plan)
    if not np.issubdtype(plan.dtype, np.integer):
        raise TypeError(f"plan: expected integer indices, got {plan.dtype}")
    if plan.ndim != nd + 2 or plan.shape[:nd] != lead:
        raise ValueError(f"plan: expected shape {(*lead, 'steps', 'batch')}, got {plan.shape}")
    if plan.shape[-1] < 1 or plan.shape[-2] < 1:
        raise ValueError(f"plan: expected at least one step of batch >= 1, got shape {plan.shape}")
    if plan.size and (plan.min() < 0 or plan.max() >= n_points):
        raise ValueError(f"plan: indices must lie in [0, {n_points}), got [{plan.min()}, {plan.max()}]")
    plan = np.ascontiguousarray(plan, dtype=np.int64)
    Y = np.asarray(Y)
    if spec.loss == "ce":
        if not np.issubdtype(Y.dtype, np.integer):
            raise TypeError(f"Y: loss='ce' expects integer labels, got {Y.dtype}")
        if Y.shape != (*lead, n_points):
            raise ValueError(f"Y: expected shape {(*lead, n_points)}, got {Y.shape}")
        if Y.size and (Y.min() < 0 or Y.max() >= spec.d_out):
            raise ValueError(f"Y: labels must lie in [0, {spec.d_out}), got [{Y.min()}, {Y.max()}]")
        Y = np.ascontiguousarray(Y, dtype=np.int64)
    else:
        if not np.issubdtype(Y.dtype, np.floating):
            raise TypeError(f"Y: loss='mse' expects float targets, got {Y.dtype}")
        if Y.shape != (*lead, n_points, spec.d_out):
            raise ValueError(f"Y: expected shape {(*lead, n_points, spec.d_out)}, got {Y.shape}")
        Y = np.ascontiguousarray(Y, dtype=dtype)
    return X, Y, plan


def _check_opt(opt) -> None:
    if not isinstance(opt, InnerOptimizer):
        raise TypeError(f"opt: expected InnerOptimizer, got {type(opt).__name__}")


def _rows(name: str, a, n_tasks: int, P: int, dtype) -> np.ndarray:
    """(P,) or (n_tasks, P) → C-contiguous (n0, P) of ``dtype``."""
    a = np.asarray(a)
    if a.shape == (P,):
        a = a[None, :]
    elif a.shape != (n_tasks, P):
        raise ValueError(f"{name}: expected shape ({P},) or ({n_tasks}, {P}), got {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{name}: expected a float array, got {a.dtype}")
    return np.ascontiguousarray(a, dtype=dtype)


def _check_threads(threads_per_block, default: int) -> int:
    if threads_per_block is None:
        return default
    if isinstance(threads_per_block, bool) or not isinstance(threads_per_block, (int, np.integer)) \
            or not 1 <= threads_per_block <= 1024:
        raise ValueError(f"threads_per_block: expected an integer in [1, 1024], got {threads_per_block!r}")
    return int(threads_per_block)


def _hyper(spec: MLPSpec, opt: InnerOptimizer, batch: int, dtype) -> np.ndarray:
    h = np.zeros(ck.N_HYPER, dtype=np.float64)
    h[[ck.H_LR, ck.H_BETA1, ck.H_BETA2, ck.H_EPS]] = opt.lr, opt.beta1, opt.beta2, opt.eps
    h[ck.H_MSE_COEF] = 2.0 / (batch * spec.d_out)
    h[ck.H_BATCH], h[ck.H_ZERO], h[ck.H_ONE] = batch, 0.0, 1.0
    return h.astype(dtype)


def _bias_corrections(opt: InnerOptimizer, t0: int, steps: int, dtype) -> np.ndarray:
    """(steps, 2): 1 − β1^t, 1 − β2^t for t = t0+1 … t0+steps (Python floats, as the reference)."""
    t = np.arange(t0 + 1, t0 + steps + 1, dtype=np.float64)
    return np.stack([1 - opt.beta1**t, 1 - opt.beta2**t], axis=1).astype(dtype)


def _cfg(spec: MLPSpec, opt: InnerOptimizer, layout: SharedLayout, batch: int, has_state: bool) -> np.ndarray:
    c = np.zeros(ck.N_CFG, dtype=np.int64)
    c[ck.C_ACT] = km.ACT_CODES[spec.activation]
    c[ck.C_LOSS] = km.LOSS_CODES[spec.loss]
    c[ck.C_OPT] = km.OPT_CODES[opt.name]
    c[ck.C_HAS_STATE] = int(has_state)
    c[ck.C_PHI_SHARED] = int(layout.phi_in_shared)
    c[ck.C_BATCH] = batch
    c[ck.C_DZ0], c[ck.C_DZ1], c[ck.C_SCRATCH] = layout.dz0, layout.dz1, layout.scratch
    return c


def inner_loop(spec: MLPSpec, theta, X, Y, plan, opt: InnerOptimizer, state: AdamState | None = None, *,
               threads_per_block: int | None = None, shared_limit: int = SHARED_MEMORY_BYTES,
               out=None) -> InnerResult:
    """The CUDA twin of :func:`minireptile.reference.inner_loop` (same arguments and result).

    Parameters
    ----------
    spec : MLPSpec
    theta : ndarray, shape (P,) or (n_tasks, P), float32 or float64 (the computation's dtype)
    X : ndarray, shape (n_tasks, n_points, d_in)
    Y : ndarray, shape (n_tasks, n_points, d_out) float, or (n_tasks, n_points) int for "ce"
    plan : ndarray of int, shape (n_tasks, steps, batch)
    opt : InnerOptimizer
    state : AdamState or None
        Adam start moments ((P,) or (n_tasks, P)) and step count; None starts from zeros.
    threads_per_block : int, optional
        Override the block size (tests use small blocks to exercise the strided loops).
    shared_limit : int
        Shared-memory bytes per block (lower it to force φ into global memory).
    out : tuple of ndarray, optional
        Host arrays (n_tasks, P) the results are copied into, ``(phi,)`` for SGD or ``(phi, m, v)``
        for Adam; θ and the state may be these arrays themselves (they are on the device before
        the kernel runs).

    Returns
    -------
    InnerResult
        ``phi`` (n_tasks, P), ``loss`` (n_tasks,) float64, ``state`` (Adam) or None.
    """
    _check_opt(opt)
    dtype = _compute_dtype(theta)
    n_tasks = np.shape(X)[0] if np.ndim(X) == 3 else -1
    X, Y, plan = _check_task_arrays(spec, X, Y, plan, (n_tasks,), dtype)
    P = spec.n_params
    theta0 = _rows("theta", theta, n_tasks, P, dtype)
    steps, batch = plan.shape[1], plan.shape[2]
    layout = shared_layout(spec, batch, dtype, shared_limit)
    threads = _check_threads(threads_per_block, layout.threads)
    adam = opt.name == "adam"
    has_state = adam and state is not None
    t0 = int(state.t) if has_state else 0
    kernels = _load()

    d_phi = cuda.device_array((n_tasks, P), dtype)
    d_loss = cuda.device_array(n_tasks, np.float64)
    d_m, d_v, d_m0, d_v0 = _moments(adam, state, n_tasks, P, dtype)
    Yf, Yi = _split_targets(spec, Y, dtype, 1)
    with _small_grids_expected():
        launch = kernels.inner[dtype][n_tasks, threads, 0, layout.nbytes]
    launch(
        d_phi, d_m, d_v, d_loss, cuda.to_device(theta0), d_m0, d_v0,
        cuda.to_device(X), cuda.to_device(Yf), cuda.to_device(Yi), cuda.to_device(plan),
        cuda.to_device(layout.layers), cuda.to_device(_cfg(spec, opt, layout, batch, has_state)),
        cuda.to_device(_hyper(spec, opt, batch, dtype)), cuda.to_device(_bias_corrections(opt, t0, steps, dtype)))
    phi, m, v = (*out, None, None)[:3] if out is not None else (None, None, None)
    phi = d_phi.copy_to_host(phi)
    losses = d_loss.copy_to_host()
    new_state = AdamState(d_m.copy_to_host(m), d_v.copy_to_host(v), t0 + steps) if adam else None
    return InnerResult(phi, losses, new_state)


def _moments(adam: bool, state: AdamState | None, n_tasks: int, P: int, dtype):
    """Device arrays m, v (n_tasks, P) for the adapted Adam moments and m0, v0 (rows of ``state``, or
    zeros (1, P)) for their start values; (1, 1) dummies for SGD, where the kernel reads none of them."""
    shape = (n_tasks, P) if adam else (1, 1)
    m, v = cuda.device_array(shape, dtype), cuda.device_array(shape, dtype)
    if adam and state is not None:
        return m, v, *(cuda.to_device(_rows(f"state.{k}", getattr(state, k), n_tasks, P, dtype)) for k in "mv")
    zeros = cuda.to_device(np.zeros((1, P) if adam else (1, 1), dtype))
    return m, v, zeros, zeros


@contextlib.contextmanager
def _small_grids_expected():
    """Serial Reptile and small evaluations launch few blocks: numba-cuda's low-occupancy warning
    ("Grid size N will likely result in GPU under-utilization") is expected there, not news."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Grid size \d+ will likely result in GPU under-utilization")
        yield


def _split_targets(spec: MLPSpec, Y: np.ndarray, dtype, n_lead: int):
    """(float targets, int labels): the one the loss uses, and a tiny dummy for the other."""
    if spec.loss == "ce":
        return np.zeros((1,) * (n_lead + 2), dtype), Y
    return Y, np.zeros((1,) * (n_lead + 1), np.int64)


def train_chunk(spec: MLPSpec, theta, X, Y, plans, eps, opt: InnerOptimizer, state: AdamState | None = None, *,
                threads_per_block: int | None = None, shared_limit: int = SHARED_MEMORY_BYTES):
    """A chunk of outer iterations on the device: the CUDA twin of ``train_chunk_generic``.

    Parameters
    ----------
    spec : MLPSpec
    theta : ndarray, shape (P,), float32 or float64 (the computation's dtype)
    X : ndarray, shape (iters, n_tasks, n_points, d_in)
    Y : ndarray, shape (iters, n_tasks, n_points, d_out) float, or (iters, n_tasks, n_points) int
    plans : ndarray of int, shape (iters, n_tasks, steps, batch)
    eps : ndarray of float, shape (iters,)
    opt : InnerOptimizer
    state : AdamState or None
        Adam state for the first iteration (policy 'carry': carried moments of shape (P,)).
    threads_per_block, shared_limit
        As in :func:`inner_loop`.

    Returns
    -------
    theta : ndarray, shape (P,), θ's dtype
    losses : ndarray, shape (iters,), mean inner training loss of each outer iteration
    state : AdamState or None
        Carried Adam state (policy 'carry'), else None.
    """
    _check_opt(opt)
    dtype = _compute_dtype(theta)
    eps = np.asarray(eps, dtype=np.float64)
    if eps.ndim != 1 or eps.shape[0] < 1:
        raise ValueError(f"eps: expected shape (iters,) with iters >= 1, got {eps.shape}")
    iters = eps.shape[0]
    n_tasks = np.shape(X)[1] if np.ndim(X) == 4 else -1
    X, Y, plans = _check_task_arrays(spec, X, Y, plans, (iters, n_tasks), dtype)
    P = spec.n_params
    theta = np.asarray(theta)
    if theta.shape != (P,):
        raise ValueError(f"theta: expected shape ({P},), got {theta.shape}")
    steps, batch = plans.shape[2], plans.shape[3]
    layout = shared_layout(spec, batch, dtype, shared_limit)
    threads = _check_threads(threads_per_block, layout.threads)
    adam = opt.name == "adam"
    carry = adam and opt.state_policy == "carry"
    kernels = _load()

    # what reptile.train_chunk_generic does: iteration 0 starts from `state`; later ones from the
    # carried state ('carry') or from zeros ('reset')
    first_has_state = adam and state is not None
    t0 = int(state.t) if first_has_state else 0
    t_start = [t0] + [(t0 + j * steps) if carry else 0 for j in range(1, iters)]
    bias = np.stack([_bias_corrections(opt, t, steps, dtype) for t in t_start])  # (iters, steps, 2)

    groups = min(n_tasks, MAX_GROUPS)
    chunk = -(-n_tasks // groups)
    groups = -(-n_tasks // chunk)
    rt = REDUCE_THREADS if threads_per_block is None else threads  # block size of the θ-sized kernels
    p_blocks = -(-P // rt)
    d_theta = cuda.to_device(np.ascontiguousarray(theta, dtype=dtype).reshape(1, P))
    d_X, d_plans, d_eps, d_bias = (cuda.to_device(a) for a in (X, plans, eps.astype(dtype), bias))
    d_Yf, d_Yi = (cuda.to_device(a) for a in _split_targets(spec, Y, dtype, 2))
    d_layers = cuda.to_device(layout.layers)
    d_cfg = [cuda.to_device(_cfg(spec, opt, layout, batch, has)) for has in (first_has_state, carry)]  # j = 0, j > 0
    d_hyper = cuda.to_device(_hyper(spec, opt, batch, dtype))
    d_nf = cuda.to_device(np.array([n_tasks], dtype=dtype))
    d_phi = cuda.device_array((n_tasks, P), dtype)
    d_loss = cuda.device_array((iters, n_tasks), np.float64)
    d_partial = cuda.device_array((groups, P), dtype)
    d_m, d_v, d_m0, d_v0 = _moments(adam, state, n_tasks, P, dtype)
    if carry:  # the carried (mean) moments live here between iterations
        d_mc, d_vc = cuda.device_array((1, P), dtype), cuda.device_array((1, P), dtype)

    with _small_grids_expected():  # launch configurations, made once
        inner = kernels.inner[dtype][n_tasks, threads, 0, layout.nbytes]
        sum_rows = kernels.sum_rows[(p_blocks, groups), rt]
        reptile_update = kernels.reptile_update[p_blocks, rt]
        mean_rows = kernels.mean_rows[p_blocks, rt]
    for j in range(iters):
        cfg = d_cfg[0] if j == 0 else d_cfg[1]
        m0, v0 = (d_m0, d_v0) if j == 0 else ((d_mc, d_vc) if carry else (d_m0, d_v0))
        Yf_j, Yi_j = (d_Yf[j], d_Yi[0]) if spec.loss == "mse" else (d_Yf[0], d_Yi[j])
        inner(d_phi, d_m, d_v, d_loss[j], d_theta, m0, v0, d_X[j], Yf_j, Yi_j, d_plans[j], d_layers, cfg, d_hyper,
              d_bias[j])
        sum_rows(d_partial, d_phi, chunk)
        reptile_update(d_theta[0], d_partial, d_nf, d_eps, j)
        if carry:
            sum_rows(d_partial, d_m, chunk)
            mean_rows(d_mc[0], d_partial, d_nf)
            sum_rows(d_partial, d_v, chunk)
            mean_rows(d_vc[0], d_partial, d_nf)

    theta_out = d_theta.copy_to_host()[0]
    losses = d_loss.copy_to_host().mean(axis=1)
    new_state = None
    if carry:
        new_state = AdamState(d_mc.copy_to_host()[0], d_vc.copy_to_host()[0], t_start[-1] + steps)
    return theta_out, losses, new_state


def check_sizes(spec: MLPSpec, n_tasks: int, n_points: int, steps: int, batch: int, dtype) -> None:
    """Raise ValueError if the inner batch and layer widths do not fit this backend's shared memory."""
    shared_layout(spec, batch, dtype)


def warmup(spec: MLPSpec, dtype, opt: InnerOptimizer) -> float:
    """Compile (or load from numba's cache) every kernel a run with this dtype needs; returns seconds."""
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
    t = time.perf_counter()
    X = np.zeros((1, 1, 1, spec.d_in), dtype)
    Y = np.zeros((1, 1, 1), np.int64) if spec.loss == "ce" else np.zeros((1, 1, 1, spec.d_out), dtype)
    plans = np.zeros((1, 1, 1, 1), np.int64)
    theta = np.zeros(spec.n_params, dtype)
    carry_opt = InnerOptimizer("adam", 1e-3, state_policy="carry")
    train_chunk(spec, theta, X, Y, plans, np.array([0.1]), carry_opt, None)  # every kernel, this dtype
    return time.perf_counter() - t


def device_info() -> dict:
    """The GPU the backend runs on: ``name``, ``compute_capability``, ``simulator`` (for reports)."""
    _load()
    if _simulator_enabled():
        return {"name": "CUDA simulator", "compute_capability": None, "simulator": True}
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    return {"name": name, "compute_capability": list(dev.compute_capability), "simulator": False}


def backend() -> Backend:
    """The ``cuda`` backend; raises BackendUnavailableError (one line) without numba-cuda or a GPU."""
    _load()
    return Backend("cuda", inner_loop, train_chunk, warmup)
