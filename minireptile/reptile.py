"""Reptile's outer loop: the ε schedule, the one-line outer update, and the training driver.

Contract
--------
Reptile (Nichol, Achiam & Schulman 2018) moves the initialisation θ towards the parameters φ^(τ)
that k inner steps reach on each sampled task τ (the notation of docs/notation.md):

    θ ← θ + ε · (mean_τ φ^(τ) − θ)          (``reptile_update``)
    ε_t = ε0 + (ε_final − ε0) · t / T        (``epsilon_schedule``, t = 0 … T−1)

With one task per step this is the paper's serial algorithm; with n tasks, the batched one.
openai/supervised-reptile's ``interpolate_vars(old, new, ε)`` is this same line.

The driver :func:`meta_train` pulls blocks of pre-sampled tasks (host side), hands a chunk of
outer iterations to the backend's ``train_chunk`` (one compiled call on fast backends; one round of
Dask tasks per iteration on the distributed meta-batch, whose workers sample the tasks themselves)
and reports to a callback between chunks. It draws no random numbers itself.

It is also the divergence guard: a chunk whose per-iteration losses or final θ are not finite is
replayed from its start θ up to the bad iteration (deterministically: a chunk's result does not
depend on where the chunk starts or ends) and :class:`~minireptile.errors.DivergenceError` is raised
with that iteration and the last finite θ.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from . import validation as check
from .config import ReptileConfig
from .errors import DivergenceError
from .optim import AdamState, InnerOptimizer


def epsilon_schedule(iteration, n_iters: int, eps0: float, eps_final: float = 0.0):
    """Linearly annealed outer step size.

    Parameters
    ----------
    iteration : int or ndarray of int
        0-based outer iteration(s).
    n_iters : int
        Length of the whole run (the schedule is fixed by it, also when a run is resumed).
    eps0, eps_final : float
        ε at iteration 0 and the value approached at ``n_iters``.

    Returns
    -------
    float or ndarray of float64
    """
    n_iters = check.count("n_iters", n_iters)
    return eps0 + (eps_final - eps0) * (np.asarray(iteration, dtype=np.float64) / n_iters)


def reptile_update(theta: np.ndarray, phi: np.ndarray, eps: float, *, check_finite: bool = True) -> np.ndarray:
    """The Reptile outer update θ + ε·(mean_τ φ^(τ) − θ), the mean over the meta-batch's tasks τ.

    Parameters
    ----------
    theta : ndarray, shape (P,)
    phi : ndarray, shape (n_tasks, P)
        Adapted parameters of the meta-batch's tasks.
    eps : float
        Outer step size, finite and >= 0; rounded to θ's dtype first so float32 stays float32.
    check_finite : bool
        Reject NaN/inf in θ and φ (default).

    Returns
    -------
    ndarray, shape (P,), new θ (the input is not modified).
    """
    theta, phi, eps = check.update_args(theta, phi, eps, check_finite)
    return theta + eps * (phi.mean(axis=0) - theta)


def carry_state(state: AdamState | None, opt: InnerOptimizer) -> AdamState | None:
    """Adam state handed to the next outer step: mean moments over tasks ('carry') or None."""
    if state is None or opt.name != "adam" or opt.state_policy != "carry":
        return None
    m = state.m if state.m.ndim == 1 else state.m.mean(axis=0)
    v = state.v if state.v.ndim == 1 else state.v.mean(axis=0)
    return AdamState(m, v, int(state.t))


def train_chunk_generic(inner_loop, spec, theta, X, Y, plans, eps, opt, state=None):
    """Run ``len(eps)`` outer iterations with a backend's ``inner_loop`` and the NumPy update.

    Parameters
    ----------
    inner_loop : callable
        A backend's inner loop (see :func:`minireptile.reference.inner_loop`).
    spec : MLPSpec
    theta : ndarray, shape (P,)
    X : ndarray, shape (iters, n_tasks, n_points, d_in)
    Y : ndarray, shape (iters, n_tasks, n_points, d_out) float, or (iters, n_tasks, n_points) int
    plans : ndarray of int, shape (iters, n_tasks, steps, batch)
    eps : ndarray of float, shape (iters,)
    opt : InnerOptimizer
    state : AdamState or None
        Carried Adam moments (policy 'carry'), else None.

    Returns
    -------
    theta : ndarray, shape (P,)
    losses : ndarray, shape (iters,), mean inner training loss of each outer iteration
    state : AdamState or None

    The chunk's arguments are validated by the backend wrapper (:mod:`minireptile.backends`).
    The chunk stops at the first iteration whose loss, new θ or carried state is not finite; the
    losses of that iteration and of the ones not run are NaN.
    """
    losses = np.full(len(eps), np.nan, dtype=np.float64)
    for j in range(len(eps)):
        res = inner_loop(spec, theta, X[j], Y[j], plans[j], opt, state)
        theta = reptile_update(theta, res.phi, eps[j], check_finite=False)
        state = carry_state(res.state, opt)
        losses[j] = res.loss.mean()
        if not (np.isfinite(losses[j]) and _finite(theta, state)):
            losses[j] = np.nan
            break
    return theta, losses, state


def _finite(theta: np.ndarray, state: AdamState | None) -> bool:
    """θ (and the carried Adam moments, if any) hold only finite numbers."""
    ok = bool(np.isfinite(theta).all())
    if ok and state is not None:
        ok = bool(np.isfinite(state.m).all() and np.isfinite(state.v).all())
    return ok


ChunkCallback = Callable[[int, np.ndarray, np.ndarray, "AdamState | None"], "bool | None"]


def meta_train(
    spec,
    theta: np.ndarray,
    sample_block: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray]],
    block_iters: int,
    config: ReptileConfig,
    backend,
    *,
    start: int = 0,
    stop: int | None = None,
    state: AdamState | None = None,
    callback: ChunkCallback | None = None,
    chunk_iters: int | None = None,
    check_finite: bool = True,
    chunk_seconds: float | None = None,
):
    """Meta-train θ from iteration ``start`` up to ``stop`` (default ``config.iters``).

    Parameters
    ----------
    spec : MLPSpec
    theta : ndarray, shape (P,)
        Initialisation at iteration ``start``; not modified.
    sample_block : callable
        ``sample_block(b)`` returns the tasks of outer iterations ``b*block_iters ...``:
        X (block_iters, n_tasks, n_points, d_in), Y, plans (block_iters, n_tasks, steps, batch).
        It must depend on ``b`` only, so a resumed run sees the same tasks.
    block_iters : int
        Outer iterations per block.
    config : ReptileConfig
    backend : Backend
        From :func:`minireptile.backends.get_backend`, or a distributed backend
        (:func:`minireptile.backends.distributed.distributed_backend`): a backend with a
        ``bind_tasks(sample_block, block_iters)`` method samples the tasks where it runs them, and
        gets block and row numbers in place of X, Y and plans.
    start, stop : int
        Iteration range [start, stop), 0 <= start <= stop <= config.iters. The ε schedule always
        runs over ``config.iters``, so stopping at k and restarting with ``start=k`` reproduces the
        uninterrupted run bit for bit.
    state : AdamState or None
        Carried Adam state at ``start`` (policy 'carry').
    callback : callable, optional
        ``callback(it, theta, losses, state)`` after each chunk; ``it`` is the number of
        iterations done, ``losses`` (chunk,) the chunk's mean inner losses. Returning True stops
        training after this chunk (the caller knows ``it`` from its last call).
    chunk_iters : int, optional
        Also end chunks at multiples of this many iterations (so a callback that checkpoints every
        ``chunk_iters`` iterations is called exactly there). Chunks always end at block ends.
    check_finite : bool
        Reject a non-finite θ or state at ``start`` (default).
    chunk_seconds : float, optional
        Also keep each backend call to about this many seconds of wall time (the chunk length is
        adapted to the measured speed, starting from one iteration), so a callback, and with it a
        signal handler, runs at least that often. Results do not depend on it (bitwise).

    Returns
    -------
    theta : ndarray, shape (P,)
    state : AdamState or None

    Raises
    ------
    DivergenceError
        A loss, θ or carried state became NaN or inf; the error names the iteration and carries
        the last finite θ (and state).
    """
    theta, block_iters, start, stop, state, chunk_iters = check.meta_train_args(
        spec, theta, sample_block, block_iters, config, backend, start, stop, state, callback, chunk_iters,
        check_finite)
    if chunk_seconds is not None and not (isinstance(chunk_seconds, (int, float)) and chunk_seconds > 0):
        raise ValueError(f"chunk_seconds: expected a number > 0, got {chunk_seconds!r}")
    blocks = {} if config.task_block is None else {"task_block": config.task_block}
    # a backend that samples tasks where it runs them (the distributed meta-batch) gets the sampler once
    # and then only block and row numbers: remote_rows(b, j0, j1) stands in for X, Y, plans[j0:j1]
    bind_tasks = getattr(backend, "bind_tasks", None)
    remote_rows = bind_tasks(sample_block, block_iters) if bind_tasks is not None else None
    it = start
    timed = 1                                 # with chunk_seconds: iterations of the next chunk
    block = None, None                        # (b, (X, Y, plans)): a block is sampled once
    while it < stop:
        b, j0 = divmod(it, block_iters)
        end = min(stop, (b + 1) * block_iters)
        if chunk_iters is not None:
            end = min(end, (it // chunk_iters + 1) * chunk_iters)
        if chunk_seconds is not None:
            end = min(end, it + timed)
        j1 = j0 + end - it
        if remote_rows is not None:
            rows = remote_rows(b, j0, j1)
        else:
            if block[0] != b:
                block = b, check.block_arg(b, block_iters, sample_block(b))
            rows = tuple(a[j0:j1] for a in block[1])
        eps = epsilon_schedule(np.arange(it, end), config.iters, config.eps0, config.eps_final)
        chunk = spec, theta, *rows, eps, config.inner, state
        t0 = time.perf_counter()
        new_theta, losses, new_state = backend.train_chunk(*chunk, **blocks)
        if chunk_seconds is not None:         # grow (at most x2) or shrink towards chunk_seconds per call
            rate = (end - it) / max(time.perf_counter() - t0, 1e-9)
            timed = max(1, min(2 * timed, int(rate * chunk_seconds)))
        if not (np.isfinite(losses).all() and _finite(new_theta, new_state)):
            raise _divergence(backend, chunk, losses, it, config)
        theta, state, it = new_theta, new_state, end
        if callback is not None and callback(it, theta, losses, state):
            break
    return theta, state


def _divergence(backend, chunk, losses, it: int, config: ReptileConfig) -> DivergenceError:
    """The error for a chunk starting at iteration ``it`` that went non-finite.

    The first iteration j with a non-finite loss diverged, or (loss finite, new θ not) the last
    one. θ before iteration j is recomputed by replaying the chunk's first j iterations from the
    chunk's start θ: a chunk's result does not depend on where it ends, so this is the very θ the
    run had. If that θ is itself non-finite (an iteration with a finite loss produced a NaN θ),
    step back one more iteration.
    """
    spec, theta, X, Y, plans, eps, opt, state = chunk
    bad = np.flatnonzero(~np.isfinite(losses))
    j = int(bad[0]) if bad.size else len(eps) - 1
    while j > 0:
        blocks = {} if config.task_block is None else {"task_block": config.task_block}
        theta_j, _, state_j = backend.train_chunk(spec, theta, X[:j], Y[:j], plans[:j], eps[:j], opt, state, **blocks)
        if _finite(theta_j, state_j):
            theta, state = theta_j, state_j
            break
        j -= 1
    i = it + j
    return DivergenceError(
        f"training diverged at outer iteration {i} (0-based; {i} iterations completed): the inner loss "
        f"or the new θ is NaN or inf. The last finite θ (before iteration {i}) is kept in the error. "
        f"Lower the inner learning rate (lr={config.inner.lr:g}) or the outer step size "
        f"(eps0={config.eps0:g}).",
        iteration=i, theta=np.array(theta, copy=True), state=state)
