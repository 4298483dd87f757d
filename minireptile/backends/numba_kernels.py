"""Compiled kernels of the Numba CPU backend: a whole chunk of Reptile in one call.

Contract
--------
:func:`chunk_kernel` returns ``run_chunk`` compiled for one activation, loss and optimizer. It
runs outer iterations; each adapts the tasks of its meta-batch with ``steps`` optimizer steps
(forward, backward, SGD/Adam update, all in compiled code) and then, if asked, applies the
Reptile update θ ← θ + ε·(mean_i φ_i − θ). With ``iters = 1`` and no update it is the backend's
``inner_loop``. One call runs a range of tasks on the calling thread with the GIL released; the
backend (:mod:`minireptile.backends.numba_cpu`) runs ranges on several Python threads at once. The math is that of
:mod:`minireptile.reference` (the oracle the tests compare against); per-element functions
(activation, its derivative, tanh, the Adam update) come from :mod:`minireptile.backends.kernel_math`.

Layout (B = minibatch, L = layers, P = parameters, A = B·sum(sizes)):

    phi  (n, P)   one row per task, θ's layout (W (out, in) then b, per layer); adapted in place
    wt   (T, P)   per thread: W transposed, (in, out), at the same offsets (for layers with tlive)
    act  (T, A)   per thread: layer inputs a_l (B, sizes[l]) at aoffs[l]; the output at aoffs[L]
    dlt  (T, A)   per thread: dL/dz of each layer's output, same offsets as act
    grad (T, P)   per thread: the gradient dθ (Adam: all of it; SGD: the biases, weights are fused)

Everything is allocated by the caller before the step loop; task i writes only row i of the
outputs and the scratch row of the thread that runs it (reused task after task: a meta-batch's
working set is its φ rows, not five rows per task), and reductions over tasks run afterwards in
task order, so 1 and 2 threads give bitwise equal results. No random numbers are drawn: minibatches come in as an index plan.

How it is fast (gist net 1-64-64-1, minibatch 10; docs/benchmarks.md has the numbers):

* The products are register-tiled LLVM vector code (:func:`minireptile.backends.numba_simd.gemm`): the
  forward ``z = a·Wᵀ`` reads Wᵀ (in, out), the input gradient ``da = dz·W`` reads W (out, in), so a
  layer that needs both keeps both, and SGD updates both from the same fused-multiply-add chains
  (``W`` and ``Wᵀ`` stay exact transposes); Adam updates W and copies it into Wᵀ, by register blocks
  (:func:`~minireptile.backends.numba_simd.transpose_blocks`). A layer with a narrow output
  (fan_out < 8, the regression head) uses vectorised dot products on W instead.
* tanh is :func:`minireptile.backends.kernel_math.tanh_f32` / ``tanh_f64`` in vectors of the target, with
  fused multiply-adds where it has FMA (:func:`~minireptile.backends.numba_simd.tanh_inplace`; no SVML
  here: ``math.tanh`` is a scalar libm call). ``error_model="numpy"`` drops the zero-division checks.
* Views are borrowed (``view1d``, ``view2d``, ``row``): no bounds checks, no negative-index
  wraparound (which keeps LLVM from vectorising), and no reference count (an atomic increment and
  decrement per view, which on Intel cores cost a sixth of a serial step).
* The backend allocates the scratch on 64-byte boundaries and pads each layer's block of
  activations to whole vectors: a vector that straddles two cache lines costs two accesses on Intel.
* No ``fastmath``: sums are never reassociated, so results are fixed by the source.

How it compiles fast (6–8 s cold for one specialisation on a 2-core machine, 28 s for the one
signature that held every branch before): numba generates machine code for each compiled function
again inside every compiled caller that links it, and its IR inliner copies the callee's IR (about
a second for the task and step loop). So the task and step loop are written out in ``run_chunk``
itself; the helpers it calls are small, ``gemm`` is one function with int64 (never literal)
arguments, so one signature serves every call site, and the activation/loss/optimizer codes are
literals of the entry's closure, so only the branches a run uses reach LLVM (the Adam state's
carry is not compiled into SGD kernels at all).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import kernel_math as km
from .numba_simd import MODE_ACCUMULATE, MODE_SGD, MODE_STORE, dot, gemm, tanh_inplace, transpose_blocks
from .numba_views import row, view1d, view2d

_JIT = dict(cache=True, error_model="numpy", nogil=True)
# Functions only compiled code calls have no CPython wrapper: numba would generate and compile one
# for each (2–3% of a cold compile of the kernel, measured). From Python, call them inside an njit function.
_INNER = dict(_JIT, no_cpython_wrapper=True)

_relu = njit(**_INNER)(km.relu)
_activate_grad = njit(**_INNER)(km.activate_grad)
_adam_update = njit(**_INNER)(km.adam_update)

FWD_DOT_MAX_FANOUT = 8  # layers with fewer outputs use the dot-product forward on W


@njit(**_JIT)
def tanh_array(out, x):
    """out = tanh(x) as the kernel computes it (:func:`~minireptile.backends.numba_simd.tanh_inplace`),
    for 1-D C arrays of one float dtype (used by the tests)."""
    for i in range(x.shape[0]):
        out[i] = x[i]
    tanh_inplace(out)


# ---------------------------------------------------------------------------------------------
# layers on flat per-task rows: outputs first, then inputs, then sizes; shapes in comments
# ---------------------------------------------------------------------------------------------
@njit(**_INNER)
def _forward_dot(z, act, ao, phi, w_off, b_off, B, fi, fo):
    """z = a·Wᵀ + bias with one dot product per output, for narrow layers (the regression head).

    z (B, fo); a = act[ao:] (B, fi); W = phi[w_off:] (fo, fi); bias = phi[b_off:] (fo,).
    """
    for b in range(B):
        for j in range(fo):
            z[b, j] = dot(act, ao + b * fi, phi, w_off + j * fi, fi) + phi[b_off + j]


@njit(**_INNER)
def _bias_grad(db, dz):
    """db (fo,) = Σ_b dz (B, fo), rows added in order (as dz.sum(axis=0))."""
    B, fo = dz.shape
    for j in range(fo):
        db[j] = dz[0, j] if B > 0 else 0
    for b in range(1, B):
        for j in range(fo):
            db[j] += dz[b, j]


@njit(**_INNER)
def _transpose(dst, src):
    """dst (n, m) = srcᵀ for src (m, n): whole register blocks, then the last rows and columns."""
    m, n = src.shape
    N = transpose_blocks(dst, src)
    m_full, n_full = m - m % N, n - n % N
    for i in range(m):
        for j in range(n_full if i < m_full else 0, n):
            dst[j, i] = src[i, j]


@njit(**_INNER)
def _activate(z, act):
    """z = act(z) in place, z (count,). Views keep indices provably >= 0, so this vectorises."""
    if act == km.ACT_TANH:
        tanh_inplace(z)
    else:
        for i in range(z.shape[0]):
            z[i] = _relu(z[i])


@njit(**_INNER)
def _times_activate_grad(d, a, act):
    """d *= act'(z) where a = act(z) (for relu, z > 0 iff a > 0).  d, a (count,)."""
    if act == km.ACT_TANH:
        for i in range(d.shape[0]):
            d[i] *= _activate_grad(a[i], a[i], km.ACT_TANH)
    else:
        for i in range(d.shape[0]):
            d[i] *= _activate_grad(a[i], a[i], km.ACT_RELU)


@njit(**_INNER)
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


@njit(**_INNER)
def _transpose_layers(wt, w, offs, tlive):
    """wt = W transposed, layer by layer, for the layers that keep Wᵀ.  wt, w (P,)."""
    for l in range(offs.shape[0]):
        if tlive[l]:
            w_off, fi, fo = offs[l, 0], offs[l, 2], offs[l, 3]
            _transpose(view2d(wt, w_off, fi, fo), view2d(w, w_off, fo, fi))


@njit(**_INNER)
def _start_chunk(theta, tht, offs, tlive):
    """tht = θ with each kept Wᵀ in place of W (for a shared θ, R = 1)."""
    if theta.shape[0] == 1:
        P = tht.shape[0]
        for p in range(P):
            tht[p] = theta[0, p]
        _transpose_layers(tht, theta[0], offs, tlive)


# ---------------------------------------------------------------------------------------------
# the entry point: one compiled specialisation per (activation, loss, optimizer)
# ---------------------------------------------------------------------------------------------
# The codes are constants of the closure: numba types them as literals, so the kernel compiles a
# specialisation for them and LLVM drops the branches of the others. The loop is written out in
# the closure rather than called: every compiled function is code generated again inside each
# caller that links it, so one more level of calls costs about as much compile time as the kernel.
def _entry(act_code, loss_code, opt_code):
    adam = opt_code == km.OPT_ADAM

    @njit(**_JIT, no_cfunc_wrapper=True)  # called from Python only: no C-callable wrapper to compile
    def run_chunk(theta, m0, v0, phi, m, v, task_loss, iter_loss, red, blk, tht, wt, act, dlt, grad,
                  X, Yf, Yi, plans, eps, offs, aoffs, wlive, tlive, hyper, tblock, copy_theta, copy_state,
                  t0, has_state, carry, update, start, lo, hi, it_lo, it_hi, c_lo, c_hi, k):
        """Tasks [lo, hi) of outer iterations [it_lo, it_hi), on the calling thread; return (t, has_state).

        With ``start``, first fill tht from θ. With ``update``, after each iteration's tasks: its mean
        loss, the outer update, the carried Adam state on parameter columns [c_lo, c_hi) (this needs
        every task of the iteration done: lo = 0, hi = n, or lo = hi after other calls ran the tasks);
        when that call covers every column it also refills tht from the new θ. The GIL is released,
        so Python threads can run disjoint task ranges of one iteration at once (numba_cpu._call
        does), each with its own scratch row k.

        In/out: theta (R, P) start point, R = 1 (shared) or n (one per task; only without update),
        θ after the chunk when ``update``; m0, v0 (Rm, P) Adam state to start from when ``has_state``,
        the carried (task-mean) state after the chunk when ``carry``.
        Outputs: phi, m, v (n, P) adapted parameters and moments of the last iteration; task_loss (n,)
        their mean pre-update losses; iter_loss (iters,) mean over tasks per iteration.
        Scratch: red, blk, tht (P,); wt, grad (T, P); act, dlt (T, A), row k used. With a shared θ
        (R = 1), tht holds θ with each kept Wᵀ in place of W, so no task transposes its weights at
        its start (a serial call, one task with the whole update, refreshes it only at its end: its
        iterations hand the new θ and θ's Wᵀ to the next task directly).
        Inputs: X (iters, n, n_points, d_in); Yf (iters, n, n_points, d_out) for mse else a dummy
        (iters, n, 1, 1); Yi (iters, n, n_points) for ce else a dummy (iters, n, 1); plans
        (iters, n, steps, B); eps (iters,) float64.
        Sizes and switches: offs (L, 4) = w_off, b_off, fan_in, fan_out per layer; aoffs (L + 1,)
        the layers' blocks in act and dlt; wlive, tlive (L,) whether a layer keeps W / Wᵀ current
        during the steps; hyper (4,) float64 =
        (lr, beta1, beta2, eps); tblock: tasks per reduction block (see _reduce_columns);
        copy_theta, copy_state: False when theta is phi (m0, v0 are m, v): adapt in place; t0 Adam
        steps taken before. Reductions over tasks: the tasks in task order within blocks of ``tblock``
        tasks, then the block sums in block order, as the distributed meta-batch
        (:mod:`minireptile.backends.distributed`) adds them; each parameter column is reduced the same
        way whoever runs it, so threads may share the columns out.
        """
        steps = plans.shape[2]
        P = phi.shape[1]
        shared = theta.shape[0] == 1
        t = t0
        hs = has_state
        if start:
            _start_chunk(theta, tht, offs, tlive)
        # one task, all columns here: the outer update also writes the new θ into the task's φ row and
        # the new θ's Wᵀ into the scratch Wᵀ row, where the next iteration starts (no copies there; the
        # last inner step skips its W → Wᵀ copy, which nothing reads)
        serial = update and phi.shape[0] == 1 and shared and copy_theta and lo == 0 and hi == 1 \
            and c_lo == 0 and c_hi == P
        fresh = False
        for it in range(it_lo, it_hi):
            for i in range(lo, hi):  # task i in scratch row k: start from θ (θᵀ, the Adam state), adapt
                r = 0 if shared else i
                ph, wk = row(phi, i), row(wt, k)
                if copy_theta and not fresh:
                    th = row(theta, r)
                    for p in range(P):
                        ph[p] = th[p]
                if shared and not fresh:
                    for p in range(P):
                        wk[p] = tht[p]
                fresh = False
                mi, vi = row(m, i), row(v, i)
                if adam:
                    if hs and copy_state:
                        rs = 0 if m0.shape[0] == 1 else i
                        m0r, v0r = row(m0, rs), row(v0, rs)
                        for p in range(P):
                            mi[p] = m0r[p]
                            vi[p] = v0r[p]
                    elif not hs:
                        for p in range(P):
                            mi[p] = 0
                            vi[p] = 0
                # the task's inner loop, in place on its rows (as reference.inner_loop): ph, mi, vi (P,)
                # start values in, adapted values out; wk (Wᵀ, P), gk (P,), ak, dk (A,) the thread's scratch
                ak, dk, gk = row(act, k), row(dlt, k), row(grad, k)
                Xt, Yft, Yit, pl = row(row(X, it), i), row(row(Yf, it), i), row(row(Yi, it), i), row(row(plans, it), i)
                dt = ph.dtype.type
                lr, beta1, beta2, adam_eps = dt(hyper[0]), dt(hyper[1]), dt(hyper[2]), dt(hyper[3])
                zero = dt(0)
                B = pl.shape[1]
                L = offs.shape[0]
                d_in = offs[0, 2]
                d_out = offs[L - 1, 3]
                # plain int64 values, not literals: a literal argument would compile one more gemm per call site
                one, store, accumulate, sgd = np.int64(1), np.int64(MODE_STORE), np.int64(MODE_ACCUMULATE), np.int64(MODE_SGD)
                if not shared:
                    _transpose_layers(wk, ph, offs, tlive)
                tl = 0.0
                ahead = serial and it + 1 < it_hi  # the next iteration starts from θᵀ, not from this φᵀ
                for s in range(steps):
                    idx = row(pl, s)
                    a0 = view2d(ak, 0, B, d_in)
                    for b in range(B):
                        for kk in range(d_in):
                            a0[b, kk] = Xt[idx[b], kk]
                    # forward: z_l = a_l·W_lᵀ + b_l, a_{l+1} = act(z_l) (the output layer stays linear)
                    for l in range(L):
                        w_off, b_off, fi, fo = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
                        ao, zo = aoffs[l], aoffs[l + 1]
                        z = view1d(ak, zo, B * fo)
                        if tlive[l]:
                            z2 = view2d(ak, zo, B, fo)
                            bias = view1d(ph, b_off, fo)
                            for b in range(B):
                                for j in range(fo):
                                    z2[b, j] = bias[j]
                            gemm(ak, zo, fo, B, fo, ak, ao, fi, one, wk, w_off, fo, fi, zero, accumulate)
                        else:
                            _forward_dot(view2d(ak, zo, B, fo), ak, ao, ph, w_off, b_off, B, fi, fo)
                        if l < L - 1:
                            _activate(z, act_code)
                    zo = aoffs[L]
                    tl += _loss_and_dout(view2d(dk, zo, B, d_out), view2d(ak, zo, B, d_out),
                                            Yft, Yit, idx, loss_code) / steps
                    # backward, top layer first; dz of layer l lives at aoffs[l + 1] in dlt
                    for l in range(L - 1, -1, -1):
                        w_off, b_off, fi, fo = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
                        ao, zo = aoffs[l], aoffs[l + 1]
                        if l > 0:  # da = dz·W with W before this step's update, then da ⊙ act'(z)
                            gemm(dk, ao, fi, B, fi, dk, zo, fo, one, ph, w_off, fi, fo, zero, store)
                            _times_activate_grad(view1d(dk, ao, zo - ao), view1d(ak, ao, zo - ao), act_code)
                        _bias_grad(view1d(gk, b_off, fo), view2d(dk, zo, B, fo))
                        if adam:  # dW = dzᵀ·a into grad; Adam applies all of grad below
                            gemm(gk, w_off, fi, fo, fi, dk, zo, one, fo, ak, ao, fi, B, zero, store)
                            continue
                        # SGD: θ ← θ − lr·g on W (out, in); a layer that also keeps Wᵀ (in, out) copies it by
                        # register blocks (a quarter of the work of a second product), one that keeps only Wᵀ
                        # updates Wᵀ with the same sums
                        if wlive[l]:
                            gemm(ph, w_off, fi, fo, fi, dk, zo, one, fo, ak, ao, fi, B, lr, sgd)
                            if tlive[l] and not (ahead and s == steps - 1):
                                _transpose(view2d(wk, w_off, fi, fo), view2d(ph, w_off, fo, fi))
                        elif tlive[l]:
                            gemm(wk, w_off, fo, fi, fo, ak, ao, one, fi, dk, zo, fo, B, lr, sgd)
                        bias = view1d(ph, b_off, fo)
                        db = view1d(gk, b_off, fo)
                        for j in range(fo):
                            bias[j] -= lr * db[j]
                    if adam:
                        ts = t + s + 1
                        bc1 = dt(1.0 - hyper[1] ** ts)  # 1 - β1^t in float64, then rounded, as the reference
                        bc2 = dt(1.0 - hyper[2] ** ts)
                        for p in range(ph.shape[0]):
                            ph[p], mi[p], vi[p] = _adam_update(ph[p], gk[p], mi[p], vi[p], lr, beta1, beta2, adam_eps, bc1, bc2)
                        if s < steps - 1 or phi.shape[0] == 1:  # Wᵀ for the next step's forward, and
                            _transpose_layers(wk, ph, offs, tlive)  # one task's φᵀ for the update of θᵀ
                if not adam:
                    for l in range(L):
                        if tlive[l] and not wlive[l]:
                            w_off, b_off, fi, fo = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
                            _transpose(view2d(ph, w_off, fo, fi), view2d(wk, w_off, fi, fo))
                task_loss[i] = tl
            if update:  # after every task of the iteration: its mean loss, the outer update, the Adam state
                if c_lo == 0:  # the task losses in the blocked order of _reduce_columns
                    n = task_loss.shape[0]
                    total = 0.0
                    for a in range(0, n, tblock):
                        part = 0.0
                        for i in range(a, min(a + tblock, n)):
                            part += task_loss[i]
                        total += part
                    iter_loss[it] = total / n
                e = phi.dtype.type(eps[it])  # θ ← θ + ε·(mean_i φ_i − θ), as reptile.reptile_update
                fresh = serial and it + 1 < it_hi  # (the last iteration's φ is an output: kept)
                _reduce_columns(row(theta, 0), phi, e, red, blk, tblock, c_lo, c_hi, np.int64(2 if fresh else 0))
                if adam:  # a constant of the closure: SGD kernels do not compile this
                    if carry:  # as reptile.carry_state: the task-mean moments, t advanced by the steps
                        _reduce_columns(row(m0, 0), m, e, red, blk, tblock, c_lo, c_hi, np.int64(1))
                        _reduce_columns(row(v0, 0), v, e, red, blk, tblock, c_lo, c_hi, np.int64(1))
                        t, hs = t + steps, True
                    else:
                        t, hs = 0, False
                if c_lo == 0 and c_hi == phi.shape[1]:  # the whole update here: θᵀ for the next iteration
                    if serial:  # the new θ's Wᵀ where the next task starts (last iteration: θᵀ in tht, for later calls)
                        dst = row(wt, k)
                        if not fresh:
                            dst = tht
                            for p in range(P):
                                tht[p] = theta[0, p]
                        _transpose_layers(dst, row(theta, 0), offs, tlive)
                    elif phi.shape[0] == 1:  # the one task's Wᵀ is in wt[k]: θᵀ by θ's arithmetic (cheaper)
                        _reduce_columns(tht, view2d(row(wt, k), 0, 1, phi.shape[1]), phi.dtype.type(eps[it]), red, blk,
                                        tblock, c_lo, c_hi, np.int64(2 if fresh else 0))
                    else:
                        _start_chunk(theta, tht, offs, tlive)
        return t, hs
    return run_chunk


_ENTRIES = {}


def chunk_kernel(act_code: int, loss_code: int, opt_code: int):
    """The compiled chunk function for these codes (kernel_math's), made on first use.

    It is compiled (or loaded from the on-disk cache) only when first called, so a run compiles
    only the specialisation it uses.
    """
    key = (int(act_code), int(loss_code), int(opt_code))
    if key not in _ENTRIES:
        _ENTRIES[key] = _entry(*key)
    return _ENTRIES[key]


@njit(**_INNER)
def _reduce_columns(out, rows, e, red, blk, tblock, c0, c1, replace):
    """On parameter columns [c0, c1), with M the mean of ``rows`` over tasks: ``replace`` (int64, not a
    literal: one signature for every use) 1: out = M;
    else out ← out + e·(M − out) (θ + ε·(mean φ − θ), as :func:`minireptile.reptile.reptile_update`), and
    with ``replace`` 2 and one row, the row ← the new out too (where the next iteration starts).

    M = (Σ_k s_k) / n with s_k = rows[k·tblock] + rows[k·tblock + 1] + … in task order and the s_k
    added in block order; with tblock >= n, NumPy's ``rows.mean(axis=0)``; one row: the row itself
    (x / 1 is exact, so no division). out, red, blk (P,) (red, blk scratch); rows (n, P), n >= 1;
    e in out's dtype. One function for θ and the Adam moments: every compiled function is code
    generated again in each caller, so fewer is faster to compile. (1-D views: the loops vectorise.)
    """
    n = rows.shape[0]
    w = c1 - c0
    o = view1d(out, c0, w)
    if n == 1:
        r = view1d(row(rows, 0), c0, w)
        if replace == 1:
            for p in range(w):
                o[p] = r[p]
            return
        for p in range(w):
            x = o[p] + e * (r[p] - o[p])
            o[p] = x
            if replace == 2:  # (loop-invariant: LLVM compiles the loop once with the store, once without)
                r[p] = x
        return
    acc = view1d(red, c0, w)
    for a in range(0, n, tblock):  # block a's sum in acc (the first block) or blk, then acc += blk
        b = acc if a == 0 else view1d(blk, c0, w)
        r = view1d(row(rows, a), c0, w)
        for p in range(w):
            b[p] = r[p]
        for i in range(a + 1, min(a + tblock, n)):
            r = view1d(row(rows, i), c0, w)
            for p in range(w):
                b[p] += r[p]
        if a > 0:
            for p in range(w):
                acc[p] += b[p]
    nf = rows.dtype.type(n)
    if replace == 1:
        for p in range(w):
            o[p] = acc[p] / nf
    else:
        for p in range(w):
            o[p] = o[p] + e * (acc[p] / nf - o[p])
