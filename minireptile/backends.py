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
"""

from __future__ import annotations

import importlib
from typing import Callable, NamedTuple

from . import reference
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
        return Backend("numpy", reference.inner_loop, _numpy_train_chunk, _numpy_warmup)
    if name not in _MODULES:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {name!r}")
    module = importlib.import_module(_MODULES[name])
    return module.backend()
