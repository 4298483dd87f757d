"""MAML, first-order MAML and FOMAML beside Reptile: meta-gradients through k inner SGD steps.

Contract
--------
For one task with inner minibatches i = 1..k (row i−1 of ``plan``) and a query batch q, SGD adapts θ
(the index convention of docs/notation.md):

    φ_0 = θ,    φ_i = φ_{i−1} − α ∇L_i(φ_{i−1})          i = 1 … k   (Reptile's inner loop)

and MAML (Finn, Abbeel & Levine 2017) follows the gradient of the query loss after adaptation:

    g_MAML = d L_q(φ_k) / dθ = (I − α H_1(φ_0)) ⋯ (I − α H_k(φ_{k−1})) ∇L_q(φ_k)

computed backwards, one Hessian-vector product per inner step (:mod:`minireptile.algorithms.hvp`, no
autograd): v ← ∇L_q(φ_k); for i = k … 1: v ← v − α H_i(φ_{i−1})·v. Dropping the Hessian terms
leaves first-order MAML, g = ∇L_q(φ_k).

FOMAML as openai/supervised-reptile runs it (``--foml``) is the first-order gradient where the
query is the *last* of k inner minibatches: k−1 steps, then the gradient at φ_{k−1} on minibatch k
(:func:`fomaml_gradient`). ``--foml-tail`` makes that last minibatch a separate one, disjoint
from the points of the first k−1 (``tasks.families.tail_plan`` draws such plans).

The outer optimizer for MAML is Adam on plain arrays (as the MAML paper), in
:func:`meta_train_maml`. :func:`inner_gradients` and :func:`combination_direction` give the
paper's §6.2 experiment: any linear combination Σ c_i g_i of the inner-loop gradients as the
meta-update (Σ g_i is Reptile with SGD, g_k is FOMAML, g_1 joint training).

Shapes: θ (P,); X (n_tasks, n_points, d_in); Y (n_tasks, n_points, d_out) float or
(n_tasks, n_points) int for "ce"; plan (n_tasks, k, batch) int64; query (n_tasks, q) int64.
Only SGD inner loops here (MAML's inner loop is plain gradient descent). Nothing random is drawn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from .. import reference
from .. import validation as check
from ..errors import DivergenceError
from ..optim import AdamState, InnerOptimizer
from .hvp import batched_loss_grad_hvp


class MetaGradient(NamedTuple):
    """Per-task meta-gradients.

    grad : ndarray, (n_tasks, P)   d L_q(φ_k)/dθ (MAML) or ∇L_q(φ_k) (first order)
    loss : ndarray, (n_tasks,)     query loss at φ_k (after adaptation)
    phi : ndarray, (n_tasks, P)    adapted parameters φ_k
    """

    grad: np.ndarray
    loss: np.ndarray
    phi: np.ndarray


def gather(A: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Per-task rows: ``A[i, idx[i]]`` for every task i.

    A (n_tasks, n_points, ...) and idx (n_tasks, b) int → (n_tasks, b, ...).
    """
    idx = np.asarray(idx)
    return np.take_along_axis(A, idx.reshape(idx.shape + (1,) * (A.ndim - 2)), axis=1)


def _check(spec, theta, X, Y, plan, query=None, min_steps: int = 0):
    """The arguments cleaned by :func:`minireptile.validation.algorithm_args` (indices in range, finite data)."""
    return check.algorithm_args(spec, theta, X, Y, plan, query, min_steps=min_steps)


def _positive_lr(lr) -> float:
    return check.lr_arg(lr)


def adapt_trajectory(spec, theta, X, Y, plan, lr, backend=None) -> list[np.ndarray]:
    """φ_0 … φ_k of k inner SGD steps, each (n_tasks, P); φ_0 is θ broadcast.

    The same inner loop as Reptile's, run by ``backend.inner_loop`` one step at a time so that
    every φ_s is kept (the HVPs need them). ``backend`` None means the NumPy reference.
    """
    theta, X, Y, plan, _ = _check(spec, theta, X, Y, plan)
    return _adapt_trajectory(spec, theta, X, Y, plan, _positive_lr(lr), backend)


def _adapt_trajectory(spec, theta, X, Y, plan, lr, backend):
    inner_loop = reference.inner_loop if backend is None else backend.inner_loop
    opt = InnerOptimizer("sgd", lr)
    phis = [np.broadcast_to(theta, (X.shape[0], theta.shape[0]))]
    for s in range(plan.shape[1]):
        step = np.ascontiguousarray(plan[:, s:s + 1], dtype=np.int64)       # (n_tasks, 1, batch)
        with np.errstate(over="ignore", invalid="ignore"):
            phi = inner_loop(spec, np.ascontiguousarray(phis[-1]), X, Y, step, opt, check_finite=False).phi
        if not np.isfinite(phi).all():
            raise DivergenceError(f"the inner loop diverged at step {s + 1} (φ became NaN or inf); lower the inner "
                                  f"learning rate (lr={lr:g})")
        phis.append(phi)
    return phis


def maml_gradient(spec, theta, X, Y, plan, query, lr, *, first_order: bool = False, backend=None) -> MetaGradient:
    """Per-task MAML meta-gradient through k inner SGD steps (exact, by Hessian-vector products).

    Parameters
    ----------
    spec : MLPSpec
    theta : ndarray, shape (P,)
    X : ndarray, shape (n_tasks, n_points, d_in)
    Y : ndarray, shape (n_tasks, n_points, d_out) float, or (n_tasks, n_points) int for "ce"
    plan : ndarray of int, shape (n_tasks, k, batch)
        Support minibatch of each inner step (k = 0 allowed: the query gradient at θ).
    query : ndarray of int, shape (n_tasks, q)
        Query points of each task (the outer loss).
    lr : float
        Inner step size α.
    first_order : bool
        Drop the Hessian terms: the gradient is ∇L_q(φ_k) (first-order MAML).
    backend : Backend or None
        Runs the forward inner loop (None: the NumPy reference).

    Returns
    -------
    MetaGradient
        ``grad`` (n_tasks, P), ``loss`` (n_tasks,) query loss at φ_k, ``phi`` (n_tasks, P).
    """
    theta, X, Y, plan, query = _check(spec, theta, X, Y, plan, query)
    return _maml_gradient(spec, theta, X, Y, plan, query, _positive_lr(lr), first_order, backend)


def _maml_gradient(spec, theta, X, Y, plan, query, lr, first_order, backend) -> MetaGradient:
    """:func:`maml_gradient` on checked arguments; DivergenceError if any φ or gradient is not finite."""
    phis = _adapt_trajectory(spec, theta, X, Y, plan, lr, backend)
    with np.errstate(over="ignore", invalid="ignore"):
        loss_q, v, _ = batched_loss_grad_hvp(spec, phis[-1], gather(X, query), gather(Y, query), check_finite=False)
        if not first_order:
            for s in range(plan.shape[1] - 1, -1, -1):   # v ← (I − α H_{s+1}(φ_s)) v
                idx = plan[:, s]
                _, _, Hv = batched_loss_grad_hvp(spec, phis[s], gather(X, idx), gather(Y, idx), v, check_finite=False)
                v = v - lr * Hv
    if not (np.isfinite(v).all() and np.isfinite(loss_q).all()):
        raise DivergenceError(f"the meta-gradient is NaN or inf; lower the inner learning rate (lr={lr:g})")
    return MetaGradient(v, loss_q, np.ascontiguousarray(phis[-1]))


def fomaml_gradient(spec, theta, X, Y, plan, lr, backend=None) -> MetaGradient:
    """FOMAML as openai/supervised-reptile: the gradient at φ_{k−1} on the last minibatch.

    k−1 SGD steps on ``plan[:, :-1]``, then ∇L_k(φ_{k−1}) on ``plan[:, -1]``; supervised-reptile's
    update ``φ_k − φ_{k−1}`` is −α times this. With a plan whose last minibatch is disjoint from the
    others (``tasks.families.tail_plan``) this is ``--foml-tail``.

    Parameters
    ----------
    plan : ndarray of int, shape (n_tasks, k, batch), k >= 1
    (others as :func:`maml_gradient`)

    Returns
    -------
    MetaGradient
        ``loss`` is the last minibatch's loss at φ_{k−1}; ``phi`` is φ_{k−1}.
    """
    theta, X, Y, plan, _ = _check(spec, theta, X, Y, plan, min_steps=1)
    return _maml_gradient(spec, theta, X, Y, plan[:, :-1], plan[:, -1], _positive_lr(lr), True, backend)


# ---------------------------------------------------------------------------------------------
# the outer loop: Adam on plain arrays
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MAMLConfig:
    """Hyperparameters of MAML / first-order MAML training (defaults: the MAML paper's sine).

    Parameters
    ----------
    iters : int
        Outer iterations (MAML paper: 70000).
    meta_batch : int
        Tasks per outer iteration (25).
    inner_lr : float
        Inner SGD step size α (0.01).
    first_order : bool
        First-order MAML (no Hessian terms).
    outer_lr, beta1, beta2, eps : float
        Outer Adam (TensorFlow's defaults, lr 1e-3, as cbfinn/maml).
    """

    iters: int = 70000
    meta_batch: int = 25
    inner_lr: float = 0.01
    first_order: bool = False
    outer_lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        for name in ("iters", "meta_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        self.outer_optimizer()  # validates outer_lr, beta1, beta2, eps
        _positive_lr(self.inner_lr)

    def outer_optimizer(self) -> InnerOptimizer:
        """The outer Adam's settings, in the record ``reference.adam_step`` reads."""
        return InnerOptimizer("adam", self.outer_lr, self.beta1, self.beta2, self.eps)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in
                ("iters", "meta_batch", "inner_lr", "first_order", "outer_lr", "beta1", "beta2", "eps")}


def adam_outer_step(theta: np.ndarray, grad: np.ndarray, state: AdamState | None,
                    config: MAMLConfig) -> tuple[np.ndarray, AdamState]:
    """One outer Adam step on the mean meta-gradient; returns new θ and state (inputs untouched).

    theta (P,), grad (P,) — already averaged over the meta-batch.
    """
    theta = theta.copy()
    if state is None:
        state = AdamState(np.zeros_like(theta), np.zeros_like(theta), 0)
    m, v, t = state.m.copy(), state.v.copy(), state.t + 1
    reference.adam_step(theta, grad, m, v, t, config.outer_optimizer())
    return theta, AdamState(m, v, t)


MAMLCallback = Callable[[int, np.ndarray, np.ndarray], None]


def meta_train_maml(spec, theta, sample_block, block_iters: int, config: MAMLConfig, backend=None, *,
                    start: int = 0, stop: int | None = None, state: AdamState | None = None,
                    callback: MAMLCallback | None = None):
    """Train θ with MAML (or first-order MAML) and outer Adam, iterations [start, stop).

    Parameters
    ----------
    spec : MLPSpec
    theta : ndarray, shape (P,)
    sample_block : callable
        ``sample_block(b)`` → X (block_iters, n_tasks, n_points, d_in), Y, plans
        (block_iters, n_tasks, k, batch), queries (block_iters, n_tasks, q); depends on b only.
    block_iters : int
    config : MAMLConfig
    backend : Backend or None
        Runs the forward inner loops (None: the NumPy reference).
    start, stop : int
    state : AdamState or None
        Outer Adam state at ``start``.
    callback : callable, optional
        ``callback(it, theta, query_losses)`` after each block; ``query_losses`` (iters in block,)
        is the mean post-adaptation query loss of each iteration.

    Returns
    -------
    theta : ndarray, shape (P,)
    state : AdamState
    """
    stop = config.iters if stop is None else stop
    it = start
    while it < stop:
        b, j0 = divmod(it, block_iters)
        X, Y, plans, queries = sample_block(b)
        j1 = min(block_iters, j0 + stop - it)
        losses = np.empty(j1 - j0)
        for j in range(j0, j1):
            done = it + j - j0
            try:
                mg = maml_gradient(spec, theta, X[j], Y[j], plans[j], queries[j], config.inner_lr,
                                   first_order=config.first_order, backend=backend)
            except DivergenceError as exc:
                raise DivergenceError(f"theta became non-finite at iteration {done} ({exc})", done, theta) from None
            new_theta, state = adam_outer_step(theta, mg.grad.mean(axis=0), state, config)
            if not np.isfinite(new_theta).all():
                raise DivergenceError(f"theta became non-finite at iteration {done}; lower outer_lr or inner_lr",
                                      done, theta)
            theta = new_theta
            losses[j - j0] = mg.loss.mean()
        it += j1 - j0
        if callback is not None:
            callback(it, theta, losses)
    return theta, state


# ---------------------------------------------------------------------------------------------
# gradient combinations (the Reptile paper's §6.2)
# ---------------------------------------------------------------------------------------------
def inner_gradients(spec, theta, X, Y, plan, lr):
    """The k inner-loop gradients g_1 … g_k of SGD along its own trajectory.

    g_s = ∇L_s(φ_{s−1}) on minibatch s, φ_s = φ_{s−1} − α g_s, φ_0 = θ (so θ − α Σ g_s = φ_k, the
    point Reptile moves towards). Task-batched NumPy (:func:`hvp.batched_loss_grad_hvp`).

    Returns
    -------
    G : ndarray, shape (n_tasks, k, P)
    losses : ndarray, shape (n_tasks, k)   minibatch loss before each step
    """
    theta, X, Y, plan, _ = _check(spec, theta, X, Y, plan)
    lr = _positive_lr(lr)
    n, k, _ = plan.shape
    G = np.empty((n, k, theta.shape[0]), dtype=theta.dtype)
    losses = np.empty((n, k))
    phi = np.broadcast_to(theta, (n, theta.shape[0]))
    for s in range(k):
        idx = plan[:, s]
        losses[:, s], G[:, s], _ = batched_loss_grad_hvp(spec, phi, gather(X, idx), gather(Y, idx), check_finite=False)
        phi = phi - lr * G[:, s]
    return G, losses


_TERM = re.compile(r"^g(\d+)$")


def parse_combination(text: str, k: int) -> np.ndarray:
    """Coefficients c (k,) of a combination written like the paper: ``g1``, ``g1+g2``, ``1/2(g1+g2)``.

    Grammar: ``[scale](term+term+...)`` or ``term+term+...``; a term is ``g<i>`` (1-based,
    i <= k) or ``sum`` (all) or ``last`` (g_k); scale is a number or a fraction ``a/b``.
    """
    src = text.replace(" ", "").replace("*", "")
    scale = 1.0
    m = re.match(r"^([0-9.]+(?:/[0-9.]+)?)\((.*)\)$", src)
    if m:
        num, _, den = m.group(1).partition("/")
        try:
            scale = float(num) / (float(den) if den else 1.0)
        except ValueError:
            raise ValueError(f"combination: bad scale in {text!r}") from None
        src = m.group(2)
    coeffs = np.zeros(k)
    for term in src.split("+"):
        if term == "sum":
            coeffs += 1
            continue
        if term == "last":
            coeffs[k - 1] += 1
            continue
        t = _TERM.match(term)
        if not t or not (1 <= int(t.group(1)) <= k):
            raise ValueError(f"combination: expected terms g1..g{k}, 'sum' or 'last', got {text!r}")
        coeffs[int(t.group(1)) - 1] += 1
    return scale * coeffs


def combination_direction(G: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """Meta-update direction d = mean over tasks of Σ_i c_i g_i; G (n_tasks, k, P), c (k,) → (P,)."""
    return np.einsum("k,nkp->p", np.asarray(coeffs, dtype=G.dtype), G) / G.shape[0]
