"""The Numba CPU backend: every task's whole inner loop, and whole chunks of Reptile, compiled.

Contract
--------
:func:`backend` returns a :class:`~minireptile.backends.Backend` whose functions compute what
:mod:`minireptile.reference` (inner loop) and :func:`minireptile.reptile.train_chunk_generic`
(outer iterations) compute, with the same signatures:

    inner_loop(spec, theta, X, Y, plan, opt, state=None, *, out=None) -> InnerResult
        theta (P,) or (n_tasks, P); X (n_tasks, n_points, d_in); Y (n_tasks, n_points, d_out) float
        or (n_tasks, n_points) int for "ce"; plan (n_tasks, steps, batch) int; out (phi,) or
        (phi, m, v): (n_tasks, P) arrays to write into
    train_chunk(spec, theta, X, Y, plans, eps, opt, state=None) -> (theta, losses, state)
        X (iters, n_tasks, n_points, d_in), plans (iters, n_tasks, steps, batch), eps (iters,)
    warmup(spec, dtype, opt) -> float
        compiles (or loads from the on-disk cache) the one kernel specialisation a run with
        ``spec``, ``dtype`` and ``opt`` needs and returns the seconds it took

One compiled call runs a whole chunk on one thread: for each outer iteration every task of the
meta-batch, then the outer update θ + ε·(mean φ − θ) and the carried Adam state, reduced over
tasks in task order. With more than one thread and more than one task, the tasks of each
iteration are cut into blocks that Python threads run at once (the kernel releases the GIL), then
its outer update, by parameter columns (:mod:`minireptile.backends.numba_threads`). Results do not
depend on the number of threads (bitwise) and equal the reference to rounding (tests: ≤ 1e-10
relative in float64 after 32 inner steps, ≤ 1e-4 in float32). The kernels are in
:mod:`minireptile.backends.numba_kernels`; their per-element math in :mod:`minireptile.backends.kernel_math`.

Compile cost: one specialisation per (activation, loss, optimizer, dtype), compiled when a run
first uses it (6–8 s cold on a 2-core machine; the gist run needs one) and cached on disk
(``cache=True``), so the second run of a command loads it in a fraction of a second.

Threads
-------
With more than one thread, :func:`minireptile.backends.numba_threads._in_threads` shares each
chunk's tasks and updates out among Python threads (bitwise the result of one thread); it uses no
more threads than there are CPUs other jobs leave free. :func:`select_threading_layer` still picks
a thread-safe numba layer for any ``prange`` code elsewhere in the process; importing minireptile
changes nothing.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import time
import warnings

import numba
import numpy as np

from . import kernel_math as km
from . import numba_threads as nt
from ..mlp import MLPSpec
from ..optim import AdamState, InnerOptimizer, InnerResult

THREADING_LAYER = "threadsafe"


def select_threading_layer() -> str:
    """Choose a thread-safe numba threading layer unless one is already fixed; return its name.

    The backend's own kernels run no ``prange`` code; this keeps other parallel numba code in the
    process safe to call from several threads (``workqueue`` is not). Returns the layer numba uses
    ("tbb" or "omp" here), or the configured name if the layer is not initialised yet.
    """
    import numba
    from numba.np.ufunc import parallel

    if parallel._is_initialized:
        return numba.threading_layer()
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = THREADING_LAYER
    return numba.config.THREADING_LAYER


_KERNELS = None
# Source files whose code numba inlines into the cached kernels of numba_kernels.py and numba_simd.py
# (isa.py decides the vector width and tile). Numba keys a cached function on its own file's time
# stamp only, so after an edit of one of these the stale machine code would be loaded;
# _refresh_cache() drops the kernels' cache indexes instead.
_INLINED_SOURCES = ("kernel_math.py", "numba_simd.py", "numba_views.py", "isa.py")
_CACHED_MODULES = ("numba_kernels", "numba_simd")


def _refresh_cache(kernels) -> None:
    """Forget the cached kernels if a file they inline changed since they were cached."""
    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for name in _INLINED_SOURCES:
        with open(os.path.join(here, name), "rb") as f:
            digest.update(f.read())
    cache_dir = kernels.tanh_array._cache.cache_path
    stamp = os.path.join(cache_dir, "numba_kernels.inlined-sources.sha256")
    try:
        with open(stamp) as f:
            if f.read() == digest.hexdigest():
                return
    except OSError:
        pass
    for module in _CACHED_MODULES:
        for index in glob.glob(os.path.join(glob.escape(cache_dir), f"{module}.*.nbi")):
            with contextlib.suppress(OSError):
                os.remove(index)
    with contextlib.suppress(OSError):  # atomically: a process starting meanwhile reads the old or the new stamp
        tmp = f"{stamp}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(digest.hexdigest())
        os.replace(tmp, stamp)


def _damaged_cache(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while numba read its on-disk cache (a truncated or corrupt file)."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.replace(os.sep, "/").endswith("numba/core/caching.py"):
            return True
        tb = tb.tb_next
    return False


def _drop_cache(cache_dir: str, exc: BaseException) -> None:
    """Remove every cached kernel file of this backend and warn; the next call compiles afresh."""
    for module in _CACHED_MODULES:
        for path in glob.glob(os.path.join(glob.escape(cache_dir), f"{module}.*.nb[ic]")):
            with contextlib.suppress(OSError):
                os.remove(path)
    warnings.warn(f"numba's on-disk cache of minireptile's kernels in {cache_dir!r} was damaged "
                  f"({type(exc).__name__}: {exc}); it was removed and the kernels are compiled again",
                  RuntimeWarning, stacklevel=4)


def _cache_dir() -> str:
    """The folder of the kernels' on-disk cache."""
    return _kernels().tanh_array._cache.cache_path


def _with_cache_recovery(run):
    """``run()``; if it fails while numba reads a damaged on-disk cache, drop the cache (with a warning) and retry
    once (the failure is at dispatch, before the kernel touched its arguments)."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 (numba's cache loader raises pickle, EOF, zlib... errors)
        if not _damaged_cache(exc):
            raise
        _drop_cache(_cache_dir(), exc)
    return run()


def _kernels():
    """The kernel module, imported (and its on-disk cache checked) on first use."""
    global _KERNELS
    if _KERNELS is None:
        from . import numba_kernels

        _refresh_cache(numba_kernels)
        _KERNELS = numba_kernels
    return _KERNELS


# ---------------------------------------------------------------------------------------------
# layout tables and argument preparation
# ---------------------------------------------------------------------------------------------
def _layout(spec: MLPSpec, batch: int):
    """Tables the kernel needs: offs (L, 4), aoffs (L + 1,), wlive / tlive (L,) bool."""
    offs = spec.offsets_array()
    sizes = np.asarray(spec.sizes, dtype=np.int64)
    blocks = -(-(sizes * batch) // _ALIGN_ITEMS) * _ALIGN_ITEMS   # each layer's block starts on 64 bytes
    aoffs = np.concatenate([[0], np.cumsum(blocks)]).astype(np.int64)[: len(sizes)]
    fan_out = offs[:, 3]
    tlive = fan_out >= _kernels().FWD_DOT_MAX_FANOUT           # forward with Wᵀ
    wlive = (np.arange(len(offs)) > 0) | ~tlive                 # backward data or dot forward uses W
    return offs, aoffs, wlive.astype(np.bool_), tlive.astype(np.bool_)


# The kernels' vectors are 64 bytes. NumPy aligns its buffers to 16 bytes only, and on Intel cores a
# vector load or store that straddles two cache lines costs two: scratch and outputs start on 64
# bytes, and each layer's block of activations and each per-thread row is padded to 16 elements.
_ALIGN_BYTES = 64
_ALIGN_ITEMS = 16


def _pad(n: int) -> int:
    """n rounded up to a whole number of _ALIGN_ITEMS elements."""
    return -(-n // _ALIGN_ITEMS) * _ALIGN_ITEMS


def _zeros(shape, dtype, fill=True) -> np.ndarray:
    """np.zeros(shape, dtype) (``fill=False``: np.empty) whose data starts on a 64-byte boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = (np.zeros if fill else np.empty)(nbytes + _ALIGN_BYTES, np.uint8)
    start = (-raw.ctypes.data) % _ALIGN_BYTES
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def _same_buffer(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether a and b are the same elements (same start, shape and strides)."""
    return a.shape == b.shape and a.strides == b.strides and a.size > 0 and a.ctypes.data == b.ctypes.data


def _farray(a, dtype) -> np.ndarray:
    """C-contiguous, writable array of ``dtype`` (one numba type per dtype: no recompiles)."""
    out = np.ascontiguousarray(a, dtype=dtype)
    return out if out.flags.writeable else out.copy()


def _targets(spec: MLPSpec, Y, lead: tuple, dtype):
    """(Yf, Yi): float targets and int64 labels; the one not used by the loss is a tiny dummy."""
    if spec.loss == "ce":
        return np.zeros(lead + (1, 1), dtype), _farray(Y, np.int64)
    return _farray(Y, dtype), np.zeros(lead + (1,), np.int64)


def _codes(spec: MLPSpec, opt: InnerOptimizer):
    hyper = np.array([opt.lr, opt.beta1, opt.beta2, opt.eps], dtype=np.float64)
    return km.ACT_CODES[spec.activation], km.LOSS_CODES[spec.loss], km.OPT_CODES[opt.name], hyper


def _call(spec, theta2, X, Yf, Yi, plans, eps, opt, m0, v0, t0, has_state, carry, update, task_block=None,
          out=None):
    """Allocate outputs and scratch (once, outside the step loop) and run the kernel.

    ``task_block``: tasks per reduction block (None: all tasks in one block). ``out``: the outputs
    (phi, m, v) to write into instead of new arrays (inner_loop's).
    """
    dtype = theta2.dtype
    iters, n, _, batch = plans.shape
    P = spec.n_params
    offs, aoffs, wlive, tlive = _layout(spec, batch)
    A = _pad(int(aoffs[-1]) + batch * spec.sizes[-1])
    Pm = P if opt.name == "adam" else 0
    if out is None:  # every row is written by the kernel: no need to zero them
        out = _zeros((n, P), dtype, False), _zeros((n, Pm), dtype, False), _zeros((n, Pm), dtype, False)
    phi, m, v = out
    task_loss, iter_loss = np.zeros(n, np.float64), np.zeros(iters, np.float64)
    threads = min(numba.get_num_threads(), n)
    if threads > 1:  # other jobs hold the cores: helpers would only wait for time slices
        threads = min(threads, max(1, nt._free_cores()))
    Pp = _pad(P)
    scratch = (_zeros(P, dtype), _zeros(P, dtype), _zeros(P, dtype),   # red, blk, tht
               _zeros((threads, Pp), dtype), _zeros((threads, A), dtype),  # wt, act (a row per thread)
               _zeros((threads, A), dtype), _zeros((threads, Pp), dtype))  # dlt, grad
    act_code, loss_code, opt_code, hyper = _codes(spec, opt)
    kernel = _kernels().chunk_kernel(act_code, loss_code, opt_code)
    # adapting in place (inner_loop's out is θ and the Adam state itself): no copy of them at each task's start
    copy_theta = not _same_buffer(theta2, phi)
    copy_state = not (_same_buffer(m0, m) and _same_buffer(v0, v))
    args = (theta2, m0, v0, phi, m, v, task_loss, iter_loss, *scratch, X, Yf, Yi, plans, eps, offs, aoffs, wlive,
            tlive, hyper, max(n, 1) if task_block is None else int(task_block), copy_theta, copy_state)
    hs, carry, update = bool(has_state), bool(carry), bool(update)

    def run():
        if threads <= 1:
            return kernel(*args, int(t0), hs, carry, update, True, 0, n, 0, iters, 0, P, 0)[0]
        return nt._in_threads(kernel, args, n, iters, P, threads, int(t0), hs, carry, update)

    t = _with_cache_recovery(run)
    return phi, m, v, task_loss, iter_loss, t


def cached_kernels() -> dict:
    """The numba cache folder of the kernels and the chunk-kernel specialisations it holds.

    Returns {"folder": path, "kernels": [{"activation", "loss", "optimizer", "dtype", "cpu"}, ...]}
    (``kernels`` is None when numba's index cannot be read: its layout is numba's, not ours).
    """
    from numba.core.serialize import dumps

    k = _kernels()
    folder = _cache_dir()
    names = {}
    for act, a in km.ACT_CODES.items():
        for loss, lc in km.LOSS_CODES.items():
            for opt, o in km.OPT_CODES.items():
                fn = k._entry(a, lc, o).py_func
                cvars = tuple(c.cell_contents for c in fn.__closure__ or ())
                names[hashlib.sha256(dumps(cvars)).hexdigest()] = (act, loss, opt)
    try:
        index = k.chunk_kernel(0, 0, 0)._cache._cache_file._load_index()
        found = []
        for sig, magic, (_, cvar_hash) in index:
            act, loss, opt = names.get(cvar_hash, ("?", "?", "?"))
            found.append({"activation": act, "loss": loss, "optimizer": opt, "dtype": str(sig[0].dtype),
                          "cpu": magic[1]})
    except Exception:  # noqa: BLE001 (numba's private cache index; a report must still come out)
        found = None
    return {"folder": folder, "kernels": found}


def kernel_cached(spec: MLPSpec, dtype, opt: InnerOptimizer) -> bool | None:
    """Whether numba's on-disk cache holds the kernel a run with ``spec``, ``dtype`` and ``opt`` needs,
    compiled for this CPU and these sources (so :func:`warmup` loads it instead of compiling).

    None when numba's cache index cannot be read (its layout is numba's, not ours). Imports numba,
    compiles nothing.
    """
    from numba.core.registry import cpu_target
    from numba.core.serialize import dumps

    try:
        k = _kernels()
        fn = k._entry(km.ACT_CODES[spec.activation], km.LOSS_CODES[spec.loss], km.OPT_CODES[opt.name]).py_func
        cvar_hash = hashlib.sha256(dumps(tuple(c.cell_contents for c in fn.__closure__ or ()))).hexdigest()
        magic = cpu_target.target_context.codegen().magic_tuple()
        index = k.chunk_kernel(0, 0, 0)._cache._cache_file._load_index()
        name = np.dtype(dtype).name
        return any(m == magic and h[1] == cvar_hash and str(sig[0].dtype) == name for sig, m, h in index)
    except Exception:  # noqa: BLE001 (numba's private cache index)
        return None


def _state_rows(state, P, dtype, adam, copy=True):
    """Adam state as 2-D rows for the kernel: (m0, v0, t0, has_state).

    ``copy=False`` where the kernel only reads them (no carried state is written back): the
    caller's arrays are then passed as they are when they already have the layout and dtype.
    """
    if not adam or state is None:
        return np.zeros((1, P if adam else 0), dtype), np.zeros((1, P if adam else 0), dtype), 0, False
    m0 = _farray(state.m, dtype).reshape(-1, P)
    v0 = _farray(state.v, dtype).reshape(-1, P)
    if copy:
        m0, v0 = m0.copy(), v0.copy()
    return m0, v0, int(state.t), True


# ---------------------------------------------------------------------------------------------
# the backend functions
# ---------------------------------------------------------------------------------------------
def inner_loop(spec: MLPSpec, theta, X, Y, plan, opt: InnerOptimizer, state: AdamState | None = None, *,
               out=None) -> InnerResult:
    """Adapt θ to each task of a meta-batch (see :func:`minireptile.reference.inner_loop`).

    Parameters
    ----------
    spec : MLPSpec
    theta : ndarray, shape (P,) or (n_tasks, P), float32 or float64 (sets the compute dtype)
    X : ndarray, shape (n_tasks, n_points, d_in)
    Y : ndarray, shape (n_tasks, n_points, d_out) float, or (n_tasks, n_points) int for "ce"
    plan : ndarray of int, shape (n_tasks, steps, batch), indices in [0, n_points)
    opt : InnerOptimizer
    state : AdamState or None
        Adam moments (P,) or (n_tasks, P) and step count to start from; None: zeros.
    out : tuple of ndarray, optional
        Arrays (n_tasks, P) to write φ and the Adam moments into, ``(phi,)`` for SGD or
        ``(phi, m, v)`` for Adam, as checked by :func:`minireptile.validation.out_arg`: θ may be ``phi`` and ``state.m``,
        ``state.v`` may be ``m``, ``v`` (each task copies its start row into its own row first).
        None: new arrays.

    Returns
    -------
    InnerResult
        phi (n_tasks, P), loss (n_tasks,) float64 mean pre-update minibatch loss, state
        AdamState(m, v (n_tasks, P), t + steps) for Adam, else None.
    """
    theta = np.asarray(theta)
    dtype = theta.dtype
    P = spec.n_params
    theta2 = _farray(theta, dtype).reshape(-1, P)
    X = _farray(X, dtype)
    n = X.shape[0]
    plans = _farray(plan, np.int64)[None]
    adam = opt.name == "adam"
    if out is not None and not adam:  # the kernel's SGD moments are (n, 0) arrays
        out = (out[0], np.zeros((n, 0), dtype), np.zeros((n, 0), dtype))
    if n == 0:  # nothing to adapt (as the reference: empty results)
        phi, m, v = out if out is not None else (np.empty((0, P), dtype), np.empty((0, P), dtype),
                                                 np.empty((0, P), dtype))
        return InnerResult(phi, np.zeros(0), AdamState(m, v, (state.t if state else 0) + plans.shape[2])
                           if adam else None)
    Yf, Yi = _targets(spec, np.asarray(Y)[None], (1, n), dtype)
    m0, v0, t0, has_state = _state_rows(state, P, dtype, adam, copy=False)  # read only: no carry
    phi, m, v, task_loss, _, _ = _call(spec, theta2, X[None], Yf, Yi, plans, np.zeros(1), opt,
                                       m0, v0, t0, has_state, False, False, out=out)
    new_state = AdamState(m, v, t0 + plans.shape[2]) if adam else None
    return InnerResult(phi, task_loss, new_state)


def train_chunk(spec: MLPSpec, theta, X, Y, plans, eps, opt: InnerOptimizer, state: AdamState | None = None,
                task_block: int | None = None):
    """Run ``len(eps)`` outer iterations in one compiled call (see
    :func:`minireptile.reptile.train_chunk_generic`, which this equals to rounding).

    Parameters
    ----------
    spec : MLPSpec
    theta : ndarray, shape (P,), float32 or float64
    X : ndarray, shape (iters, n_tasks, n_points, d_in)
    Y : ndarray, shape (iters, n_tasks, n_points, d_out) float, or (iters, n_tasks, n_points) int
    plans : ndarray of int, shape (iters, n_tasks, steps, batch)
    eps : ndarray of float, shape (iters,)
        Outer step sizes; each is rounded to θ's dtype.
    opt : InnerOptimizer
    state : AdamState or None
        Adam state for the first iteration (the carried state under policy 'carry').
    task_block : int or None
        Reduce over tasks in blocks of this many tasks: each block's φ (and moments, losses) summed
        in task order, then the block sums in block order, as the distributed meta-batch does
        (:mod:`minireptile.backends.distributed`), so both give bitwise the same θ. None: one block.

    Returns
    -------
    theta : ndarray, shape (P,)
    losses : ndarray, shape (iters,), mean inner training loss of each outer iteration
    state : AdamState or None
        Carried Adam state (policy 'carry', moments (P,)), else None.
    """
    theta = np.asarray(theta)
    dtype = theta.dtype
    P = spec.n_params
    eps = np.ascontiguousarray(eps, dtype=np.float64).reshape(-1)
    if eps.shape[0] == 0:
        return theta.copy(), np.zeros(0), state
    theta2 = _zeros((1, P), dtype)
    theta2[0] = theta
    X = _farray(X, dtype)
    plans = _farray(plans, np.int64)
    iters, n = plans.shape[:2]
    if n == 0:
        raise ValueError("plans: expected at least one task per outer iteration, got meta-batch 0")
    Yf, Yi = _targets(spec, Y, (iters, n), dtype)
    adam = opt.name == "adam"
    carry = adam and opt.state_policy == "carry"
    m0, v0, t0, has_state = _state_rows(state, P, dtype, adam)
    if carry and m0.shape[0] != 1:  # a per-task state is carried as its task mean first
        m0, v0 = m0.mean(axis=0, keepdims=True), v0.mean(axis=0, keepdims=True)
    if carry and not has_state:
        m0, v0 = np.zeros((1, P), dtype), np.zeros((1, P), dtype)
    _, _, _, _, losses, t = _call(spec, theta2, X, Yf, Yi, plans, eps, opt, m0, v0, t0, has_state, carry, True,
                                  task_block)
    new_state = AdamState(m0[0], v0[0], int(t)) if carry else None
    return theta2[0], losses, new_state


def warmup(spec: MLPSpec, dtype, opt: InnerOptimizer) -> float:
    """Compile (or load from cache) the kernel a run with ``spec``, ``dtype`` and ``opt`` needs.

    Returns
    -------
    float
        Seconds it took (well under a second from the cache, 6–8 s cold on a 2-core machine).
    """
    t = time.perf_counter()
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(0)
    theta = (rng.uniform(-0.1, 0.1, spec.n_params)).astype(dtype)
    X = np.zeros((1, 1, 2, spec.d_in), dtype)
    Y = np.zeros((1, 1, 2), np.int64) if spec.loss == "ce" else np.zeros((1, 1, 2, spec.d_out), dtype)
    plans = np.zeros((1, 1, 1, 2), np.int64)
    train_chunk(spec, theta, X, Y, plans, np.zeros(1), opt)
    return time.perf_counter() - t


def backend():
    """The numba :class:`~minireptile.backends.Backend` (selects a thread-safe threading layer)."""
    from .base import Backend

    select_threading_layer()
    _kernels()
    return Backend("numba", inner_loop, train_chunk, warmup)
