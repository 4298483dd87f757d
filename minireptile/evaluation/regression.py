"""Evaluation: adapt an initialisation on held-out tasks and report losses with 95% CIs.

Contract
--------
Given θ, a fixed set of held-out tasks and a backend, adapt every task with full-batch inner
steps and record the loss on each task's evaluation points after 0, 1, 2, 4, ... steps. Intervals
are Student-t 95% confidence intervals of the mean over tasks. This module only reads θ; it is
the last stage of the pipeline and nothing upstream imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import reference
from .. import validation as check
from ..errors import DivergenceError
from ..optim import AdamState, InnerOptimizer

EVAL_STEPS = (0, 1, 2, 4, 8, 16, 32)


def mean_ci95(values: np.ndarray, axis: int = 0):
    """Mean and half-width of the Student-t 95% confidence interval along ``axis``.

    Parameters
    ----------
    values : ndarray
        Samples along ``axis`` (at least 2).

    Returns
    -------
    mean, half_width : ndarray
        ``mean ± half_width`` is the interval.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[axis]
    if n < 2:
        raise ValueError(f"values: need at least 2 samples along axis {axis}, got {n}")
    from scipy import stats  # imported here: scipy.stats takes a second to import, and `minireptile` should not

    mean = values.mean(axis=axis)
    sem = values.std(axis=axis, ddof=1) / np.sqrt(n)
    return mean, stats.t.ppf(0.975, n - 1) * sem


@dataclass(frozen=True)
class EvalResult:
    """Per-task losses after each number of adaptation steps.

    steps : tuple of int                 (S,)
    losses : ndarray, (n_tasks, S)       loss on each task's evaluation points
    mean, ci95 : ndarray, (S,)           mean over tasks and 95% CI half-width
    """

    steps: tuple[int, ...]
    losses: np.ndarray
    mean: np.ndarray
    ci95: np.ndarray


def adapt_and_score(spec, theta, X, Y, X_eval, Y_eval, opt: InnerOptimizer, backend,
                    steps=EVAL_STEPS, *, check_finite: bool = True) -> EvalResult:
    """Adapt θ on each task with full-batch steps; score on that task's evaluation points.

    Parameters
    ----------
    spec : MLPSpec
    theta : ndarray, shape (P,)
    X, Y : ndarray, shape (n_tasks, shots, d_in) and the matching targets
        Adaptation data; every step uses all ``shots`` points.
    X_eval, Y_eval : ndarray, shape (n_tasks, n_eval, d_in) and the matching targets
        Where the loss is measured.
    opt : InnerOptimizer
        Inner optimizer (Adam state restarts per task whatever its policy).
    backend : Backend
    steps : sequence of int
        Increasing step counts at which to score (0 = θ itself).
    check_finite : bool
        Reject NaN/inf in θ and the task data (default).

    Returns
    -------
    EvalResult

    Raises
    ------
    DivergenceError
        Adapting made a task's loss NaN or inf (the inner learning rate is too large for θ).
    """
    theta, X, Y, X_eval, Y_eval, steps = check.evaluate_args(spec, theta, X, Y, X_eval, Y_eval, opt, backend,
                                                             steps, check_finite)
    n_tasks, shots = X.shape[0], X.shape[1]
    phi = np.empty((n_tasks, theta.shape[0]), dtype=theta.dtype)
    phi[...] = theta
    state = None
    done = 0
    losses = np.empty((n_tasks, len(steps)))
    for j, target in enumerate(steps):
        k = target - done
        if k > 0:
            plan = np.broadcast_to(np.arange(shots, dtype=np.int64), (n_tasks, k, shots)).copy()
            res = backend.inner_loop(spec, phi, X, Y, plan, opt, state, check_finite=False)
            phi = res.phi
            state = res.state
            done = target
        for i in range(n_tasks):
            losses[i, j] = reference.loss(spec, phi[i], X_eval[i], Y_eval[i], check_finite=False)
        if not np.isfinite(losses[:, j]).all():
            n_bad = int((~np.isfinite(losses[:, j])).sum())
            raise DivergenceError(f"evaluation: after {target} adaptation steps the loss is NaN or inf on {n_bad} "
                                  f"of {n_tasks} tasks; lower the inner learning rate (lr={opt.lr:g})",
                                  theta=theta)
    mean, ci = mean_ci95(losses, axis=0)
    return EvalResult(steps, losses, mean, ci)


def evaluate_sine(spec, theta, tasks, opt: InnerOptimizer, backend, steps=EVAL_STEPS) -> EvalResult:
    """MSE on the grid of held-out sine tasks after adapting on their shots.

    Parameters
    ----------
    spec : MLPSpec
    theta : ndarray, shape (P,)
    tasks : SineEvalTasks
    opt : InnerOptimizer
    backend : Backend
    steps : sequence of int

    Returns
    -------
    EvalResult
    """
    tasks = check.sine_tasks_arg(tasks)
    return adapt_and_score(spec, theta, tasks.x_shots, tasks.y_shots, tasks.x_grid, tasks.y_grid,
                           opt, backend, steps)


def adapted_predictions(spec, theta, x_shots, y_shots, x_plot, opt, backend, steps):
    """Predictions of one task's adapted network after each step count (for plots).

    Parameters
    ----------
    x_shots, y_shots : ndarray, shape (shots, 1)
    x_plot : ndarray, shape (m, 1)
    steps : sequence of int, increasing

    Returns
    -------
    ndarray, shape (len(steps), m)
    """
    phi = theta[None, :].copy()
    state: AdamState | None = None
    done = 0
    out = []
    shots = x_shots.shape[0]
    for target in steps:
        k = target - done
        if k > 0:
            plan = np.broadcast_to(np.arange(shots, dtype=np.int64), (1, k, shots)).copy()
            res = backend.inner_loop(spec, phi, x_shots[None], y_shots[None], plan, opt, state)
            phi, state, done = res.phi, res.state, target
        out.append(reference.forward(spec, phi[0], x_plot)[:, 0])
    return np.array(out)
