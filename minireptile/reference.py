"""The NumPy reference: forward, backward and the inner loop, written to be read.

Contract
--------
This file is the source of truth. Every fast path (the Numba CPU kernel, the CUDA kernel,
the PyTorch and JAX peers) is tested against the functions here, and docs/backprop.md teaches
from this text. It favours clarity over speed: one task at a time, a Python loop over steps,
NumPy vectorised over the minibatch.

Shapes (B = minibatch size, d_in / d_out = input / output width, P = number of parameters):

    theta  (P,)           flat parameters, layout in :mod:`minireptile.mlp`
    X      (B, d_in)      inputs
    Y      (B, d_out)     float targets           for loss="mse"
           (B,)           integer class labels    for loss="ce"

It draws no random numbers: minibatches come in as an index plan made on the host.

Each public function starts with one call into :mod:`minireptile.validation`, which rejects bad
shapes, dtypes, non-finite data (``check_finite=True``) and out-of-range plans with an error naming
the argument, and hands back contiguous arrays in θ's dtype. The math below can assume clean input.
"""

from __future__ import annotations

import numpy as np

from . import validation as check
from .mlp import MLPSpec, unflatten
from .optim import AdamState, InnerOptimizer, InnerResult


# ---------------------------------------------------------------------------------------------
# activations: value and derivative (the derivative is written in terms of what forward keeps)
# ---------------------------------------------------------------------------------------------
def _act(name: str, z: np.ndarray) -> np.ndarray:
    return np.tanh(z) if name == "tanh" else np.maximum(z, 0)


def _act_grad(name: str, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    # d act / d z, given pre-activation z and activation a = act(z)
    return 1 - a * a if name == "tanh" else (z > 0).astype(z.dtype)


# ---------------------------------------------------------------------------------------------
# forward / backward for one task
# ---------------------------------------------------------------------------------------------
def forward(spec: MLPSpec, theta: np.ndarray, X: np.ndarray, *, check_finite: bool = True) -> np.ndarray:
    """Network output for a batch.

    Parameters
    ----------
    spec : MLPSpec
    theta : ndarray, shape (P,)
    X : ndarray, shape (B, d_in)
    check_finite : bool
        Reject NaN/inf in θ and X (default).

    Returns
    -------
    out : ndarray, shape (B, d_out), θ's dtype
        Linear outputs (regression values, or logits for loss="ce").
    """
    theta, X = check.forward_args(spec, theta, X, check_finite)
    a = X
    layers = unflatten(spec, theta)
    for i, (W, b) in enumerate(layers):
        z = a @ W.T + b                       # (B, out)
        a = z if i == len(layers) - 1 else _act(spec.activation, z)
    return a


def _loss_and_dout(spec: MLPSpec, out: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
    """Loss value and dL/d(out), shape (B, d_out)."""
    B = out.shape[0]
    if spec.loss == "mse":
        diff = out - Y                                    # (B, d_out)
        loss = np.mean(diff * diff)
        dout = (2.0 / diff.size) * diff
    else:
        shifted = out - out.max(axis=1, keepdims=True)    # (B, C), for stability
        logsumexp = np.log(np.exp(shifted).sum(axis=1))   # (B,)
        logp_true = shifted[np.arange(B), Y] - logsumexp  # (B,)
        loss = -np.mean(logp_true)
        dout = np.exp(shifted - logsumexp[:, None])       # softmax, (B, C)
        dout[np.arange(B), Y] -= 1
        dout /= B
    return loss, dout.astype(out.dtype, copy=False)


def loss_and_grad(spec: MLPSpec, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, *, check_finite: bool = True):
    """Mean loss over the batch and its gradient with respect to the flat θ.

    Parameters
    ----------
    spec : MLPSpec
    theta : ndarray, shape (P,)
    X : ndarray, shape (B, d_in), B >= 1
    Y : ndarray, shape (B, d_out) float for "mse", or (B,) int in [0, d_out) for "ce"
    check_finite : bool
        Reject NaN/inf in θ, X and Y (default).

    Returns
    -------
    loss : float
    grad : ndarray, shape (P,), same dtype as ``theta``
        Laid out like θ, so ``unflatten(spec, grad)`` names dW and db per layer.
    """
    theta, X, Y = check.batch_args(spec, theta, X, Y, check_finite)
    layers = unflatten(spec, theta)
    D = len(layers)                           # number of linear layers (docs/notation.md); L is the loss
    # forward, keeping each layer's input a[l] and pre-activation z[l]
    a = [X]                                   # a[l]: input of layer l, (B, sizes[l])
    z = []                                    # z[l]: pre-activation of layer l, (B, sizes[l+1])
    for i, (W, b) in enumerate(layers):
        z.append(a[i] @ W.T + b)
        if i < D - 1:
            a.append(_act(spec.activation, z[i]))
    out = z[-1]
    loss, dz = _loss_and_dout(spec, out, Y)   # dz = dL/dz[D-1], (B, d_out)

    # backward: for each layer from the top, dW = dz^T a, db = sum_B dz, then push dz down
    grad = np.zeros_like(theta)
    dlayers = unflatten(spec, grad)
    for i in range(D - 1, -1, -1):
        W, _ = layers[i]
        dW, db = dlayers[i]
        dW += dz.T @ a[i]                     # (out, in)
        db += dz.sum(axis=0)                  # (out,)
        if i > 0:
            da = dz @ W                       # (B, in): dL/da[i]
            dz = da * _act_grad(spec.activation, z[i - 1], a[i])
    return float(loss), grad


def loss(spec: MLPSpec, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, *, check_finite: bool = True) -> float:
    """Mean loss of one batch (see :func:`loss_and_grad` for shapes)."""
    theta, X, Y = check.batch_args(spec, theta, X, Y, check_finite)
    out = forward(spec, theta, X, check_finite=False)
    return float(_loss_and_dout(spec, out, Y)[0])


# ---------------------------------------------------------------------------------------------
# one optimizer step (in place on theta and the state rows)
# ---------------------------------------------------------------------------------------------
def sgd_step(theta: np.ndarray, grad: np.ndarray, lr: float) -> None:
    """θ ← θ − lr·g, in place."""
    theta -= lr * grad


def adam_step(theta, grad, m, v, t: int, opt: InnerOptimizer) -> None:
    """One Adam step number ``t`` (1-based), in place on θ, m, v.

    m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
    θ ← θ − lr·(m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + eps)
    """
    b1, b2 = opt.beta1, opt.beta2
    m *= b1
    m += (1 - b1) * grad
    v *= b2
    v += (1 - b2) * grad * grad
    mhat = m / (1 - b1**t)
    vhat = v / (1 - b2**t)
    theta -= opt.lr * mhat / (np.sqrt(vhat) + opt.eps)


# ---------------------------------------------------------------------------------------------
# the inner loop: the backend entry point
# ---------------------------------------------------------------------------------------------
def inner_loop(
    spec: MLPSpec,
    theta: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    plan: np.ndarray,
    opt: InnerOptimizer,
    state: AdamState | None = None,
    *,
    check_finite: bool = True,
    out: tuple | None = None,
) -> InnerResult:
    """Adapt θ to each task of a meta-batch: k optimizer steps on that task's minibatches.

    Parameters
    ----------
    spec : MLPSpec
    theta : ndarray, shape (P,) or (n_tasks, P)
        Start point, shared by every task or one row per task.
    X : ndarray, shape (n_tasks, n_points, d_in)
    Y : ndarray, shape (n_tasks, n_points, d_out) float, or (n_tasks, n_points) int for "ce"
    plan : ndarray of int, shape (n_tasks, steps, batch)
        ``plan[i, s]`` are the point indices of task i's minibatch at step s, in [0, n_points).
    opt : InnerOptimizer
    state : AdamState or None
        Adam moments to start from (``m``, ``v`` of shape (P,) or (n_tasks, P), step count ``t``);
        None starts from zeros. Ignored for SGD.
    check_finite : bool
        Reject NaN/inf in θ, X, Y and the state (default). Steps that diverge are not an input
        error: φ and the loss then come back non-finite (``meta_train`` turns that into
        :class:`~minireptile.errors.DivergenceError`).
    out : tuple of ndarray, optional
        Arrays to write the result into instead of new ones (to reuse memory across calls):
        ``(phi,)`` for SGD or ``(phi, m, v)`` for Adam, each of shape (n_tasks, P), θ's dtype,
        C-contiguous and writeable. θ may be ``phi`` itself and ``state.m``, ``state.v`` may be
        ``m``, ``v`` (adapting in place); no other overlap is allowed.

    Returns
    -------
    InnerResult
        ``phi`` (n_tasks, P) adapted parameters, ``loss`` (n_tasks,) mean minibatch loss over the
        steps (each measured before its update), ``state`` final Adam moments or None. With
        ``out``, ``phi`` and the moments are its arrays.
    """
    theta, X, Y, plan, state = check.inner_loop_args(spec, theta, X, Y, plan, opt, state, check_finite)
    n_tasks, steps, _ = plan.shape
    P = spec.n_params
    out = check.out_arg(out, opt, theta, X, Y, state, n_tasks, P)
    phi, m, v = (*out, None, None)[:3] if out is not None else (np.empty((n_tasks, P), dtype=X.dtype), None, None)
    phi[...] = theta
    losses = np.zeros(n_tasks, dtype=np.float64)
    adam = opt.name == "adam"
    if adam:
        if m is None:
            m, v = np.empty((n_tasks, P), X.dtype), np.empty((n_tasks, P), X.dtype)
        t0 = 0
        if state is not None:
            m[...] = state.m
            v[...] = state.v
            t0 = state.t
        else:
            m[...] = 0
            v[...] = 0
    for i in range(n_tasks):
        for s in range(steps):
            idx = plan[i, s]
            loss_s, g = loss_and_grad(spec, phi[i], X[i, idx], Y[i, idx], check_finite=False)
            losses[i] += loss_s / steps
            if adam:
                adam_step(phi[i], g, m[i], v[i], t0 + s + 1, opt)
            else:
                sgd_step(phi[i], g, opt.lr)
    new_state = AdamState(m, v, t0 + steps) if adam else None
    return InnerResult(phi, losses, new_state)
