"""The Reptile paper's Taylor-series analysis, computed: AvgGrad, AvgGradInner, update norms.

Contract
--------
Nichol, Achiam & Schulman (2018, §5) expand the inner loop of k SGD steps on minibatches
1..k of one task to second order in the step size α. With ḡ_i = ∇L_i(θ) and H̄_i = ∇²L_i(θ),
all at the initial point θ, the inner-loop gradients g_i = ∇L_i(φ_{i−1}) (φ_0 = θ, φ_i = φ_{i−1} − α g_i;
the index convention of docs/notation.md; the paper starts at φ_1 = θ) satisfy

    g_i = ḡ_i − α H̄_i Σ_{j<i} ḡ_j + O(α²)

so, in gradient units (the update divided by α),

    g_Reptile = (θ − φ_k)/α = Σ_i g_i = Σ_i ḡ_i − α Σ_{j<i} H̄_i ḡ_j + O(α²)   (:func:`reptile_taylor`)

and in expectation over tasks and minibatches, with AvgGrad = E[ḡ] and
AvgGradInner = E[H̄_i ḡ_j] (i ≠ j; = ½ ∇E[ḡ_i·ḡ_j], the term that rewards generalisation within
a task):

    E[g_Reptile] = k·AvgGrad − α·k(k−1)/2·AvgGradInner
    E[g_FOMAML]  = AvgGrad − α·(k−1)·AvgGradInner        (k−1 steps, gradient on minibatch k)
    E[g_MAML]    = AvgGrad − 2α·(k−1)·AvgGradInner

Here k counts minibatches for all three (MAML with k steps *and* a query batch has k+1 of them, so
its coefficient is −2αk). θ moves along −g, hence along +AvgGradInner: towards a larger inner product
of different minibatches' gradients.

(:func:`expected_directions`; for any combination Σ c_i g_i of inner gradients,
:func:`combination_coefficients`). :func:`taylor_terms` estimates both terms on a meta-batch with
Hessian-vector products (:mod:`minireptile.algorithms.hvp`); :func:`diagnose` relates an actual update to
them (norms, cosines, and its least-squares coefficients on the two terms). Shapes as :mod:`minireptile.algorithms.maml`; every plan needs k >= 2 minibatches. NumPy only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .hvp import batched_loss_grad_hvp
from .. import validation as check
from .maml import _check, _positive_lr, gather


class TaylorTerms(NamedTuple):
    """Estimates on a meta-batch.

    avg_grad : (P,)               mean over tasks and minibatches of ḡ_i
    avg_grad_inner : (P,)         mean over tasks and ordered pairs i ≠ j of H̄_i ḡ_j
    grads : (n_tasks, k, P)       ḡ_i, every minibatch's gradient at θ
    """

    avg_grad: np.ndarray
    avg_grad_inner: np.ndarray
    grads: np.ndarray


def _grads_at_theta(spec, theta, X, Y, plan):
    n, k, _ = plan.shape
    G = np.empty((n, k, theta.shape[0]), dtype=theta.dtype)
    for i in range(k):
        _, G[:, i], _ = batched_loss_grad_hvp(spec, theta, gather(X, plan[:, i]), gather(Y, plan[:, i]), check_finite=False)
    return G


def taylor_terms(spec, theta, X, Y, plan) -> TaylorTerms:
    """AvgGrad and AvgGradInner estimated at θ from k >= 2 minibatches per task.

    AvgGradInner uses every ordered pair: (1 / k(k−1)) Σ_i H̄_i (Σ_{j≠i} ḡ_j), one HVP per
    minibatch, averaged over tasks (an unbiased estimate when the minibatches are independent).

    Parameters
    ----------
    spec : MLPSpec
    theta : ndarray, shape (P,)
    X, Y : ndarray, task data (n_tasks, n_points, ...)
    plan : ndarray of int, shape (n_tasks, k, batch), k >= 2

    Returns
    -------
    TaylorTerms
    """
    theta, X, Y, plan, _ = _check(spec, theta, X, Y, plan)
    n, k, _ = plan.shape
    if k < 2:
        raise ValueError(f"plan: AvgGradInner needs k >= 2 minibatches per task, got shape {plan.shape}")
    G = _grads_at_theta(spec, theta, X, Y, plan)          # (n, k, P)
    total = G.sum(axis=1)                                 # (n, P)
    inner = np.zeros(theta.shape[0], dtype=np.float64)
    for i in range(k):
        idx = plan[:, i]
        _, _, Hv = batched_loss_grad_hvp(spec, theta, gather(X, idx), gather(Y, idx), total - G[:, i], check_finite=False)
        inner += Hv.sum(axis=0)
    return TaylorTerms(G.mean(axis=(0, 1)), (inner / (n * k * (k - 1))).astype(theta.dtype), G)


def reptile_taylor(spec, theta, X, Y, plan, lr) -> np.ndarray:
    """Second-order Taylor prediction of each task's Reptile update (θ − φ_k)/α, shape (n_tasks, P).

    Σ_i ḡ_i − α Σ_{j<i} H̄_i ḡ_j; for k = 2 that is ḡ_1 + ḡ_2 − α·H̄_2·ḡ_1 (gradients and Hessian at θ,
    not along the inner path). The true update differs from it by O(α²).
    """
    theta, X, Y, plan, _ = _check(spec, theta, X, Y, plan)
    lr = _positive_lr(lr)
    G = _grads_at_theta(spec, theta, X, Y, plan)
    pred = G.sum(axis=1)
    before = np.zeros_like(pred)                          # Σ_{j<i} ḡ_j
    for i in range(plan.shape[1]):
        if i > 0:
            idx = plan[:, i]
            _, _, Hv = batched_loss_grad_hvp(spec, theta, gather(X, idx), gather(Y, idx), before, check_finite=False)
            pred -= lr * Hv
        before = before + G[:, i]
    return pred


def expected_directions(avg_grad: np.ndarray, avg_grad_inner: np.ndarray, lr: float, k: int) -> dict:
    """Leading-order expected meta-gradients of Reptile, FOMAML and MAML with k minibatches.

    Returns ``{"reptile": ..., "fomaml": ..., "maml": ...}``, each shaped like ``avg_grad``.
    (FOMAML and MAML: k−1 inner steps, outer loss on minibatch k.)
    """
    if k < 1:
        raise ValueError(f"k: expected an integer >= 1, got {k!r}")
    return {
        "reptile": k * avg_grad - lr * k * (k - 1) / 2 * avg_grad_inner,
        "fomaml": avg_grad - lr * (k - 1) * avg_grad_inner,
        "maml": avg_grad - 2 * lr * (k - 1) * avg_grad_inner,
    }


def combination_coefficients(coeffs, lr: float) -> tuple[float, float]:
    """Leading-order (a, b) with E[Σ_i c_i g_i] = a·AvgGrad + b·AvgGradInner + O(α²).

    E[g_i] = AvgGrad − α·(i−1)·AvgGradInner, so a = Σ c_i and b = −α Σ c_i (i−1). All ones
    gives Reptile's (k, −α k(k−1)/2); the last unit vector FOMAML's (1, −α(k−1)).
    """
    c = np.asarray(coeffs, dtype=np.float64)
    return float(c.sum()), float(-lr * (c * np.arange(c.size)).sum())


class Diagnosis(NamedTuple):
    """One outer iteration's numbers (all floats).

    avg_grad_norm, avg_grad_inner_norm : ‖AvgGrad‖, ‖AvgGradInner‖ estimated on the meta-batch
    update_norm : ‖d‖ of the meta-update direction d (θ moves along −d)
    cos_avg_grad, cos_avg_grad_inner : cosine of d with AvgGrad and with AvgGradInner
    coef_avg_grad, coef_avg_grad_inner : least-squares (a, b) in d ≈ a·AvgGrad + b·AvgGradInner
        (compare with :func:`combination_coefficients`)
    residual : ‖d − a·AvgGrad − b·AvgGradInner‖ / ‖d‖
    """

    avg_grad_norm: float
    avg_grad_inner_norm: float
    update_norm: float
    cos_avg_grad: float
    cos_avg_grad_inner: float
    coef_avg_grad: float
    coef_avg_grad_inner: float
    residual: float


def _cos(a, b) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def diagnose(spec, theta, X, Y, plan, direction: np.ndarray) -> Diagnosis:
    """Relate a meta-update direction (P,) to AvgGrad and AvgGradInner estimated at θ."""
    t = taylor_terms(spec, theta, X, Y, plan)
    direction = check.float_array("direction", direction, (("P", spec.n_params),), t.avg_grad.dtype, True)
    basis = np.stack([t.avg_grad, t.avg_grad_inner], axis=1).astype(np.float64)     # (P, 2)
    (a, b), *_ = np.linalg.lstsq(basis, direction.astype(np.float64), rcond=None)
    norm = float(np.linalg.norm(direction))
    residual = float(np.linalg.norm(direction - basis @ np.array([a, b]))) / norm if norm > 0 else 0.0
    return Diagnosis(float(np.linalg.norm(t.avg_grad)), float(np.linalg.norm(t.avg_grad_inner)), norm,
                     _cos(direction, t.avg_grad), _cos(direction, t.avg_grad_inner), float(a), float(b), residual)
