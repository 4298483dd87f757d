"""The CUDA backend: a meta-batch's whole inner loop in one numba.cuda kernel launch.

Contract
--------
Computes exactly what :func:`minireptile.reference.inner_loop` computes (and, for a chunk of
outer iterations, what :func:`minireptile.reptile.train_chunk_generic` computes), on an NVIDIA
GPU, and is tested against them. It is the ONLY module of minireptile that imports numba.cuda,
and it does so on first use (:func:`backend`), never at import time, so a later switch of CUDA
compiler (numba-cuda is in maintenance mode) touches this one file. The per-element math
(activation, its derivative, the Adam update) is the plain functions of
:mod:`minireptile.backends.kernel_math`, compiled here with ``cuda.jit(device=True)``.

Thread/block layout
-------------------
One thread block per task (grid = n_tasks blocks), ``T`` threads per block (default: the
largest per-phase work item count rounded up to a multiple of 32, clamped to [32, 128]). A
block runs every inner step of its task without leaving the kernel: per step it

1. gathers the minibatch inputs ``X[task, plan[task, s, b], :]`` into shared memory,
2. runs the forward pass layer by layer (thread ↔ output element (o, b)),
3. forms dL/dout and the step's loss (thread ↔ batch column b; a fixed-order sum by thread 0),
4. runs the backward pass from the top layer: first the input gradient of layer l
   (thread ↔ (j, b), using the not-yet-updated W_l), then the update of layer l's parameters
   (thread ↔ one weight or bias; it sums its gradient over the batch in a fixed order and
   applies the SGD or Adam update at once, so no gradient vector is ever stored),

with ``cuda.syncthreads()`` between phases; every thread strides over its phase's work items
(``for e in range(tid, n_items, T)``), so any ``T`` >= 1 is correct. Nothing depends on the
warp size and no atomics are used: results are deterministic.

Shared memory (one dynamic array of the data's dtype, sizes in elements; B = inner batch,
sizes = (d_in, h_1, ..., d_out), L = number of layers)::

    phi   Σ_l fan_out_l·(stride_l + 1)   the task's parameters, W rows padded to an odd stride
                                          (fan_in | 1) against bank conflicts   [if it fits]
    a_l   sizes[l] × B, l = 0 … L-1        each layer's input, feature-major (column b = example)
    dz    2 × max(sizes[1:]) × B           dL/dz of the current layer and the one below (ping-pong)
    loss  B                                per-example loss terms

Activations are stored, pre-activations are not: the derivative is taken from the activation
alone, ``activate_grad(a, a, act)``, which equals ``activate_grad(z, a, act)`` for both
activations (tanh' = 1 − a², and relu's a > 0 exactly when z > 0).

Supported sizes: ``B·(Σ sizes[:-1] + 2·max(sizes[1:]) + 1)·itemsize`` must fit in 48 KiB (the
portable per-block limit), else :class:`ValueError` names the sizes. φ lives in shared memory
when it fits beside them (the gist's 1-64-64-1 net in float32: 28 KiB); otherwise (float64
gist, wider nets) φ is updated in place in its row of the global output array and only the
activations use shared memory. Adam's m and v always live in global memory (one read and one
write per parameter per step, coalesced).

Registers (ptxas 13.5, sm_90, no spills): 128 per thread in float32, 154 in float64, so an SM
holds 4 (float32) or 3 (float64) blocks of 128 threads; 256-thread blocks would halve the blocks
per SM at the same thread count, and a block waits at every ``syncthreads``, so more, smaller
blocks hide those waits better. Unmeasured: no GPU was available when this was written.

Outer loop on the device (:func:`train_chunk`): θ, the chunk's data, plans and ε go to the
device once per chunk; per outer iteration one inner-loop launch writes φ (n_tasks, P) on the
device, a fixed-order two-level column sum (``_sum_rows``: G ≤ 32 contiguous groups of tasks,
then the groups in order) forms mean_i φ_i, and ``_outer_update`` applies
θ ← θ + ε·(mean_i φ_i − θ) in place. Carried Adam moments (policy 'carry') are averaged over
the tasks the same way. Only θ, the per-task losses and the carried state come back.

float32 and float64 (θ's dtype is the computation's); tanh and relu; mse and ce; SGD and Adam
(state policies 'reset' and 'carry'). Under ``NUMBA_ENABLE_CUDASIM=1`` (set before numba.cuda is
first imported) the same code runs in numba's CUDA simulator, which is how the tests run without
a GPU. :func:`check_sizes` is the hook :func:`minireptile.backends.get_backend` calls to reject
sizes beyond the shared-memory limit before a launch.

Without numba-cuda, without a GPU and driver, or without libNVVM, :func:`backend` raises
:class:`~minireptile.errors.BackendUnavailableError` with one line (what is missing, what to
install, which backend to use instead). Kernels are compiled once per dtype at the first launch
(:func:`warmup`) and cached by numba (``cache=True``); numba keys that cache on this file only, so
after editing kernel_math.py delete ``minireptile/backends/__pycache__/cuda*.nbi/.nbc``.
"""

from __future__ import annotations

import contextlib
import math
import time
import types
import warnings
from dataclasses import dataclass

import numpy as np
from numba import float32, float64

from . import kernel_math as km
from .base import Backend
from ..errors import BackendUnavailableError, missing_extra
from ..mlp import MLPSpec
from ..optim import AdamState, InnerOptimizer, InnerResult

SHARED_MEMORY_BYTES = 48 * 1024  # portable per-block limit (no opt-in attribute needed)
MAX_THREADS = 128                # default block size cap: see 'Registers' in the module docstring
MAX_GROUPS = 32                  # task groups of the two-level sum over the meta-batch
REDUCE_THREADS = 128             # block size of the θ-sized kernels (sum, mean, outer update)

# columns of the per-layer table handed to the kernel (int64, shape (L, 8))
L_W_OFF, L_B_OFF, L_FAN_IN, L_FAN_OUT, L_WS_W, L_WS_B, L_STRIDE, L_ACT = range(8)
# entries of the int64 config vector
C_ACT, C_LOSS, C_OPT, C_HAS_STATE, C_PHI_SHARED, C_BATCH, C_DZ0, C_DZ1, C_SCRATCH = range(9)
N_CFG = 9
# entries of the float hyperparameter vector (data dtype)
H_LR, H_BETA1, H_BETA2, H_EPS, H_MSE_COEF, H_BATCH, H_ZERO, H_ONE = range(8)
N_HYPER = 8

_INSTALL = 'pip install "minireptile[cuda]"'
_INSTEAD = "use the numba backend (CPU, --backend numba) instead"

# ---------------------------------------------------------------------------------------------
# lazily bound CUDA objects: filled by _load() on first use, read by the kernels as globals
# ---------------------------------------------------------------------------------------------
cuda = None            # the numba.cuda module
_activate = None       # device versions of kernel_math
_activate_grad = None
_adam_update = None
_inner_body = None
_kernels = None        # _Kernels, once compiled-on-demand dispatchers exist


@dataclass(frozen=True)
class _Kernels:
    inner: dict          # numpy dtype -> kernel (one per dtype: the dynamic shared array's type)
    sum_rows: object
    mean_rows: object
    outer_update: object
    simulator: bool


def _unavailable(message: str) -> BackendUnavailableError:
    return BackendUnavailableError(message)


def _import_cuda():
    """Import numba.cuda (numba-cuda) or raise BackendUnavailableError with one line."""
    try:
        import numba_cuda  # noqa: F401  (the out-of-tree numba.cuda this backend is tested with)
    except ImportError:
        raise _unavailable(f"{missing_extra('numba-cuda', 'cuda')} (the cuda backend needs it and an NVIDIA GPU); "
                           f"or {_INSTEAD}") from None
    try:
        from numba import cuda as numba_cuda_module
    except Exception as exc:  # broken CUDA Python bindings etc.: report, don't trace back
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _unavailable(f"numba.cuda failed to import ({first}); reinstall with {_INSTALL}, "
                           f"or {_INSTEAD}") from None
    simulator = _simulator_enabled()
    if not simulator:
        if not numba_cuda_module.is_available():
            raise _unavailable(f"no CUDA GPU found: numba.cuda sees no NVIDIA GPU with a working driver; the cuda "
                               f"backend needs one (and {_INSTALL}); {_INSTEAD}")
        try:
            from numba.cuda.cudadrv import nvvm
            nvvm_ok = nvvm.is_available()
        except Exception:  # pragma: no cover - internal API moved: let the compile report it
            nvvm_ok = True
        if not nvvm_ok:
            raise _unavailable('libNVVM (CUDA toolkit) not found: pip install "numba-cuda[cu12]" (or [cu13]) or '
                               f"install the CUDA toolkit; or {_INSTEAD}")
    return numba_cuda_module, simulator


def _simulator_enabled() -> bool:
    try:
        from numba.cuda.core import config
    except ImportError:  # pragma: no cover - older layouts
        from numba.core import config
    return bool(config.ENABLE_CUDASIM)


def _load() -> _Kernels:
    """Import numba.cuda and wrap the kernels (compilation happens at the first launch per dtype)."""
    global cuda, _activate, _activate_grad, _adam_update, _inner_body, _kernels
    if _kernels is not None:
        return _kernels
    module, simulator = _import_cuda()
    cuda = module
    device = device_functions(cuda)
    _activate, _activate_grad, _adam_update = device["activate"], device["activate_grad"], device["adam_update"]
    _inner_body = cuda.jit(device=True)(_inner_body_py)
    _kernels = _Kernels(
        inner={np.dtype(np.float32): cuda.jit(cache=True)(_inner_kernel_f32),
               np.dtype(np.float64): cuda.jit(cache=True)(_inner_kernel_f64)},
        sum_rows=cuda.jit(cache=True)(_sum_rows),
        mean_rows=cuda.jit(cache=True)(_mean_rows),
        outer_update=cuda.jit(cache=True)(_outer_update),
        simulator=simulator,
    )
    return _kernels


def device_functions(cuda_module) -> dict:
    """CUDA device versions of every plain function in :mod:`minireptile.backends.kernel_math`.

    Each is compiled from the same source with ``cuda.jit(device=True)``; their globals are a copy
    of kernel_math's namespace in which the other kernel_math functions are replaced by their
    device versions, so kernel_math functions may call each other (``activate`` → ``relu``)
    on both targets without being decorated.
    """
    namespace = dict(vars(km))
    for name, fn in vars(km).items():
        if isinstance(fn, types.FunctionType) and fn.__module__ == km.__name__:
            clone = types.FunctionType(fn.__code__, namespace, name, fn.__defaults__, fn.__closure__)
            clone.__module__, clone.__qualname__, clone.__doc__ = fn.__module__, fn.__qualname__, fn.__doc__
            namespace[name] = cuda_module.jit(device=True)(clone)
    return {name: namespace[name] for name, fn in vars(km).items()
            if isinstance(fn, types.FunctionType) and fn.__module__ == km.__name__}


# ---------------------------------------------------------------------------------------------
# kernels (plain functions here; compiled by _load). Outputs first, then inputs, then sizes.
# ---------------------------------------------------------------------------------------------
def _inner_kernel_f32(phi, m, v, losses, theta0, m0, v0, X, Yf, Yi, plan, layers, cfg, hyper, bias_corr):
    smem = cuda.shared.array(0, float32)
    _inner_body(smem, phi, m, v, losses, theta0, m0, v0, X, Yf, Yi, plan, layers, cfg, hyper, bias_corr)


def _inner_kernel_f64(phi, m, v, losses, theta0, m0, v0, X, Yf, Yi, plan, layers, cfg, hyper, bias_corr):
    smem = cuda.shared.array(0, float64)
    _inner_body(smem, phi, m, v, losses, theta0, m0, v0, X, Yf, Yi, plan, layers, cfg, hyper, bias_corr)


def _inner_body_py(smem,       # (n_shared,) dynamic shared memory, layout in the module docstring
                   phi,        # out (n_tasks, P): adapted parameters
                   m, v,       # out (n_tasks, P): Adam moments (SGD: (1, 1) dummies, untouched)
                   losses,     # out (n_tasks,) float64: mean pre-update minibatch loss over the steps
                   theta0,     # (n0, P), n0 in {1, n_tasks}: start point (shared or per task)
                   m0, v0,     # (nm, P), nm in {1, n_tasks}: Adam start moments (if cfg[C_HAS_STATE])
                   X,          # (n_tasks, n_points, d_in)
                   Yf,         # (n_tasks, n_points, d_out) targets for mse ((1, 1, 1) dummy for ce)
                   Yi,         # (n_tasks, n_points) int64 labels for ce ((1, 1) dummy for mse)
                   plan,       # (n_tasks, steps, B) int64 minibatch indices
                   layers,     # (L, 8) int64 layer table, columns L_*
                   cfg,        # (N_CFG,) int64 codes and shared-memory offsets, entries C_*
                   hyper,      # (N_HYPER,) data dtype: lr, beta1, beta2, eps, 2/(B·d_out), B, 0, 1
                   bias_corr): # (steps, 2) data dtype: 1 − beta1^t, 1 − beta2^t for step t = t0 + s + 1
    task = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    act = cfg[C_ACT]
    loss_kind = cfg[C_LOSS]
    opt = cfg[C_OPT]
    B = cfg[C_BATCH]
    scr = cfg[C_SCRATCH]
    n_layers = layers.shape[0]
    steps = plan.shape[1]
    P = phi.shape[1]
    d_out = layers[n_layers - 1, L_FAN_OUT]
    lr = hyper[H_LR]
    beta1 = hyper[H_BETA1]
    beta2 = hyper[H_BETA2]
    eps = hyper[H_EPS]
    mse_coef = hyper[H_MSE_COEF]
    batch_f = hyper[H_BATCH]
    zero = hyper[H_ZERO]
    one = hyper[H_ONE]
    row = task if theta0.shape[0] > 1 else 0
    mrow = task if m0.shape[0] > 1 else 0
    # the task's working parameters: shared memory, or its row of the output
    if cfg[C_PHI_SHARED] != 0:
        ws = smem
    else:
        ws = phi[task]

    # -- load θ into the workspace and the Adam moments --------------------------------------
    for l in range(n_layers):
        fi = layers[l, L_FAN_IN]
        fo = layers[l, L_FAN_OUT]
        nw = fo * fi
        for e in range(tid, nw + fo, nt):
            if e < nw:
                o = e // fi
                k = layers[l, L_WS_W] + o * layers[l, L_STRIDE] + (e - o * fi)
            else:
                k = layers[l, L_WS_B] + (e - nw)
            ws[k] = theta0[row, layers[l, L_W_OFF] + e]
    if opt == km.OPT_ADAM:
        for p in range(tid, P, nt):
            if cfg[C_HAS_STATE] != 0:
                m[task, p] = m0[mrow, p]
                v[task, p] = v0[mrow, p]
            else:
                m[task, p] = zero
                v[task, p] = zero
    cuda.syncthreads()

    loss_acc = 0.0  # float64, meaningful on thread 0 only
    for s in range(steps):
        # -- gather the minibatch: a_0[j, b] = X[task, plan[task, s, b], j] -------------------
        a0 = layers[0, L_ACT]
        d_in = layers[0, L_FAN_IN]
        for e in range(tid, d_in * B, nt):
            j = e // B
            b = e - j * B
            smem[a0 + e] = X[task, plan[task, s, b], j]
        cuda.syncthreads()

        # -- forward: z[o, b] = Σ_j W[o, j]·a[j, b] + bias[o]; hidden layers store act(z) -------
        for l in range(n_layers):
            fi = layers[l, L_FAN_IN]
            fo = layers[l, L_FAN_OUT]
            sw = layers[l, L_WS_W]
            stride = layers[l, L_STRIDE]
            ain = layers[l, L_ACT]
            last = l == n_layers - 1
            aout = cfg[C_DZ0] if last else layers[l + 1, L_ACT]
            for e in range(tid, fo * B, nt):
                o = e // B
                b = e - o * B
                wrow = sw + o * stride
                z = ws[wrow] * smem[ain + b]
                for j in range(1, fi):
                    z += ws[wrow + j] * smem[ain + j * B + b]
                z += ws[layers[l, L_WS_B] + o]
                if last:
                    smem[aout + e] = z
                else:
                    smem[aout + e] = _activate(z, act)
            cuda.syncthreads()

        # -- loss and dL/dout (in place over the outputs in dz0), per batch column -------------
        dz = cfg[C_DZ0]
        for b in range(tid, B, nt):
            pt = plan[task, s, b]
            if loss_kind == km.LOSS_MSE:
                sq = zero
                for o in range(d_out):
                    diff = smem[dz + o * B + b] - Yf[task, pt, o]
                    sq += diff * diff
                    smem[dz + o * B + b] = mse_coef * diff
                smem[scr + b] = sq
            else:
                y = Yi[task, pt]
                mx = smem[dz + b]
                for o in range(1, d_out):
                    mx = max(mx, smem[dz + o * B + b])
                se = zero
                for o in range(d_out):
                    se += math.exp(smem[dz + o * B + b] - mx)
                lse = math.log(se)
                smem[scr + b] = smem[dz + y * B + b] - mx - lse     # log p(true class)
                for o in range(d_out):
                    prob = math.exp(smem[dz + o * B + b] - mx - lse)
                    if o == y:
                        prob -= one
                    smem[dz + o * B + b] = prob / batch_f
        cuda.syncthreads()
        if tid == 0:  # fixed-order sum of the per-example terms
            total = 0.0
            for b in range(B):
                total += smem[scr + b]
            if loss_kind == km.LOSS_MSE:
                loss_acc += total / (B * d_out) / steps
            else:
                loss_acc += -total / B / steps

        # -- backward from the top layer; update each layer right after its input gradient ----
        cur = cfg[C_DZ0]
        nxt = cfg[C_DZ1]
        for l in range(n_layers - 1, -1, -1):
            fi = layers[l, L_FAN_IN]
            fo = layers[l, L_FAN_OUT]
            sw = layers[l, L_WS_W]
            stride = layers[l, L_STRIDE]
            ain = layers[l, L_ACT]
            if l > 0:  # dz_below[j, b] = (Σ_o W[o, j]·dz[o, b]) · act'(a[j, b]), with the old W
                for e in range(tid, fi * B, nt):
                    j = e // B
                    b = e - j * B
                    da = ws[sw + j] * smem[cur + b]
                    for o in range(1, fo):
                        da += ws[sw + o * stride + j] * smem[cur + o * B + b]
                    a = smem[ain + e]
                    smem[nxt + e] = da * _activate_grad(a, a, act)
                cuda.syncthreads()
            nw = fo * fi
            for e in range(tid, nw + fo, nt):  # one parameter per item: gradient, then update
                if e < nw:
                    o = e // fi
                    j = e - o * fi
                    g = smem[cur + o * B] * smem[ain + j * B]
                    for b in range(1, B):
                        g += smem[cur + o * B + b] * smem[ain + j * B + b]
                    k = sw + o * stride + j
                else:
                    o = e - nw
                    g = smem[cur + o * B]
                    for b in range(1, B):
                        g += smem[cur + o * B + b]
                    k = layers[l, L_WS_B] + o
                if opt == km.OPT_ADAM:
                    p = layers[l, L_W_OFF] + e
                    pn, mn, vn = _adam_update(ws[k], g, m[task, p], v[task, p], lr, beta1, beta2, eps,
                                              bias_corr[s, 0], bias_corr[s, 1])
                    ws[k] = pn
                    m[task, p] = mn
                    v[task, p] = vn
                else:
                    ws[k] = ws[k] - lr * g
            cuda.syncthreads()
            cur, nxt = nxt, cur

    # -- write φ back (when it lived in shared memory) and the loss ----------------------------
    if cfg[C_PHI_SHARED] != 0:
        for l in range(n_layers):
            fi = layers[l, L_FAN_IN]
            fo = layers[l, L_FAN_OUT]
            nw = fo * fi
            for e in range(tid, nw + fo, nt):
                if e < nw:
                    o = e // fi
                    k = layers[l, L_WS_W] + o * layers[l, L_STRIDE] + (e - o * fi)
                else:
                    k = layers[l, L_WS_B] + (e - nw)
                phi[task, layers[l, L_W_OFF] + e] = ws[k]
    if tid == 0:
        losses[task] = loss_acc


def _sum_rows(partial,   # out (G, P): partial[g] = Σ rows[g·chunk : (g+1)·chunk], in row order
              rows,      # (n, P)
              chunk):    # rows per group; grid (ceil(P / T), G)
    p = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    g = cuda.blockIdx.y
    n = rows.shape[0]
    if p < rows.shape[1]:
        start = g * chunk
        stop = min(n, start + chunk)
        acc = rows[start, p]
        for i in range(start + 1, stop):
            acc += rows[i, p]
        partial[g, p] = acc


def _mean_rows(out,       # out (P,): (Σ_g partial[g]) / n
               partial,   # (G, P)
               n_f):      # (1,) data dtype: n
    p = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if p < out.shape[0]:
        acc = partial[0, p]
        for g in range(1, partial.shape[0]):
            acc += partial[g, p]
        out[p] = acc / n_f[0]


def _outer_update(theta,    # in/out (P,): θ ← θ + ε·(mean_i φ_i − θ)
                  partial,  # (G, P) group sums of φ
                  n_f,      # (1,) data dtype: n_tasks
                  eps,      # (iters,) data dtype: ε per outer iteration
                  j):       # outer iteration within the chunk
    p = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if p < theta.shape[0]:
        acc = partial[0, p]
        for g in range(1, partial.shape[0]):
            acc += partial[g, p]
        mean = acc / n_f[0]
        theta[p] = theta[p] + eps[j] * (mean - theta[p])


# ---------------------------------------------------------------------------------------------
# host side: shared-memory layout, argument checks, launches
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SharedLayout:
    """Where everything lives for one (spec, batch, dtype).

    Attributes
    ----------
    layers : ndarray of int64, shape (L, 8)
        w_off, b_off, fan_in, fan_out (θ layout), ws_w_off, ws_b_off, stride (workspace layout),
        act_off (shared offset of the layer's input a_l, (fan_in, B)).
    dz0, dz1, scratch : int
        Shared offsets of the two gradient buffers and the loss terms.
    n_shared : int
        Shared-memory elements per block; ``nbytes = n_shared * itemsize``.
    phi_in_shared : bool
    threads : int
        Default threads per block.
    """

    layers: np.ndarray
    dz0: int
    dz1: int
    scratch: int
    n_shared: int
    nbytes: int
    phi_in_shared: bool
    threads: int


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
        table[l, L_W_OFF:L_FAN_OUT + 1] = (w_off, b_off, fi, fo)
        if phi_in_shared:
            table[l, L_WS_W], table[l, L_WS_B], table[l, L_STRIDE] = off, off + fo * strides[l], strides[l]
            off += fo * (strides[l] + 1)
        else:
            table[l, L_WS_W], table[l, L_WS_B], table[l, L_STRIDE] = w_off, b_off, fi
    for l in range(L):
        table[l, L_ACT] = off
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
    h = np.zeros(N_HYPER, dtype=np.float64)
    h[[H_LR, H_BETA1, H_BETA2, H_EPS]] = opt.lr, opt.beta1, opt.beta2, opt.eps
    h[H_MSE_COEF] = 2.0 / (batch * spec.d_out)
    h[H_BATCH], h[H_ZERO], h[H_ONE] = batch, 0.0, 1.0
    return h.astype(dtype)


def _bias_corrections(opt: InnerOptimizer, t0: int, steps: int, dtype) -> np.ndarray:
    """(steps, 2): 1 − β1^t, 1 − β2^t for t = t0+1 … t0+steps (Python floats, as the reference)."""
    t = np.arange(t0 + 1, t0 + steps + 1, dtype=np.float64)
    return np.stack([1 - opt.beta1**t, 1 - opt.beta2**t], axis=1).astype(dtype)


def _cfg(spec: MLPSpec, opt: InnerOptimizer, layout: SharedLayout, batch: int, has_state: bool) -> np.ndarray:
    c = np.zeros(N_CFG, dtype=np.int64)
    c[C_ACT] = km.ACT_CODES[spec.activation]
    c[C_LOSS] = km.LOSS_CODES[spec.loss]
    c[C_OPT] = km.OPT_CODES[opt.name]
    c[C_HAS_STATE] = int(has_state)
    c[C_PHI_SHARED] = int(layout.phi_in_shared)
    c[C_BATCH] = batch
    c[C_DZ0], c[C_DZ1], c[C_SCRATCH] = layout.dz0, layout.dz1, layout.scratch
    return c


def inner_loop(spec: MLPSpec, theta, X, Y, plan, opt: InnerOptimizer, state: AdamState | None = None, *,
               threads_per_block: int | None = None, shared_limit: int = SHARED_MEMORY_BYTES) -> InnerResult:
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
    if adam:
        d_m, d_v = cuda.device_array((n_tasks, P), dtype), cuda.device_array((n_tasks, P), dtype)
    else:
        d_m, d_v = cuda.device_array((1, 1), dtype), cuda.device_array((1, 1), dtype)
    if has_state:
        m0, v0 = _rows("state.m", state.m, n_tasks, P, dtype), _rows("state.v", state.v, n_tasks, P, dtype)
    else:
        m0 = v0 = np.zeros((1, 1), dtype)
    Yf, Yi = _split_targets(spec, Y, dtype, 1)
    with _small_grids_expected():
        launch = kernels.inner[dtype][n_tasks, threads, 0, layout.nbytes]
    launch(
        d_phi, d_m, d_v, d_loss, cuda.to_device(theta0), cuda.to_device(m0), cuda.to_device(v0),
        cuda.to_device(X), cuda.to_device(Yf), cuda.to_device(Yi), cuda.to_device(plan),
        cuda.to_device(layout.layers), cuda.to_device(_cfg(spec, opt, layout, batch, has_state)),
        cuda.to_device(_hyper(spec, opt, batch, dtype)), cuda.to_device(_bias_corrections(opt, t0, steps, dtype)))
    phi = d_phi.copy_to_host()
    losses = d_loss.copy_to_host()
    new_state = AdamState(d_m.copy_to_host(), d_v.copy_to_host(), t0 + steps) if adam else None
    return InnerResult(phi, losses, new_state)


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
    cfg_first = _cfg(spec, opt, layout, batch, first_has_state)
    cfg_rest = _cfg(spec, opt, layout, batch, carry)

    groups = min(n_tasks, MAX_GROUPS)
    chunk = -(-n_tasks // groups)
    groups = -(-n_tasks // chunk)
    rt = REDUCE_THREADS if threads_per_block is None else threads  # block size of the θ-sized kernels
    p_blocks = -(-P // rt)
    d_theta = cuda.to_device(np.ascontiguousarray(theta, dtype=dtype).reshape(1, P))
    d_X, d_plans = cuda.to_device(X), cuda.to_device(plans)
    Yf, Yi = _split_targets(spec, Y, dtype, 2)
    d_Yf, d_Yi = cuda.to_device(Yf), cuda.to_device(Yi)
    d_eps = cuda.to_device(eps.astype(dtype))
    d_bias = cuda.to_device(bias)
    d_layers = cuda.to_device(layout.layers)
    d_cfg = [cuda.to_device(cfg_first), cuda.to_device(cfg_rest)]
    d_hyper = cuda.to_device(_hyper(spec, opt, batch, dtype))
    d_nf = cuda.to_device(np.array([n_tasks], dtype=dtype))
    d_phi = cuda.device_array((n_tasks, P), dtype)
    d_loss = cuda.device_array((iters, n_tasks), np.float64)
    d_partial = cuda.device_array((groups, P), dtype)
    if adam:
        d_m, d_v = cuda.device_array((n_tasks, P), dtype), cuda.device_array((n_tasks, P), dtype)
    else:
        d_m, d_v = cuda.device_array((1, 1), dtype), cuda.device_array((1, 1), dtype)
    if adam and state is not None:
        d_m0 = cuda.to_device(_rows("state.m", state.m, n_tasks, P, dtype))
        d_v0 = cuda.to_device(_rows("state.v", state.v, n_tasks, P, dtype))
    else:
        d_m0 = d_v0 = cuda.to_device(np.zeros((1, P), dtype))
    if carry:  # the carried (mean) moments live here between iterations
        d_mc, d_vc = cuda.device_array((1, P), dtype), cuda.device_array((1, P), dtype)

    with _small_grids_expected():  # launch configurations, made once
        inner = kernels.inner[dtype][n_tasks, threads, 0, layout.nbytes]
        sum_rows = kernels.sum_rows[(p_blocks, groups), rt]
        outer_update = kernels.outer_update[p_blocks, rt]
        mean_rows = kernels.mean_rows[p_blocks, rt]
    for j in range(iters):
        cfg = d_cfg[0] if j == 0 else d_cfg[1]
        m0, v0 = (d_m0, d_v0) if j == 0 else ((d_mc, d_vc) if carry else (d_m0, d_v0))
        Yf_j, Yi_j = (d_Yf[j], d_Yi[0]) if spec.loss == "mse" else (d_Yf[0], d_Yi[j])
        inner(d_phi, d_m, d_v, d_loss[j], d_theta, m0, v0, d_X[j], Yf_j, Yi_j, d_plans[j], d_layers, cfg, d_hyper,
              d_bias[j])
        sum_rows(d_partial, d_phi, chunk)
        outer_update(d_theta[0], d_partial, d_nf, d_eps, j)
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
    kernels = _load()
    if kernels.simulator:
        return {"name": "CUDA simulator", "compute_capability": None, "simulator": True}
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    return {"name": name, "compute_capability": list(dev.compute_capability), "simulator": False}


def backend() -> Backend:
    """The ``cuda`` backend; raises BackendUnavailableError (one line) without numba-cuda or a GPU."""
    _load()
    return Backend("cuda", inner_loop, train_chunk, warmup)
