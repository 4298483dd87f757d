"""The one place that chooses a backend.

Every backend offers the same three functions with the same signatures:

    inner_loop(spec, theta, X, Y, plan, opt, state=None, *, out=None) -> InnerResult
        theta (P,) or (n_tasks, P); X (n_tasks, n_points, d_in); plan (n_tasks, steps, batch);
        out: (phi,) or, for Adam, (phi, m, v) arrays (n_tasks, P) to write the result into
        (θ and the state may be those arrays: adapting in place, with no new memory per call)
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

import importlib

from ..errors import BackendUnavailableError
from .base import Backend, numpy_backend, validated

__all__ = ["BACKENDS", "Backend", "get_backend", "validated"]

BACKENDS = ("numpy", "numba", "cuda")

# backend name -> module that defines inner_loop / train_chunk / warmup
_MODULES = {"numba": "minireptile.backends.numba_cpu", "cuda": "minireptile.backends.cuda"}


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
        return numpy_backend()
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
