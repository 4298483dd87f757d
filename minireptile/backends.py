"""The one place that chooses a backend.

Every backend offers the same three functions with the same signatures:

    inner_loop(spec, theta, X, Y, plan, opt, state=None) -> InnerResult
        theta (P,) or (n_tasks, P); X (n_tasks, n_points, d_in); plan (n_tasks, steps, batch)
    train_chunk(spec, theta, X, Y, plans, eps, opt, state=None) -> (theta, losses, state)
        a chunk of outer iterations: X (iters, n_tasks, n_points, d_in), eps (iters,)
    warmup(spec, dtype, opt) -> float
        compiles what a run with this spec needs; returns the seconds it took (0 for NumPy)

``numpy`` is the readable reference (:mod:`minireptile.reference`); ``numba`` and ``cuda`` are
compiled twins imported lazily, so importing minireptile never imports numba.cuda.

Validation: :func:`get_backend` wraps every backend's ``inner_loop``, ``train_chunk`` and ``warmup``
in the checks of :mod:`minireptile.validation` (shapes, dtypes, contiguity, finiteness with
``check_finite=True``, index plans in range), so a backend module's kernels only ever see clean,
contiguous arrays in θ's dtype and in-range int64 plans. A backend module may also define
``check_sizes(spec, n_tasks, n_points, steps, batch, dtype)`` raising ValueError for sizes it cannot
run; the wrapper calls it after the generic checks. The wrapped functions take one extra keyword,
``check_finite=True``.
"""

from __future__ import annotations

import functools
import importlib
from typing import Callable, NamedTuple

from . import reference
from . import validation as check
from .errors import BackendUnavailableError
from .reptile import train_chunk_generic

BACKENDS = ("numpy", "numba", "cuda")

# backend name -> module that defines inner_loop / train_chunk / warmup
_MODULES = {"numba": "minireptile.numba_backend", "cuda": "minireptile.cuda_backend"}


class Backend(NamedTuple):
    name: str
    inner_loop: Callable
    train_chunk: Callable
    warmup: Callable


def _numpy_train_chunk(spec, theta, X, Y, plans, eps, opt, state=None):
    return train_chunk_generic(reference.inner_loop, spec, theta, X, Y, plans, eps, opt, state)


def _numpy_warmup(spec, dtype, opt) -> float:
    return 0.0


def validated(backend: Backend, check_sizes: Callable | None = None) -> Backend:
    """``backend`` with its three functions behind the argument checks of :mod:`minireptile.validation`."""
    inner_loop, train_chunk, warmup = backend.inner_loop, backend.train_chunk, backend.warmup

    @functools.wraps(inner_loop)
    def checked_inner_loop(spec, theta, X, Y, plan, opt, state=None, *, check_finite=True, **kwargs):
        theta, X, Y, plan, state = check.inner_loop_args(spec, theta, X, Y, plan, opt, state, check_finite)
        if check_sizes is not None:
            check_sizes(spec, plan.shape[0], X.shape[1], plan.shape[1], plan.shape[2], theta.dtype)
        return inner_loop(spec, theta, X, Y, plan, opt, state, **kwargs)

    @functools.wraps(train_chunk)
    def checked_train_chunk(spec, theta, X, Y, plans, eps, opt, state=None, *, check_finite=True, **kwargs):
        theta, X, Y, plans, eps, state = check.train_chunk_args(spec, theta, X, Y, plans, eps, opt, state,
                                                                check_finite)
        if check_sizes is not None:
            check_sizes(spec, plans.shape[1], X.shape[2], plans.shape[2], plans.shape[3], theta.dtype)
        return train_chunk(spec, theta, X, Y, plans, eps, opt, state, **kwargs)

    @functools.wraps(warmup)
    def checked_warmup(spec, dtype, opt, **kwargs):
        return warmup(*check.warmup_args(spec, dtype, opt), **kwargs)

    return Backend(backend.name, checked_inner_loop, checked_train_chunk, checked_warmup)


def get_backend(name: str) -> Backend:
    """Return the backend called ``name``.

    Parameters
    ----------
    name : {"numpy", "numba", "cuda"}

    Raises
    ------
    ValueError
        Unknown name.
    minireptile.errors.BackendUnavailableError
        The backend's optional dependency or device is missing; the message says what to
        install or which backend to use instead.
    """
    if name == "numpy":
        # reference.inner_loop validates its own arguments; the wrapper adds the chunk's checks
        numpy = validated(Backend("numpy", reference.inner_loop, _numpy_train_chunk, _numpy_warmup))
        return numpy._replace(inner_loop=reference.inner_loop)
    if name not in _MODULES:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {name!r}")
    try:
        module = importlib.import_module(_MODULES[name])
    except ModuleNotFoundError as exc:
        if exc.name == _MODULES[name]:
            raise BackendUnavailableError(f"backend {name!r} is not part of this installation of minireptile; "
                                          "use the 'numpy' backend instead") from None
        raise BackendUnavailableError(f"backend {name!r} needs the module {exc.name!r}, which is not installed") \
            from None
    return validated(module.backend(), getattr(module, "check_sizes", None))
