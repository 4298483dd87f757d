"""The backend interface, its validating wrapper, and the NumPy backend.

A :class:`Backend` is three functions with fixed signatures (see :mod:`minireptile.backends`).
:func:`validated` puts them behind :mod:`minireptile.validation`, so compiled kernels only ever see
clean, contiguous arrays and in-range index plans. The NumPy backend is the reference inner loop
(:func:`minireptile.reference.inner_loop`) driven by the NumPy outer update
(:func:`minireptile.reptile.train_chunk_generic`): the oracle every compiled backend is tested against.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable, NamedTuple

from .. import reference
from .. import validation as check
from ..optim import AdamState, InnerResult
from ..reptile import train_chunk_generic


class Backend(NamedTuple):
    name: str
    inner_loop: Callable
    train_chunk: Callable
    warmup: Callable


def _numpy_train_chunk(spec, theta, X, Y, plans, eps, opt, state=None, task_block=None):
    # the reference's one-line mean is the definition: task_block (blocked sums) does not apply here
    return train_chunk_generic(reference.inner_loop, spec, theta, X, Y, plans, eps, opt, state)


def _numpy_warmup(spec, dtype, opt) -> float:
    return 0.0


def validated(backend: Backend, check_sizes: Callable | None = None) -> Backend:
    """``backend`` with its three functions behind the argument checks of :mod:`minireptile.validation`.

    ``inner_loop`` takes a keyword ``out`` (see :func:`minireptile.reference.inner_loop`), checked here
    and passed on as a tuple, ``(phi,)`` for SGD or ``(phi, m, v)`` for Adam, to backends that take it;
    for those that do not, their result is copied into ``out``.

    ``train_chunk`` takes a keyword ``task_block`` (int >= 1 or None; see
    :class:`~minireptile.config.ReptileConfig`), passed on to backends that reduce over tasks in blocks
    and dropped for those with a fixed reduction order of their own (CUDA), which agree to rounding.
    """
    inner_loop, train_chunk, warmup = backend.inner_loop, backend.train_chunk, backend.warmup
    blocked = _takes(train_chunk, "task_block")
    takes_out = _takes(inner_loop, "out")

    @functools.wraps(inner_loop)
    def checked_inner_loop(spec, theta, X, Y, plan, opt, state=None, *, check_finite=True, out=None, **kwargs):
        theta, X, Y, plan, state = check.inner_loop_args(spec, theta, X, Y, plan, opt, state, check_finite)
        out = check.out_arg(out, opt, theta, X, Y, state, plan.shape[0], spec.n_params)
        if check_sizes is not None:
            check_sizes(spec, plan.shape[0], X.shape[1], plan.shape[1], plan.shape[2], theta.dtype)
        if out is None:
            return inner_loop(spec, theta, X, Y, plan, opt, state, **kwargs)
        if takes_out:
            return inner_loop(spec, theta, X, Y, plan, opt, state, out=out, **kwargs)
        return _copied_into(out, inner_loop(spec, theta, X, Y, plan, opt, state, **kwargs))

    @functools.wraps(train_chunk)
    def checked_train_chunk(spec, theta, X, Y, plans, eps, opt, state=None, *, check_finite=True, task_block=None,
                            **kwargs):
        theta, X, Y, plans, eps, state = check.train_chunk_args(spec, theta, X, Y, plans, eps, opt, state,
                                                                check_finite)
        if task_block is not None:
            task_block = check.count("task_block", task_block)
            if blocked:
                kwargs["task_block"] = task_block
        if check_sizes is not None:
            check_sizes(spec, plans.shape[1], X.shape[2], plans.shape[2], plans.shape[3], theta.dtype)
        return train_chunk(spec, theta, X, Y, plans, eps, opt, state, **kwargs)

    @functools.wraps(warmup)
    def checked_warmup(spec, dtype, opt, **kwargs):
        return warmup(*check.warmup_args(spec, dtype, opt), **kwargs)

    return Backend(backend.name, checked_inner_loop, checked_train_chunk, checked_warmup)


def _copied_into(out, res: InnerResult) -> InnerResult:
    """``res`` with φ and the Adam moments copied into ``out`` = (phi,) or (phi, m, v)."""
    phi = out[0]
    phi[...] = res.phi
    if res.state is None:
        return InnerResult(phi, res.loss, None)
    m, v = out[1], out[2]
    m[...], v[...] = res.state.m, res.state.v
    return InnerResult(phi, res.loss, AdamState(m, v, res.state.t))


def _takes(function, keyword: str) -> bool:
    """Whether ``function`` has a parameter called ``keyword``."""
    try:
        return keyword in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def numpy_backend() -> Backend:
    """The NumPy reference backend (``get_backend("numpy")``)."""
    # reference.inner_loop validates its own arguments; the wrapper adds the chunk's checks
    numpy = validated(Backend("numpy", reference.inner_loop, _numpy_train_chunk, _numpy_warmup))
    return numpy._replace(inner_loop=reference.inner_loop)
