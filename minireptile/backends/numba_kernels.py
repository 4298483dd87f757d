"""Compiled kernels of the Numba CPU backend: a whole chunk of Reptile in one call.

Contract
--------
:func:`run_chunk` runs ``iters`` outer iterations; each adapts every task of its meta-batch with
``steps`` optimizer steps (forward, backward, SGD/Adam update, all in compiled code, ``prange``
over tasks) and then, if asked, applies the Reptile update θ ← θ + ε·(mean_i φ_i − θ). With
``iters = 1`` and no update it is the backend's ``inner_loop``. The math is that of
:mod:`minireptile.reference` (the oracle the tests compare against); per-element functions
(activation, its derivative, tanh, the Adam update) come from :mod:`minireptile.backends.kernel_math`.

Layout (B = minibatch, L = layers, P = parameters, A = B·sum(sizes)):

    phi  (n, P)   one row per task, θ's layout (W (out, in) then b, per layer); adapted in place
    wt   (n, P)   per task: W transposed, (in, out), at the same offsets (for layers with tlive)
    act  (n, A)   per task: layer inputs a_l (B, sizes[l]) at aoffs[l]; the output at aoffs[L]
    dlt  (n, A)   per task: dL/dz of each layer's output, same offsets as act
    grad (n, P)   per task: the gradient dθ (Adam: all of it; SGD: the biases, weights are fused)

Everything is allocated by the caller before the step loop; task i reads and writes only row i,
and reductions over tasks run afterwards in task order, so 1 and 2 threads give bitwise equal
results. No random numbers are drawn: minibatches come in as an index plan.

How it is fast (gist net 1-64-64-1, minibatch 10, on a 2-core AVX-512 EPYC; docs/benchmarks.md):

* The products are register-tiled LLVM vector code (:func:`minireptile.backends.numba_simd.gemm`): the
  forward ``z = a·Wᵀ`` reads Wᵀ (in, out), the input gradient ``da = dz·W`` reads W (out, in), so a
  layer that needs both keeps both, and SGD updates both from the same fused-multiply-add chains
  (``W`` and ``Wᵀ`` stay exact transposes); Adam updates W and copies it into Wᵀ. A layer with a
  narrow output (fan_out < 8, the regression head) uses vectorised dot products on W instead.
* tanh is :func:`minireptile.backends.kernel_math.tanh_f32` / ``tanh_f64``, which vectorise (no SVML here:
  ``math.tanh`` is a scalar libm call). ``error_model="numpy"`` drops the zero-division checks.
* Elementwise loops index 2-D views (``view2d``) or 1-D slices, never ``array[offset + i]``: a
  signed offset keeps Numba's negative-index wraparound in the loop and LLVM from vectorising it.
* No ``fastmath``: sums are never reassociated, so results are fixed by the source.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from . import kernel_math as km
from .numba_simd import MODE_ACCUMULATE, MODE_SGD, MODE_STORE, dot, gemm, view2d

_JIT = dict(cache=True, error_model="numpy", nogil=True)

_tanh_f32 = njit(**_JIT)(km.tanh_f32)
_tanh_f64 = njit(**_JIT)(km.tanh_f64)
_relu = njit(**_JIT)(km.relu)
_activate_grad = njit(**_JIT)(km.activate_grad)
_adam_update = njit(**_JIT)(km.adam_update)

FWD_DOT_MAX_FANOUT = 8  # layers with fewer outputs use the dot-product forward on W


def fast_tanh(x):
    """tanh with the vectorisable approximation of x's precision (plain-Python fallback)."""
    return np.tanh(x)


@overload(fast_tanh, jit_options=_JIT)
def _fast_tanh_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: _tanh_f32(x)
    return lambda x: _tanh_f64(x)


@njit(**_JIT)
def tanh_array(out, x):
    """out[i] = fast_tanh(x[i]) for 1-D arrays (used by the tests)."""
    for i in range(x.shape[0]):
        out[i] = fast_tanh(x[i])


# ---------------------------------------------------------------------------------------------
# layers on flat per-task rows: outputs first, then inputs, then sizes; shapes in comments
# ---------------------------------------------------------------------------------------------
@njit(**_JIT)
def _forward_dot(z, act, ao, phi, w_off, b_off, B, fi, fo):
    """z = a·Wᵀ + bias with one dot product per output, for narrow layers (the regression head).

    z (B, fo); a = act[ao:] (B, fi); W = phi[w_off:] (fo, fi); bias = phi[b_off:] (fo,).
    """
    for b in range(B):
        for j in range(fo):
            z[b, j] = dot(act, ao + b * fi, phi, w_off + j * fi, fi) + phi[b_off + j]


@njit(**_JIT)
def _bias_grad(db, dz):
    """db (fo,) = Σ_b dz (B, fo), rows added in order (as dz.sum(axis=0))."""
    B, fo = dz.shape
    for j in range(fo):
        db[j] = dz[0, j] if B > 0 else 0
    for b in range(1, B):
        for j in range(fo):
            db[j] += dz[b, j]


@njit(**_JIT)
def _transpose(dst, src):
    """dst (n, m) = srcᵀ for src (m, n)."""
    m, n = src.shape
    for i in range(m):
        for j in range(n):
            dst[j, i] = src[i, j]


@njit(**_JIT)
def _activate(z, act):
    """z = act(z) in place, z (count,). Views keep indices provably >= 0, so this vectorises."""
    if act == km.ACT_TANH:
        for i in range(z.shape[0]):
            z[i] = fast_tanh(z[i])
    else:
        for i in range(z.shape[0]):
            z[i] = _relu(z[i])


@njit(**_JIT)
def _times_activate_grad(d, a, act):
    """d *= act'(z) where a = act(z) (for relu, z > 0 iff a > 0).  d, a (count,)."""
    if act == km.ACT_TANH:
        for i in range(d.shape[0]):
            d[i] *= _activate_grad(a[i], a[i], km.ACT_TANH)
    else:
        for i in range(d.shape[0]):
            d[i] *= _activate_grad(a[i], a[i], km.ACT_RELU)


@njit(**_JIT)
def _loss_and_dout(dout, out, Yf, Yi, idx, loss_code):
    """Mean minibatch loss (float64) and dL/d(out), as reference._loss_and_dout.

    dout, out (B, d_out); Yf (n_points, d_out) float targets (mse); Yi (n_points,) labels (ce);
    idx (B,) the minibatch's point indices.
    """
    B, d_out = out.shape
    total = 0.0
    if loss_code == km.LOSS_MSE:
        scale = out.dtype.type(2.0 / (B * d_out))
        for b in range(B):
            p = idx[b]
            for d in range(d_out):
                diff = out[b, d] - Yf[p, d]
                total += diff * diff
                dout[b, d] = scale * diff
        return total / (B * d_out)
    one = out.dtype.type(1)
    nb = out.dtype.type(B)
    for b in range(B):
        mx = out[b, 0]
        for c in range(1, d_out):
            if out[b, c] > mx:
                mx = out[b, c]
        se = out.dtype.type(0)
        for c in range(d_out):
            se += np.exp(out[b, c] - mx)
        lse = np.log(se)
        y = Yi[idx[b]]
        total -= (out[b, y] - mx) - lse
        for c in range(d_out):
            dout[b, c] = np.exp((out[b, c] - mx) - lse)
        dout[b, y] -= one
        for c in range(d_out):
            dout[b, c] /= nb
    return total / B


# ---------------------------------------------------------------------------------------------
# one task: all its inner steps
# ---------------------------------------------------------------------------------------------
@njit(**_JIT)
def _adapt_task(phi, m, v, wt, act, dlt, grad,
                X, Yf, Yi, plan,
                offs, aoffs, wlive, tlive, act_code, loss_code, opt_code, hyper, t0, wt_ready):
    """Run one task's inner loop in place on its rows; return its mean pre-update loss (float64).

    phi, m, v (P,) start values in, adapted values out (m, v unused for SGD); wt, grad (P,),
    act, dlt (A,) scratch. X (n_points, d_in), Yf (n_points, d_out) or dummy, Yi (n_points,) or
    dummy, plan (steps, B). offs (L, 4) = w_off, b_off, fan_in, fan_out; aoffs (L + 1,);
    wlive, tlive (L,) whether a layer keeps W / Wᵀ current during the loop;
    hyper (4,) float64 = (lr, beta1, beta2, eps); t0 Adam steps taken before; wt_ready: wt already
    holds Wᵀ of phi's start values (else it is transposed here).
    """
    dt = phi.dtype.type
    lr, beta1, beta2, adam_eps = dt(hyper[0]), dt(hyper[1]), dt(hyper[2]), dt(hyper[3])
    zero = dt(0)
    steps, B = plan.shape
    L = offs.shape[0]
    d_in = offs[0, 2]
    d_out = offs[L - 1, 3]
    adam = opt_code == km.OPT_ADAM
    if not wt_ready:
        _transpose_layers(wt, phi, offs, tlive)
    total = 0.0
    for s in range(steps):
        idx = plan[s]
        a0 = view2d(act, 0, B, d_in)
        for b in range(B):
            for k in range(d_in):
                a0[b, k] = X[idx[b], k]
        # forward: z_l = a_l·W_lᵀ + b_l, a_{l+1} = act(z_l) (the output layer stays linear)
        for l in range(L):
            w_off, b_off, fi, fo = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
            ao, zo = aoffs[l], aoffs[l + 1]
            z = act[zo:zo + B * fo]
            if tlive[l]:
                z2 = view2d(act, zo, B, fo)
                bias = phi[b_off:b_off + fo]
                for b in range(B):
                    for j in range(fo):
                        z2[b, j] = bias[j]
                gemm(act, zo, fo, B, fo, act, ao, fi, 1, wt, w_off, fo, fi, zero, MODE_ACCUMULATE)
            else:
                _forward_dot(view2d(act, zo, B, fo), act, ao, phi, w_off, b_off, B, fi, fo)
            if l < L - 1:
                _activate(z, act_code)
        zo = aoffs[L]
        total += _loss_and_dout(view2d(dlt, zo, B, d_out), view2d(act, zo, B, d_out),
                                Yf, Yi, idx, loss_code) / steps
        # backward, top layer first; dz of layer l lives at aoffs[l + 1] in dlt
        for l in range(L - 1, -1, -1):
            w_off, b_off, fi, fo = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
            ao, zo = aoffs[l], aoffs[l + 1]
            if l > 0:  # da = dz·W with W before this step's update, then da ⊙ act'(z)
                gemm(dlt, ao, fi, B, fi, dlt, zo, fo, 1, phi, w_off, fi, fo, zero, MODE_STORE)
                _times_activate_grad(dlt[ao:zo], act[ao:zo], act_code)
            _bias_grad(grad[b_off:b_off + fo], view2d(dlt, zo, B, fo))
            if adam:  # dW = dzᵀ·a into grad; Adam applies all of grad below
                gemm(grad, w_off, fi, fo, fi, dlt, zo, 1, fo, act, ao, fi, B, zero, MODE_STORE)
                continue
            # SGD: θ ← θ − lr·g, on W (out, in) and on Wᵀ (in, out) with the same sums
            if wlive[l]:
                gemm(phi, w_off, fi, fo, fi, dlt, zo, 1, fo, act, ao, fi, B, lr, MODE_SGD)
            if tlive[l]:
                gemm(wt, w_off, fo, fi, fo, act, ao, 1, fi, dlt, zo, fo, B, lr, MODE_SGD)
            bias = phi[b_off:b_off + fo]
            db = grad[b_off:b_off + fo]
            for j in range(fo):
                bias[j] -= lr * db[j]
        if adam:
            t = t0 + s + 1
            bc1 = dt(1.0 - hyper[1] ** t)  # 1 - β1^t in float64, then rounded, as the reference
            bc2 = dt(1.0 - hyper[2] ** t)
            for p in range(phi.shape[0]):
                phi[p], m[p], v[p] = _adam_update(phi[p], grad[p], m[p], v[p], lr, beta1, beta2, adam_eps, bc1, bc2)
            _transpose_layers(wt, phi, offs, tlive)
    if not adam:
        for l in range(L):
            if tlive[l] and not wlive[l]:
                w_off, b_off, fi, fo = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
                _transpose(view2d(phi, w_off, fo, fi), view2d(wt, w_off, fi, fo))
    return total


@njit(**_JIT)
def _run_task(i, it, theta, tht, m0, v0, has_state, phi, m, v, task_loss, wt, act, dlt, grad,
              X, Yf, Yi, plans, offs, aoffs, wlive, tlive, act_code, loss_code, opt_code, hyper, t0):
    """Task i of iteration it: start rows from θ (and θᵀ, the carried Adam state), adapt, store loss."""
    i = np.int64(i)  # a prange index may come in unsigned
    P = phi.shape[1]
    shared = theta.shape[0] == 1
    r = 0 if shared else i
    for p in range(P):
        phi[i, p] = theta[r, p]
    if shared:
        for p in range(P):
            wt[i, p] = tht[p]
    if opt_code == km.OPT_ADAM:
        if has_state:
            rs = 0 if m0.shape[0] == 1 else i
            for p in range(P):
                m[i, p] = m0[rs, p]
                v[i, p] = v0[rs, p]
        else:
            for p in range(P):
                m[i, p] = 0
                v[i, p] = 0
    task_loss[i] = _adapt_task(phi[i], m[i], v[i], wt[i], act[i], dlt[i], grad[i],
                               X[it, i], Yf[it, i], Yi[it, i], plans[it, i], offs, aoffs, wlive, tlive,
                               act_code, loss_code, opt_code, hyper, t0, shared)


@njit(**_JIT)
def _transpose_layers(wt, w, offs, tlive):
    """wt = W transposed, layer by layer, for the layers that keep Wᵀ.  wt, w (P,)."""
    for l in range(offs.shape[0]):
        if tlive[l]:
            w_off, b_off, fi, fo = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
            _transpose(view2d(wt, w_off, fi, fo), view2d(w, w_off, fo, fi))


@njit(parallel=True, **_JIT)
def run_chunk(theta, m0, v0, phi, m, v, task_loss, iter_loss, red, tht,
              wt, act, dlt, grad,
              X, Yf, Yi, plans, eps,
              offs, aoffs, wlive, tlive, act_code, loss_code, opt_code, hyper,
              t0, has_state, carry, update):
    """Run ``iters`` outer iterations; return the Adam step count after them.

    In/out: theta (R, P) start point, R = 1 (shared) or n (one per task; only without update),
    θ after the chunk when ``update``; m0, v0 (Rm, P) Adam state to start from when ``has_state``,
    the carried (task-mean) state after the chunk when ``carry``.
    Outputs: phi, m, v (n, P) adapted parameters and moments of the last iteration; task_loss (n,)
    their mean pre-update losses; iter_loss (iters,) mean over tasks per iteration.
    Scratch: red, tht (P,); wt, grad (n, P); act, dlt (n, A). With a shared θ (R = 1), tht carries
    θ with each kept Wᵀ in place of W, updated by the same arithmetic as θ (the tasks' wt rows are
    exact transposes of their φ rows), so no task transposes its weights at its start.
    Inputs: X (iters, n, n_points, d_in); Yf (iters, n, n_points, d_out) for mse else a dummy
    (iters, n, 1, 1); Yi (iters, n, n_points) for ce else a dummy (iters, n, 1); plans
    (iters, n, steps, B); eps (iters,) float64.
    Sizes and switches: offs, aoffs, wlive, tlive (see _adapt_task); integer codes from
    kernel_math; hyper (4,) float64 = (lr, beta1, beta2, eps); t0 Adam steps taken before.
    """
    iters, n, steps = plans.shape[0], plans.shape[1], plans.shape[2]
    P = phi.shape[1]
    dt = phi.dtype.type
    t = t0
    if theta.shape[0] == 1:  # (plain loops: an array expression here would be a parallel region)
        for p in range(P):
            tht[p] = theta[0, p]
        _transpose_layers(tht, theta[0], offs, tlive)
    for it in range(iters):
        if n == 1:
            _run_task(0, it, theta, tht, m0, v0, has_state, phi, m, v, task_loss, wt, act, dlt, grad,
                      X, Yf, Yi, plans, offs, aoffs, wlive, tlive, act_code, loss_code, opt_code, hyper, t)
        else:  # the caller sets numba's chunk size to 1 task (see numba_cpu._call)
            for i in prange(n):
                _run_task(i, it, theta, tht, m0, v0, has_state, phi, m, v, task_loss, wt, act, dlt, grad,
                          X, Yf, Yi, plans, offs, aoffs, wlive, tlive, act_code, loss_code, opt_code, hyper, t)
        # reductions over tasks, serial and in task order
        total = 0.0
        for i in range(n):
            total += task_loss[i]
        iter_loss[it] = total / n
        if update:  # θ ← θ + ε·(mean_i φ_i − θ), as reptile.reptile_update
            e = dt(eps[it])
            _reptile_update(theta[0], phi, e, red)
            _reptile_update(tht, wt, e, red)  # θᵀ alike (junk outside the kept Wᵀ is never read)
        if opt_code == km.OPT_ADAM:
            if carry:  # as reptile.carry_state: the task-mean moments, t advanced by the steps
                _mean_rows(m0[0], m)
                _mean_rows(v0[0], v)
                t += steps
                has_state = True
            else:
                has_state = False
                t = 0
    return t


@njit(**_JIT)
def _reptile_update(theta, rows, e, red):
    """theta ← theta + e·(mean_i rows[i] − theta), the mean as NumPy's: rows summed in order, / n.

    theta (P,), rows (n, P), e in theta's dtype, red (P,) scratch (unused for n = 1).
    """
    n, P = rows.shape
    nf = rows.dtype.type(n)
    if n == 1:
        for p in range(P):
            theta[p] = theta[p] + e * (rows[0, p] / nf - theta[p])
        return
    for p in range(P):
        red[p] = rows[0, p]
    for i in range(1, n):
        for p in range(P):
            red[p] += rows[i, p]
    for p in range(P):
        theta[p] = theta[p] + e * (red[p] / nf - theta[p])


@njit(**_JIT)
def _mean_rows(out, rows):
    """out = rows.mean(axis=0) as NumPy computes it: rows added in order, then divided by n."""
    n, P = rows.shape
    for p in range(P):
        out[p] = rows[0, p]
    for i in range(1, n):
        for p in range(P):
            out[p] += rows[i, p]
    nf = rows.dtype.type(n)
    for p in range(P):
        out[p] /= nf
