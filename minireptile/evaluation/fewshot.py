"""Few-shot classification evaluation: adapt on each episode's support set, score its query set.

Contract
--------
For ``n`` held-out episodes (:mod:`minireptile.tasks.episodes`) and a start point — the meta-learned θ
(P,), or one freshly initialised θ per episode (n, P) for the random-init baseline — run the inner
loop on each episode's support set with the backend and, after each scored number of steps
(every step 0, 1, …, S, or a sparser :func:`score_schedule`; one backend call per interval, the
Adam state handed on), record each episode's query loss (softmax cross-entropy) and query
accuracy. The pixel
nearest-neighbour baseline labels each query example with the label of the closest support
example in Euclidean distance. Per-episode numbers are averaged with Student-t 95% confidence
intervals (:func:`minireptile.evaluation.regression.mean_ci95`).

Shapes (n = episodes, s = ways*shots support points, q = ways*queries query points):

    Xs (n, s, d_in)  Ys (n, s) int64      support set, the inner loop's data
    Xq (n, q, d_in)  Yq (n, q) int64      query set, only scored
    plan (n, S, batch) int64              the inner loop's minibatches, made on the host

Episodes are processed ``chunk`` at a time so that φ and the Adam moments, (chunk, P) each, stay
small; they are allocated once and adapted in place (the backends' ``inner_loop(..., out=...)``)
at every scoring point and for every chunk. Scoring uses :func:`query_scores`, a NumPy forward
pass vectorised over episodes (checked against :func:`minireptile.reference.forward` in the
tests). Nothing here draws random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from .. import validation as check
from ..errors import DivergenceError
from ..mlp import MLPSpec
from ..optim import AdamState, InnerOptimizer
from ..tasks.episodes import gather
from .regression import mean_ci95


def query_scores(spec: MLPSpec, phi: np.ndarray, X: np.ndarray, Y: np.ndarray):
    """Cross-entropy loss and accuracy of each task's network on its own points.

    Parameters
    ----------
    spec : MLPSpec
        loss must be "ce".
    phi : ndarray, shape (n, P)
        One parameter vector per task.
    X : ndarray, shape (n, q, d_in)
    Y : ndarray of int, shape (n, q)
        Labels in [0, d_out).

    Returns
    -------
    loss : ndarray of float64, shape (n,)
        Mean softmax cross-entropy over the q points.
    accuracy : ndarray of float64, shape (n,)
        Fraction of points whose arg-max logit (first one on ties) is the label.
    """
    phi, X, Y = check.scores_args(spec, phi, X, Y)
    return _query_scores(spec, phi, X, Y)


def _query_scores(spec: MLPSpec, phi: np.ndarray, X: np.ndarray, Y: np.ndarray):
    # the forward pass of reference.forward with the points as columns: z (n, out, q) = W · aᵀ + b,
    # so every product reads W (out, in) as stored and the activations stay contiguous
    n, q = Y.shape
    a = X.transpose(0, 2, 1)                                        # (n, d_in, q), a view
    layers = spec.offsets_array()
    for layer, (w_off, b_off, fan_in, fan_out) in enumerate(layers):
        W = phi[:, w_off:b_off].reshape(n, fan_out, fan_in)         # (n, out, in), a view
        b = phi[:, b_off:b_off + fan_out]                           # (n, out)
        a = np.matmul(W, a)                                         # (n, out, q)
        a += b[:, :, None]
        if layer < len(layers) - 1:
            if spec.activation == "tanh":
                np.tanh(a, out=a)
            else:
                np.maximum(a, 0, out=a)
    logits = a.transpose(0, 2, 1).astype(np.float64)                # (n, q, C)
    shifted = logits - logits.max(axis=2, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=2, keepdims=True))
    loss = -np.take_along_axis(logp, Y[:, :, None], axis=2)[:, :, 0].mean(axis=1)
    accuracy = (logits.argmax(axis=2) == Y).mean(axis=1)
    return loss, accuracy


def nearest_neighbour_accuracy(Xs: np.ndarray, Ys: np.ndarray, Xq: np.ndarray, Yq: np.ndarray) -> np.ndarray:
    """Pixel 1-nearest-neighbour baseline: query accuracy of each episode.

    Parameters
    ----------
    Xs : ndarray, shape (n, s, d_in)   support inputs
    Ys : ndarray of int, shape (n, s)  support labels
    Xq : ndarray, shape (n, q, d_in)   query inputs
    Yq : ndarray of int, shape (n, q)  query labels

    Returns
    -------
    ndarray of float64, shape (n,)
        Fraction of query points whose closest support point (squared Euclidean distance,
        computed in float64; first one on ties) has the same label.
    """
    return _nearest_neighbour_accuracy(*check.neighbour_args(Xs, Ys, Xq, Yq))


def _nearest_neighbour_accuracy(Xs, Ys, Xq, Yq) -> np.ndarray:
    Xs = Xs.astype(np.float64)
    Xq = Xq.astype(np.float64)
    d2 = ((Xq * Xq).sum(axis=2)[:, :, None] - 2 * np.matmul(Xq, Xs.transpose(0, 2, 1))
          + (Xs * Xs).sum(axis=2)[:, None, :])                       # (n, q, s)
    nearest = d2.argmin(axis=2)                                      # (n, q)
    return (np.take_along_axis(Ys, nearest, axis=1) == Yq).mean(axis=1)


@dataclass(frozen=True)
class FewShotResult:
    """Query loss and accuracy of every episode after each scored number of inner steps.

    steps : tuple of int, (K,)              increasing step counts, e.g. (0, 1, 2, …, S)
    loss, accuracy : ndarray of float64, shape (n, K)
    """

    steps: tuple[int, ...]
    loss: np.ndarray
    accuracy: np.ndarray

    def curve(self, which: str = "accuracy"):
        """Mean and 95% CI half-width over episodes at each scored step: two arrays of shape (K,)."""
        return mean_ci95(getattr(self, which), axis=0)

    def final(self, which: str = "accuracy"):
        """Mean and 95% CI half-width after the last scored step: two floats."""
        mean, ci = mean_ci95(getattr(self, which)[:, -1])
        return float(mean), float(ci)


def score_schedule(S: int, every_step: bool = False) -> tuple[int, ...]:
    """Step counts to score at: all of 0 … S, or 0, 1, 2, 3, 5, 10, 15, 20, 30, 40, 50, 75, 100, …, S.

    Each scored point costs one backend call (and one forward pass on the query set), so the
    sparse default is cheaper than ``every_step`` for long adaptations; it always includes S.
    """
    if every_step:
        return tuple(range(S + 1))
    marks = [0, 1, 2, 3, 5, 10, 15, 20, 30, 40, 50, 75]
    marks += list(range(100, S + 1, 50))
    return tuple(sorted({m for m in marks if m <= S} | {S}))


def adapt_and_classify(spec: MLPSpec, theta, Xs, Ys, Xq, Yq, plan, opt: InnerOptimizer, backend,
                       steps=None, state: AdamState | None = None) -> FewShotResult:
    """Adapt from ``theta`` on each episode's support set; score the query set along the way.

    Parameters
    ----------
    spec : MLPSpec
        loss "ce", d_out = ways.
    theta : ndarray, shape (P,) or (n, P)
        Shared start point, or one per episode.
    Xs, Ys, Xq, Yq : see the module docstring
    plan : ndarray of int64, shape (n, S, batch)
    opt : InnerOptimizer
    backend : Backend
    steps : sequence of int, optional
        Increasing step counts in [0, S] at which to score (default: every step 0 … S). The
        inner loop runs in one backend call per interval, Adam state handed on, so the result
        equals scoring after single ``inner_loop`` calls of that many steps.
    state : AdamState or None
        Adam moments every episode starts from (``m``, ``v`` of shape (P,), step count ``t``): the
        carried state of a meta-training run with ``state_policy="carry"``, as
        openai/supervised-reptile evaluates. None: zero moments.

    Returns
    -------
    FewShotResult

    Raises
    ------
    DivergenceError
        Adapting produced a NaN or infinite θ or query loss (never a silent NaN in the result).
    """
    theta, Xs, Ys, Xq, Yq, plan = check.classify_args(spec, theta, Xs, Ys, Xq, Yq, plan)
    n, S = plan.shape[0], plan.shape[1]
    steps = _steps_arg(steps, S)
    return _adapt_and_classify(spec, theta, Xs, Ys, Xq, Yq, plan, opt, backend, steps, state,
                               _buffers(n, spec.n_params, Xs.dtype, opt))


def _steps_arg(steps, S: int) -> tuple[int, ...]:
    steps = tuple(range(S + 1)) if steps is None else tuple(int(k) for k in steps)
    if not steps or steps[0] < 0 or steps[-1] > S or any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"steps: expected increasing step counts in [0, {S}], got {steps}")
    return steps


def _buffers(n: int, P: int, dtype, opt: InnerOptimizer) -> tuple:
    """φ and, for Adam, its moments: (n, P) arrays the inner loop adapts in place, call after call."""
    return tuple(np.empty((n, P), dtype) for _ in range(3 if opt.name == "adam" else 1))


def _adapt_and_classify(spec, theta, Xs, Ys, Xq, Yq, plan, opt, backend, steps, state, buffers) -> FewShotResult:
    """:func:`adapt_and_classify` on checked arguments, adapting in ``buffers`` ((N, P) arrays, N >= n:
    the first n rows are used), so that one allocation serves every backend call of a group."""
    n = plan.shape[0]
    out = tuple(b[:n] for b in buffers)
    loss = np.empty((n, len(steps)))
    accuracy = np.empty((n, len(steps)))
    phi = out[0]
    phi[...] = theta
    done = 0
    for j, target in enumerate(steps):
        if target > done:
            # θ and the episodes were checked above, so the backend need not scan (n, P) arrays for NaN
            # again at each scoring point; φ and the Adam moments are adapted in place, in the same
            # memory at every call
            with np.errstate(over="ignore", invalid="ignore"):
                res = backend.inner_loop(spec, phi, Xs, Ys, np.ascontiguousarray(plan[:, done:target]), opt, state,
                                         check_finite=False, out=out)
            phi, state, done = res.phi, res.state, target
        with np.errstate(over="ignore", invalid="ignore"):
            loss[:, j], accuracy[:, j] = _query_scores(spec, phi, Xq, Yq)
        # a NaN or inf in φ stays there (θ − lr·step keeps an inf, NaN spreads), so scanning the
        # (n, P) φ once, after the last step, finds any that a ReLU hid from the query loss
        if not (np.isfinite(loss[:, j]).all() and (j < len(steps) - 1 or np.isfinite(phi).all())):
            raise DivergenceError(f"evaluation diverged: adapting to a held-out episode gave a NaN or infinite loss "
                                  f"or θ within {target} inner steps (inner lr {opt.lr:g}); lower the inner "
                                  "learning rate")
    return FewShotResult(steps, loss, accuracy)


def evaluate_episodes(spec: MLPSpec, start, vectors: np.ndarray, episodes, plan: np.ndarray,
                      opt: InnerOptimizer, backend, steps=None, state: AdamState | None = None,
                      chunk: int = 100, callback=None) -> FewShotResult:
    """:func:`adapt_and_classify` over many episodes of one data set, ``chunk`` at a time.

    Parameters
    ----------
    spec : MLPSpec
    start : ndarray of shape (P,), or callable
        The shared start θ, or ``start(i, j)`` returning the start points of episodes i … j-1 as an
        (j-i, P) array (the random-init baseline).
    vectors : ndarray, shape (n_examples, d_in)
        The meta-test examples the episodes index.
    episodes : Episodes
    plan : ndarray of int64, shape (n, S, batch)
    opt : InnerOptimizer
    backend : Backend
    steps : sequence of int, optional
        Step counts to score at (default every step; see :func:`score_schedule`).
    state : AdamState or None
        Adam moments (P,) every episode starts from (see :func:`adapt_and_classify`).
    chunk : int
        Episodes per backend call.
    callback : callable, optional
        ``callback(n)`` after each chunk of ``n`` episodes (progress reporting).

    Returns
    -------
    FewShotResult
    """
    parts = []
    buffers = None
    for i in range(0, episodes.n, chunk):
        j = min(i + chunk, episodes.n)
        ep = episodes.slice(i, j)
        theta = start(i, j) if callable(start) else start
        theta, Xs, Ys, Xq, Yq, plan_ij = check.classify_args(spec, theta, gather(vectors, ep.support),
                                                             ep.support_labels, gather(vectors, ep.query),
                                                             ep.query_labels, plan[i:j])
        if buffers is None or buffers[0].dtype != Xs.dtype:  # φ and the moments of a whole chunk, once
            buffers = _buffers(j - i, spec.n_params, Xs.dtype, opt)
        parts.append(_adapt_and_classify(spec, theta, Xs, Ys, Xq, Yq, plan_ij, opt, backend,
                                         _steps_arg(steps, plan_ij.shape[1]), state, buffers))
        if callback is not None:
            callback(j - i)
    return FewShotResult(parts[0].steps, np.concatenate([p.loss for p in parts]),
                         np.concatenate([p.accuracy for p in parts]))


def nearest_neighbour_episodes(vectors: np.ndarray, episodes, chunk: int = 500) -> np.ndarray:
    """:func:`nearest_neighbour_accuracy` over many episodes: float64 (n,)."""
    out = []
    for i in range(0, episodes.n, chunk):
        ep = episodes.slice(i, min(i + chunk, episodes.n))
        out.append(_nearest_neighbour_accuracy(gather(vectors, ep.support), ep.support_labels,
                                              gather(vectors, ep.query), ep.query_labels))
    return np.concatenate(out)

