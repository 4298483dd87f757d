"""Device code of the CUDA backend: the numba.cuda twin of :mod:`minireptile.backends.numba_kernels`.

Contract
--------
One launch of the ``_run_tasks`` kernel runs a meta-batch's whole inner loop (one thread block per
task, every step without leaving the kernel); ``_sum_rows``, ``_reptile_update`` and ``_mean_rows``
form the Reptile update θ ← θ + ε·(mean_i φ_i − θ) and the carried Adam moments on the device.
The math is that of :mod:`minireptile.reference` (the oracle the tests compare against); the
per-element functions (activation, its derivative, the Adam update) are the plain functions of
:mod:`minireptile.backends.kernel_math`, compiled here with ``cuda.jit(device=True)``. The host side
(argument checks, the shared-memory layout, launches) is :mod:`minireptile.backends.cuda`.

This module does not import numba.cuda: its functions are plain Python until
:func:`compile_kernels` compiles them with the ``cuda`` module it is handed, so importing it costs
nothing and the CUDA simulator runs the same source.

Read it beside numba_kernels.py: the phases have the CPU kernel's names and order.

    numba_kernels (CPU, one task per prange item)     cuda_kernels (one task per thread block)
    _adapt_task: gather a_0 = X[plan[s]]              _gather
                 forward (gemm/_forward_dot)          _forward
    _loss_and_dout                                    _loss_and_dout
    _adapt_task: backward, SGD or Adam update         _backward_update
    _adapt_task (all steps of one task)               _adapt_task
    _run_task (start rows from θ, Adam state)         _run_task (+ _copy_params, in and out)
    run_chunk (prange over tasks)                     _run_tasks_f32 / _run_tasks_f64 (grid = tasks)
    _reptile_update, _mean_rows                       _sum_rows, then _reptile_update / _mean_rows

Thread/block layout
-------------------
One thread block per task (grid = n_tasks blocks), ``T`` threads per block. Per step a block

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
sizes = (d_in, h_1, ..., d_out), L = number of layers; offsets in the layer table and cfg)::

    phi   Σ_l fan_out_l·(stride_l + 1)   the task's parameters, W rows padded to an odd stride
                                          (fan_in | 1) against bank conflicts   [if it fits]
    a_l   sizes[l] × B, l = 0 … L-1        each layer's input, feature-major (column b = example)
    dz    2 × max(sizes[1:]) × B           dL/dz of the current layer and the one below (ping-pong)
    loss  B                                per-example loss terms

The workspace ``ws`` is that shared φ, or (when φ does not fit) the task's row of the output φ,
updated in place; :func:`_copy_params` is the one place that maps θ's flat layout onto it.
Activations are stored, pre-activations are not: the derivative is taken from the activation
alone, ``activate_grad(a, a, act)``, which equals ``activate_grad(z, a, act)`` for both
activations (tanh' = 1 − a², and relu's a > 0 exactly when z > 0). Adam's m and v always live in
global memory (one read and one write per parameter per step, coalesced).

Registers (ptxas 13.5, sm_90, no spills): 128 per thread in float32, 154 in float64, so an SM
holds 4 (float32) or 3 (float64) blocks of 128 threads; 256-thread blocks would halve the blocks
per SM at the same thread count, and a block waits at every ``syncthreads``, so more, smaller
blocks hide those waits better. Unmeasured: no GPU was available when this was written.

Simulator note: two ``cuda.shared.array`` calls on one source line alias in numba's CUDA
simulator; each kernel here makes exactly one.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass

import numpy as np
from numba import float32, float64

from . import kernel_math as km

# columns of the per-layer table handed to the kernel (int64, shape (L, 8))
L_W_OFF, L_B_OFF, L_FAN_IN, L_FAN_OUT, L_WS_W, L_WS_B, L_STRIDE, L_ACT = range(8)
# entries of the int64 config vector
C_ACT, C_LOSS, C_OPT, C_HAS_STATE, C_PHI_SHARED, C_BATCH, C_DZ0, C_DZ1, C_SCRATCH = range(9)
N_CFG = 9
# entries of the float hyperparameter vector (data dtype)
H_LR, H_BETA1, H_BETA2, H_EPS, H_MSE_COEF, H_BATCH, H_ZERO, H_ONE = range(8)
N_HYPER = 8

# Names the device code below calls. They are bound by compile_kernels, in a copy of this module's
# namespace, to the compiled versions; in this module itself they stay None.
cuda = None            # the numba.cuda module
_activate = None       # kernel_math.activate, activate_grad, adam_update as device functions
_activate_grad = None
_adam_update = None


# ---------------------------------------------------------------------------------------------
# the phases of one inner step: outputs first, then inputs, then sizes; shapes in comments
# ---------------------------------------------------------------------------------------------
def _gather(smem,     # out (n_shared,): a_0 (d_in, B) at layers[0, L_ACT]
            X,        # (n_tasks, n_points, d_in)
            plan,     # (n_tasks, steps, B) int64
            task, s,  # block's task, inner step
            layers,   # (L, 8) int64 layer table
            B):
    """a_0[j, b] = X[task, plan[task, s, b], j]."""
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    a0 = layers[0, L_ACT]
    d_in = layers[0, L_FAN_IN]
    for e in range(tid, d_in * B, nt):
        j = e // B
        b = e - j * B
        smem[a0 + e] = X[task, plan[task, s, b], j]
    cuda.syncthreads()


def _forward(smem,    # in/out (n_shared,): reads a_l, writes a_{l+1} (the output z_L at cfg[C_DZ0])
             ws,      # (n_ws,) the workspace φ (W rows at L_WS_W with L_STRIDE, biases at L_WS_B)
             layers,  # (L, 8) int64 layer table
             cfg):    # (N_CFG,) int64
    """z[o, b] = Σ_j W[o, j]·a[j, b] + bias[o]; hidden layers store act(z), the output layer z."""
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    act = cfg[C_ACT]
    B = cfg[C_BATCH]
    n_layers = layers.shape[0]
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


def _loss_and_dout(smem,     # in/out (n_shared,): outputs (d_out, B) at cfg[C_DZ0] become dL/dout
                   Yf,       # (n_tasks, n_points, d_out) targets for mse ((1, 1, 1) dummy for ce)
                   Yi,       # (n_tasks, n_points) int64 labels for ce ((1, 1) dummy for mse)
                   plan,     # (n_tasks, steps, B) int64
                   task, s,  # block's task, inner step
                   layers,   # (L, 8) int64 layer table
                   cfg,      # (N_CFG,) int64
                   hyper):   # (N_HYPER,) data dtype
    """Mean minibatch loss (float64, on thread 0; 0.0 on the others) and dL/d(out) in place.

    As numba_kernels._loss_and_dout, one batch column per thread; the per-example terms go to the
    loss scratch and thread 0 sums them in a fixed order.
    """
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    B = cfg[C_BATCH]
    dz = cfg[C_DZ0]
    scr = cfg[C_SCRATCH]
    d_out = layers[layers.shape[0] - 1, L_FAN_OUT]
    mse = cfg[C_LOSS] == km.LOSS_MSE
    mse_coef = hyper[H_MSE_COEF]
    batch_f = hyper[H_BATCH]
    zero = hyper[H_ZERO]
    one = hyper[H_ONE]
    for b in range(tid, B, nt):
        pt = plan[task, s, b]
        if mse:
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
    total = 0.0
    if tid == 0:  # fixed-order sum of the per-example terms
        for b in range(B):
            total += smem[scr + b]
        if mse:
            return total / (B * d_out)
        return -total / B
    return total


def _backward_update(smem,       # in/out (n_shared,): a_l read, dz ping-pong buffers written
                     ws,         # in/out (n_ws,) the workspace φ, updated layer by layer
                     m, v,       # in/out (n_tasks, P): Adam moments (SGD: (1, 1) dummies, untouched)
                     task, s,    # block's task, inner step
                     layers,     # (L, 8) int64 layer table
                     cfg,        # (N_CFG,) int64
                     hyper,      # (N_HYPER,) data dtype
                     bias_corr): # (steps, 2) data dtype: 1 − beta1^t, 1 − beta2^t
    """Backward from the top layer; each layer is updated (SGD or Adam) right after its input gradient.

    dL/dz of the output is at cfg[C_DZ0]; dz_below[j, b] = (Σ_o W[o, j]·dz[o, b])·act'(a[j, b])
    uses W before this step's update; then each parameter's gradient is summed over the batch in
    a fixed order and applied at once.
    """
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    act = cfg[C_ACT]
    adam = cfg[C_OPT] == km.OPT_ADAM
    B = cfg[C_BATCH]
    lr = hyper[H_LR]
    beta1 = hyper[H_BETA1]
    beta2 = hyper[H_BETA2]
    eps = hyper[H_EPS]
    cur = cfg[C_DZ0]
    nxt = cfg[C_DZ1]
    for l in range(layers.shape[0] - 1, -1, -1):
        fi = layers[l, L_FAN_IN]
        fo = layers[l, L_FAN_OUT]
        sw = layers[l, L_WS_W]
        stride = layers[l, L_STRIDE]
        ain = layers[l, L_ACT]
        if l > 0:
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
            if adam:
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


# ---------------------------------------------------------------------------------------------
# one task: all its inner steps (one thread block)
# ---------------------------------------------------------------------------------------------
def _adapt_task(smem, ws, m, v, task, X, Yf, Yi, plan, layers, cfg, hyper, bias_corr):
    """Run the block's task through every inner step in place; return its mean pre-update loss
    (float64, on thread 0). Arguments as in the phases above."""
    steps = plan.shape[1]
    B = cfg[C_BATCH]
    total = 0.0
    for s in range(steps):
        _gather(smem, X, plan, task, s, layers, B)
        _forward(smem, ws, layers, cfg)
        total += _loss_and_dout(smem, Yf, Yi, plan, task, s, layers, cfg, hyper) / steps
        _backward_update(smem, ws, m, v, task, s, layers, cfg, hyper, bias_corr)
    return total


def _copy_params(ws,      # (n_ws,) the workspace φ
                 flat,    # (P,) a row in θ's flat layout (W (out, in) then b, per layer)
                 layers,  # (L, 8) int64 layer table
                 load):   # True: ws ← flat (copy in); False: flat ← ws (copy out)
    """Copy a parameter row into the workspace layout or back: the one place that maps the two."""
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for l in range(layers.shape[0]):
        fi = layers[l, L_FAN_IN]
        nw = layers[l, L_FAN_OUT] * fi
        for e in range(tid, nw + layers[l, L_FAN_OUT], nt):
            if e < nw:
                o = e // fi
                k = layers[l, L_WS_W] + o * layers[l, L_STRIDE] + (e - o * fi)
            else:
                k = layers[l, L_WS_B] + (e - nw)
            p = layers[l, L_W_OFF] + e
            if load:
                ws[k] = flat[p]
            else:
                flat[p] = ws[k]


def _run_task(smem,       # (n_shared,) dynamic shared memory, layout in the module docstring
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
    """Task blockIdx.x: start from θ (and the Adam state), adapt, write φ back and the loss."""
    task = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    P = phi.shape[1]
    row = task if theta0.shape[0] > 1 else 0
    mrow = task if m0.shape[0] > 1 else 0
    phi_shared = cfg[C_PHI_SHARED] != 0
    if phi_shared:  # the task's working parameters: shared memory, or its row of the output
        ws = smem
    else:
        ws = phi[task]
    _copy_params(ws, theta0[row], layers, True)
    if cfg[C_OPT] == km.OPT_ADAM:
        for p in range(tid, P, nt):
            if cfg[C_HAS_STATE] != 0:
                m[task, p] = m0[mrow, p]
                v[task, p] = v0[mrow, p]
            else:
                m[task, p] = hyper[H_ZERO]
                v[task, p] = hyper[H_ZERO]
    cuda.syncthreads()
    loss = _adapt_task(smem, ws, m, v, task, X, Yf, Yi, plan, layers, cfg, hyper, bias_corr)
    if phi_shared:
        _copy_params(ws, phi[task], layers, False)
    if tid == 0:
        losses[task] = loss


def _run_tasks_f32(phi, m, v, losses, theta0, m0, v0, X, Yf, Yi, plan, layers, cfg, hyper, bias_corr):
    """The inner-loop kernel (float32): grid = n_tasks blocks, arguments as :func:`_run_task`."""
    smem = cuda.shared.array(0, float32)
    _run_task(smem, phi, m, v, losses, theta0, m0, v0, X, Yf, Yi, plan, layers, cfg, hyper, bias_corr)


def _run_tasks_f64(phi, m, v, losses, theta0, m0, v0, X, Yf, Yi, plan, layers, cfg, hyper, bias_corr):
    """The inner-loop kernel (float64)."""
    smem = cuda.shared.array(0, float64)
    _run_task(smem, phi, m, v, losses, theta0, m0, v0, X, Yf, Yi, plan, layers, cfg, hyper, bias_corr)


# ---------------------------------------------------------------------------------------------
# the outer update: θ-sized kernels, thread ↔ parameter p, tasks summed in a fixed order
# ---------------------------------------------------------------------------------------------
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


def _reptile_update(theta,    # in/out (P,): θ ← θ + ε·(mean_i φ_i − θ)
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


def _mean_rows(out,       # out (P,): (Σ_g partial[g]) / n
               partial,   # (G, P)
               n_f):      # (1,) data dtype: n
    p = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if p < out.shape[0]:
        acc = partial[0, p]
        for g in range(1, partial.shape[0]):
            acc += partial[g, p]
        out[p] = acc / n_f[0]


# ---------------------------------------------------------------------------------------------
# compilation (on first use, by minireptile.backends.cuda._load)
# ---------------------------------------------------------------------------------------------
_DEVICE = ("_gather", "_forward", "_loss_and_dout", "_backward_update", "_adapt_task", "_copy_params",
           "_run_task")


@dataclass(frozen=True)
class Kernels:
    """The compiled kernels (numba dispatchers; each compiles per signature at its first launch)."""

    inner: dict          # numpy dtype -> _run_tasks kernel (one per dtype: the dynamic shared array's type)
    sum_rows: object
    reptile_update: object
    mean_rows: object
    device: dict         # kernel_math name -> its device function (activate, activate_grad, adam_update, ...)


def _rebind(fn, namespace: dict):
    """A copy of the plain function ``fn`` whose globals are ``namespace``."""
    clone = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    clone.__module__, clone.__qualname__, clone.__doc__ = fn.__module__, fn.__qualname__, fn.__doc__
    return clone


def device_functions(cuda_module) -> dict:
    """CUDA device versions of every plain function in :mod:`minireptile.backends.kernel_math`.

    Each is compiled from the same source with ``cuda.jit(device=True)``; their globals are a copy
    of kernel_math's namespace in which the other kernel_math functions are replaced by their
    device versions, so kernel_math functions may call each other (``activate`` → ``relu``)
    on both targets without being decorated.
    """
    names = [name for name, fn in vars(km).items()
             if isinstance(fn, types.FunctionType) and fn.__module__ == km.__name__]
    namespace = dict(vars(km))
    for name in names:
        namespace[name] = cuda_module.jit(device=True)(_rebind(getattr(km, name), namespace))
    return {name: namespace[name] for name in names}


def compile_kernels(cuda_module) -> Kernels:
    """Wrap this module's device functions and kernels with ``cuda_module`` (numba.cuda).

    Like :func:`device_functions`, everything is compiled from a copy of this module's namespace
    in which ``cuda``, the kernel_math functions and the device functions are the compiled ones,
    so the source above calls them by their plain names and this module is never modified.
    Kernels use numba's cache (``cache=True``), keyed on this file.
    """
    namespace = dict(globals())
    namespace["cuda"] = cuda_module
    device = device_functions(cuda_module)
    namespace["_activate"] = device["activate"]
    namespace["_activate_grad"] = device["activate_grad"]
    namespace["_adam_update"] = device["adam_update"]
    for name in _DEVICE:
        namespace[name] = cuda_module.jit(device=True)(_rebind(globals()[name], namespace))

    def kernel(fn):
        return cuda_module.jit(cache=True)(_rebind(fn, namespace))

    return Kernels(inner={np.dtype(np.float32): kernel(_run_tasks_f32), np.dtype(np.float64): kernel(_run_tasks_f64)},
                   sum_rows=kernel(_sum_rows), reptile_update=kernel(_reptile_update), mean_rows=kernel(_mean_rows),
                   device=device)
