"""Hessian-vector products of the MLP loss, by hand: the R-operator through the backward pass.

Contract
--------
For one batch's loss L(θ) (as in :func:`minireptile.reference.loss_and_grad`) and a direction v
laid out like θ, compute H·v = ∇²L(θ)·v without forming H and without autograd.

The method is Pearlmutter's (1994) R-operator, i.e. forward-over-reverse differentiation:
define for any quantity x computed from θ

    R{x} = d/dr x(θ + r·v) |_{r=0}

and apply R to every line of the forward and the backward pass. The backward pass computes
∇L(θ), so R{∇L} = H·v. Each line's rule is the product rule (R{θ} = v, R{X} = R{Y} = 0):

    forward                                  R-forward
    z_l   = a_l W_l^T + b_l                  R{z_l}   = R{a_l} W_l^T + a_l V_l^T + v_b,l
    a_l+1 = σ(z_l)                           R{a_l+1} = σ'(z_l) ⊙ R{z_l}
    dz    = dL/d(out)                        R{dz}    = (d²L/d out²) R{out}      (see _loss_dout_r)

    backward                                 R-backward
    dW_l  = dz_l^T a_l                       R{dW_l}  = R{dz_l}^T a_l + dz_l^T R{a_l}
    db_l  = Σ_B dz_l                         R{db_l}  = Σ_B R{dz_l}
    da_l  = dz_l W_l                         R{da_l}  = R{dz_l} W_l + dz_l V_l
    dz_l-1 = da_l ⊙ σ'(z_l-1)                R{dz_l-1} = R{da_l} ⊙ σ'(z_l-1) + da_l ⊙ σ''(z_l-1) ⊙ R{z_l-1}

where (V_l, v_b,l) are v's views for layer l. ``tanh``: σ' = 1 − a², σ'' = −2a(1 − a²).
``relu``: σ' = [z > 0], σ'' = 0 (almost everywhere; at a kink the Hessian does not exist).
Cost: about twice one forward + backward.

Two versions of the same arithmetic:

* :func:`loss_grad_hvp` — one task, NumPy over the minibatch, line by line beside
  ``reference.loss_and_grad`` (the oracle; docs and tests read this one).
* :func:`batched_loss_grad_hvp` — a leading task axis, so a meta-batch costs one set of NumPy
  calls (used by :mod:`minireptile.algorithms.maml` and :mod:`minireptile.algorithms.diagnostics`); tested against the
  oracle. With ``v=None`` it is a task-batched ``loss_and_grad``.

Shapes: θ, v (P,) or (n_tasks, P); X (B, d_in) or (n_tasks, B, d_in); Y (B, d_out) float for
"mse", (B,) int for "ce", with the same leading task axis in the batched version.
"""

from __future__ import annotations

import numpy as np

from .. import validation as check
from ..mlp import MLPSpec, unflatten
from ..reference import _act, _act_grad, _loss_and_dout


def _act_grad2(name: str, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """d² act / d z², from pre-activation z and activation a = act(z)."""
    return -2 * a * (1 - a * a) if name == "tanh" else np.zeros_like(z)


def _loss_dout_r(spec: MLPSpec, out: np.ndarray, Rout: np.ndarray) -> np.ndarray:
    """R{dL/d out} = (d²L / d out²)·R{out} for one batch, shape (..., B, d_out).

    mse: dL/dout = 2/M (out − Y), M = B·d_out       →  R = 2/M · R{out}
    ce:  dL/dout = (softmax(out) − onehot(Y)) / B   →  R = (p ⊙ R{out} − p·⟨p, R{out}⟩) / B
    """
    B = out.shape[-2]
    if spec.loss == "mse":
        return (2.0 / (B * out.shape[-1])) * Rout
    shifted = out - out.max(axis=-1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=-1, keepdims=True)                          # softmax, (..., B, C)
    pRout = (p * Rout).sum(axis=-1, keepdims=True)              # ⟨p, R{out}⟩ per row, (..., B, 1)
    return (p * Rout - p * pRout) / B


# ---------------------------------------------------------------------------------------------
# one task: the oracle, line by line beside reference.loss_and_grad
# ---------------------------------------------------------------------------------------------
def loss_grad_hvp(spec: MLPSpec, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, v: np.ndarray):
    """Loss, gradient and Hessian-vector product H·v of one batch's mean loss.

    Parameters
    ----------
    spec : MLPSpec
    theta : ndarray, shape (P,)
    X : ndarray, shape (B, d_in)
    Y : ndarray, shape (B, d_out) float for "mse", or (B,) int for "ce"
    v : ndarray, shape (P,)
        Direction, laid out like θ.

    Returns
    -------
    loss : float
    grad : ndarray, shape (P,)
        Equal to ``reference.loss_and_grad``'s gradient.
    hv : ndarray, shape (P,)
        ∇²L(θ)·v.
    """
    theta, X, Y, v = check.hvp_args(spec, theta, X, Y, v)
    act = spec.activation
    layers = unflatten(spec, theta)
    vlayers = unflatten(spec, v)              # (V_l, v_b,l): the direction's views, like θ's
    L = len(layers)
    # forward, and beside each line its R{.}
    a, Ra = [X], [np.zeros_like(X)]           # a[l], R{a[l]}: input of layer l, (B, sizes[l])
    z, Rz = [], []                            # z[l], R{z[l]}: pre-activation, (B, sizes[l+1])
    for i, ((W, b), (V, vb)) in enumerate(zip(layers, vlayers)):
        z.append(a[i] @ W.T + b)
        Rz.append(Ra[i] @ W.T + a[i] @ V.T + vb)
        if i < L - 1:
            a.append(_act(act, z[i]))
            Ra.append(_act_grad(act, z[i], a[i + 1]) * Rz[i])
    loss, dz = _loss_and_dout(spec, z[-1], Y)             # dz = dL/dz[L-1], (B, d_out)
    Rdz = _loss_dout_r(spec, z[-1], Rz[-1])               # R{dz}, (B, d_out)

    # backward, and beside each line its R{.}
    grad = np.zeros_like(theta)
    hv = np.zeros_like(theta)
    dlayers = unflatten(spec, grad)
    hlayers = unflatten(spec, hv)
    for i in range(L - 1, -1, -1):
        (W, _), (V, _) = layers[i], vlayers[i]
        dW, db = dlayers[i]
        RdW, Rdb = hlayers[i]
        dW += dz.T @ a[i]                                 # (out, in)
        db += dz.sum(axis=0)                              # (out,)
        RdW += Rdz.T @ a[i] + dz.T @ Ra[i]                # (out, in)
        Rdb += Rdz.sum(axis=0)                            # (out,)
        if i > 0:
            da = dz @ W                                   # (B, in)
            Rda = Rdz @ W + dz @ V                        # (B, in)
            s1 = _act_grad(act, z[i - 1], a[i])           # σ'(z[i-1])
            s2 = _act_grad2(act, z[i - 1], a[i])          # σ''(z[i-1])
            dz, Rdz = da * s1, Rda * s1 + da * s2 * Rz[i - 1]
    return float(loss), grad, hv


def hvp(spec: MLPSpec, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, v: np.ndarray) -> np.ndarray:
    """H·v of one batch's mean loss at θ (shapes as :func:`loss_grad_hvp`); returns (P,)."""
    return loss_grad_hvp(spec, theta, X, Y, v)[2]


# ---------------------------------------------------------------------------------------------
# a meta-batch at once: the same lines with a leading task axis
# ---------------------------------------------------------------------------------------------
def _task_views(spec: MLPSpec, theta2: np.ndarray):
    """Per-layer views [(W (n, out, in), b (n, out)), ...] into a (n, P) array."""
    n = theta2.shape[0]
    return [(theta2[:, w_off:b_off].reshape(n, fan_out, fan_in), theta2[:, b_off:b_off + fan_out])
            for (w_off, b_off), fan_in, fan_out in zip(spec.offsets, spec.sizes[:-1], spec.sizes[1:])]


def _T(x: np.ndarray) -> np.ndarray:
    """Transpose of the last two axes."""
    return np.swapaxes(x, -1, -2)


def batched_loss_grad_hvp(spec: MLPSpec, theta: np.ndarray, X: np.ndarray, Y: np.ndarray,
                          v: np.ndarray | None = None, *, check_finite: bool = True):
    """Per-task loss, gradient and (optionally) H·v for a meta-batch of batches.

    Parameters
    ----------
    spec : MLPSpec
    theta : ndarray, shape (P,) or (n_tasks, P)
        Shared by every task, or one row per task.
    X : ndarray, shape (n_tasks, B, d_in)
    Y : ndarray, shape (n_tasks, B, d_out) float for "mse", or (n_tasks, B) int for "ce"
    v : ndarray, shape (P,) or (n_tasks, P), or None
        Direction(s); None skips the R-pass (then this is a task-batched ``loss_and_grad``).
    check_finite : bool
        Reject NaN/inf inputs (default; shapes, dtypes and labels are always checked).

    Returns
    -------
    loss : ndarray, shape (n_tasks,), float64
    grad : ndarray, shape (n_tasks, P), θ's dtype
    hv : ndarray, shape (n_tasks, P), or None when ``v`` is None
    """
    theta, X, Y, v = check.hvp_args(spec, theta, X, Y, v, rows=True, check_finite=check_finite)
    n, B = X.shape[0], X.shape[1]
    P = spec.n_params
    if theta.shape not in ((P,), (n, P)):
        raise ValueError(f"theta: expected shape ({P},) or ({n}, {P}), got {theta.shape}")
    theta2 = np.broadcast_to(theta, (n, P))
    with_r = v is not None
    if with_r:
        if v.shape not in ((P,), (n, P)):
            raise ValueError(f"v: expected shape ({P},) or ({n}, {P}) like theta, got {v.shape}")
        v2 = np.broadcast_to(v, (n, P))
    act = spec.activation
    layers = _task_views(spec, theta2)
    vlayers = _task_views(spec, v2) if with_r else [(None, None)] * len(layers)
    L = len(layers)
    a, Ra = [X], [np.zeros_like(X)]                   # (n, B, sizes[l])
    z, Rz = [], []                                    # (n, B, sizes[l+1])
    for i, ((W, b), (V, vb)) in enumerate(zip(layers, vlayers)):
        z.append(a[i] @ _T(W) + b[:, None, :])
        if with_r:
            Rz.append(Ra[i] @ _T(W) + a[i] @ _T(V) + vb[:, None, :])
        if i < L - 1:
            a.append(_act(act, z[i]))
            if with_r:
                Ra.append(_act_grad(act, z[i], a[i + 1]) * Rz[i])
    out = z[-1]                                       # (n, B, d_out)
    if spec.loss == "mse":
        diff = out - Y
        loss = np.mean(diff * diff, axis=(1, 2))
        dz = (2.0 / (B * spec.d_out)) * diff
    else:
        if Y.shape != (n, B):
            raise ValueError(f"Y: expected integer labels of shape ({n}, {B}), got {Y.shape}")
        shifted = out - out.max(axis=2, keepdims=True)
        logsumexp = np.log(np.exp(shifted).sum(axis=2))                  # (n, B)
        logp_true = np.take_along_axis(shifted, Y[..., None], axis=2)[..., 0] - logsumexp
        loss = -np.mean(logp_true, axis=1)
        dz = np.exp(shifted - logsumexp[..., None])                       # softmax, (n, B, C)
        np.put_along_axis(dz, Y[..., None], np.take_along_axis(dz, Y[..., None], axis=2) - 1, axis=2)
        dz /= B
    dz = dz.astype(out.dtype, copy=False)
    Rdz = _loss_dout_r(spec, out, Rz[-1]) if with_r else None

    grad = np.zeros((n, P), dtype=theta.dtype)
    hv = np.zeros((n, P), dtype=theta.dtype) if with_r else None
    dlayers = _task_views(spec, grad)
    hlayers = _task_views(spec, hv) if with_r else None
    for i in range(L - 1, -1, -1):
        (W, _), (V, _) = layers[i], vlayers[i]
        dW, db = dlayers[i]
        dW += _T(dz) @ a[i]                           # (n, out, in)
        db += dz.sum(axis=1)                          # (n, out)
        if with_r:
            RdW, Rdb = hlayers[i]
            RdW += _T(Rdz) @ a[i] + _T(dz) @ Ra[i]
            Rdb += Rdz.sum(axis=1)
        if i > 0:
            da = dz @ W                               # (n, B, in)
            s1 = _act_grad(act, z[i - 1], a[i])
            if with_r:
                Rda = Rdz @ W + dz @ V
                s2 = _act_grad2(act, z[i - 1], a[i])
                Rdz = Rda * s1 + da * s2 * Rz[i - 1]
            dz = da * s1
    return np.asarray(loss, dtype=np.float64), grad, hv
