"""Argument checks for every public entry point: the one place that validates inputs.

Contract
--------
Each public function (``forward``, ``loss``, ``loss_and_grad``, ``inner_loop``, ``reptile_update``,
``meta_train``, ``adapt_and_score`` / ``evaluate_sine`` and every backend's ``inner_loop``,
``train_chunk`` and ``warmup`` as returned by :func:`minireptile.backends.get_backend`) starts with
ONE call into this module. The call either raises or returns the arguments in the form the
compiled kernels need: C-contiguous, native byte order, float data in θ's dtype, int64 index
plans checked to lie inside the data. Numba kernels do no bounds checking, so an index plan that
is out of range must never get past this module.

Errors (docs/errors.md lists them with what to do):

    TypeError   wrong type or dtype          "X: expected float32 ..., got float64; ..."
    ValueError  wrong shape, size or value   "plan: expected indices in [0, n_points=50), got 57 at (0, 2, 3)"

Every message starts with the argument's name, then says what was expected and what was given.

Dtypes
------
θ sets the compute dtype: float32 or float64. A θ of another dtype is converted when that loses
nothing (float16, bool and integers of up to 16 bits → float32; 32-bit integers → float64) and
rejected otherwise (complex, object, strings, 64-bit integers, long double). Data arrays (X, float
targets Y, adapted φ, Adam moments) are converted to θ's dtype under the same rule: float32 data
goes into a float64 θ unchanged in value, float64 data into a float32 θ is REJECTED (it would round;
cast it yourself). Class labels (Y for ``loss="ce"``) and index plans must have an integer dtype
(bool is rejected) and are converted to int64. Arrays that are not C-contiguous (slices with steps,
transposes, Fortran order) or not in native byte order are copied into a contiguous array.

Finiteness
----------
With ``check_finite=True`` (the default everywhere) θ, X, Y, φ and Adam moments must hold only
finite numbers; scipy's ``check_finite`` convention. ``check_finite=False`` skips that scan
(results are then NaN wherever the inputs were). Step sizes (ε, learning rates) and counts are
always checked.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .config import ReptileConfig
from .mlp import MLPSpec
from .optim import AdamState, InnerOptimizer

F32, F64, I64 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64)


# ---------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------
def spec(spec) -> MLPSpec:
    """``spec`` must be an :class:`~minireptile.mlp.MLPSpec`."""
    if not isinstance(spec, MLPSpec):
        raise TypeError(f"spec: expected an MLPSpec, got {type(spec).__name__}")
    return spec


def optimizer(opt, name: str = "opt") -> InnerOptimizer:
    """``opt`` must be an :class:`~minireptile.optim.InnerOptimizer`."""
    if not isinstance(opt, InnerOptimizer):
        raise TypeError(f"{name}: expected an InnerOptimizer, got {type(opt).__name__}")
    return opt


def count(name: str, value, minimum: int = 1) -> int:
    """An integer (Python or NumPy, not bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def step_size(name: str, value, allow_zero: bool = False) -> float:
    """A finite real number > 0 (>= 0 with ``allow_zero``)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} {value!r}")
    expected = f"{name}: expected a finite number {'>=' if allow_zero else '>'} 0"
    try:
        value = float(value)
    except OverflowError:  # an int beyond float64
        raise ValueError(f"{expected}, got an integer of {int(value).bit_length()} bits") from None
    if not (math.isfinite(value) and (value >= 0 if allow_zero else value > 0)):
        raise ValueError(f"{expected}, got {value!r}")
    return value


def _as_ndarray(name: str, a) -> np.ndarray:
    if type(a) is np.ndarray:
        return a
    try:
        return np.asarray(a)
    except (TypeError, ValueError) as exc:  # ragged nested lists and the like
        raise TypeError(f"{name}: expected an array, got {type(a).__name__} that NumPy cannot convert "
                        f"({exc})") from None


def float_dtype_for(dtype: np.dtype) -> np.dtype | None:
    """float32 or float64, whichever holds every value of ``dtype`` exactly; None if neither does."""
    kind, size = dtype.kind, dtype.itemsize
    if kind == "f":
        return {2: F32, 4: F32, 8: F64}.get(size)
    if kind == "b" or (kind in "iu" and size <= 2):
        return F32
    if kind in "iu" and size == 4:
        return F64
    return None


def _lossless(dtype: np.dtype, target: np.dtype) -> bool:
    held = float_dtype_for(dtype)
    return held is not None and held.itemsize <= target.itemsize


def _dtype_error(name: str, dtype: np.dtype, expected: str) -> TypeError:
    if dtype.kind == "c":
        why = "complex values are not supported"
    elif dtype.kind in "OSUVMm":
        why = "not a numeric dtype"
    else:
        why = "converting it would lose precision; cast it explicitly if that is what you want"
    return TypeError(f"{name}: expected {expected}, got dtype {dtype} ({why})")


def _shape(name: str, a: np.ndarray, dims) -> None:
    """``dims``: sequence of (label, required size or None). Checks ndim and the required sizes."""
    shape = a.shape
    if len(shape) == len(dims):
        for k, (_, size) in enumerate(dims):
            if size is not None and shape[k] != size:
                break
        else:
            return
    raise ValueError(f"{name}: expected shape {_describe(dims)}, got {a.shape}")


def _describe(dims) -> str:
    """``(("n_tasks", None), ("P", 7))`` -> ``"(n_tasks, P=7)"``; one axis -> ``"(P=7,)"``."""
    want = ", ".join(label if s is None else f"{label}={s}" for label, s in dims)
    return f"({want},)" if len(dims) == 1 else f"({want})"


def _nonempty(name: str, a: np.ndarray, dims, skip=()) -> None:
    if a.size:
        return
    for k, (label, _) in enumerate(dims):
        if k not in skip and a.shape[k] < 1:
            raise ValueError(f"{name}: expected {label} >= 1, got shape {a.shape}")


def _finite(name: str, a: np.ndarray) -> None:
    if not np.isfinite(a).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise ValueError(f"{name}: expected finite values, got {a[where]} at index {where} "
                         "(fix the data, or pass check_finite=False to skip this check)")


def params_dtype(name: str, theta) -> np.dtype:
    """The compute dtype a θ implies (float32 or float64), or TypeError."""
    theta = _as_ndarray(name, theta)
    target = float_dtype_for(theta.dtype)
    if target is None:
        raise _dtype_error(name, theta.dtype, "float32 or float64 (or a dtype that converts to one without loss)")
    return target


def float_array(name: str, a, dims, dtype: np.dtype, check_finite: bool, skip=()) -> np.ndarray:
    """A float array of shape ``dims`` in ``dtype`` (lossless conversion), C-contiguous, native order."""
    a = _as_ndarray(name, a)
    if a.dtype != dtype:
        if not _lossless(a.dtype, dtype):
            raise _dtype_error(name, a.dtype, f"{dtype} to match theta (or a dtype that converts to it without loss)")
        a = a.astype(dtype)
    elif not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    _shape(name, a, dims)
    _nonempty(name, a, dims, skip)
    if check_finite:
        _finite(name, a)
    return a


def int_array(name: str, a, dims, low: int, high: int, what: str, skip=()) -> np.ndarray:
    """An integer array of shape ``dims`` with every value in [low, high), as C-contiguous int64."""
    a = _as_ndarray(name, a)
    if a.dtype.kind not in "iu":
        raise _dtype_error(name, a.dtype, f"an integer array of {what}")
    _shape(name, a, dims)
    _nonempty(name, a, dims, skip)
    if a.size == 0:
        return np.ascontiguousarray(a, dtype=I64)
    lo, hi = a.min(), a.max()
    if lo < low or hi >= high:
        bad = lo if lo < low else hi
        where = tuple(int(i) for i in np.argwhere(a == bad)[0])
        raise ValueError(f"{name}: expected {what} in [{low}, {high}), got {bad} at index {where}")
    if a.dtype != I64 or not a.flags.c_contiguous:
        a = np.ascontiguousarray(a, dtype=I64)
    return a


# ---------------------------------------------------------------------------------------------
# pieces of the public signatures
# ---------------------------------------------------------------------------------------------
def theta_arg(spec_: MLPSpec, theta, check_finite: bool, rows: int | None = None, name: str = "theta"):
    """θ of shape (P,), or (P,) / (rows, P) when ``rows`` is given. Returns (theta, dtype)."""
    dtype = params_dtype(name, theta)
    P = spec_.n_params
    theta = _as_ndarray(name, theta)
    if rows is not None and theta.ndim == 2:
        dims = (("n_tasks", rows), ("P", P))
    else:
        dims = (("P", P),)
        if rows is not None and theta.shape != (P,):
            raise ValueError(f"{name}: expected shape (P={P},) or (n_tasks={rows}, P={P}), got {theta.shape}")
    return float_array(name, theta, dims, dtype, check_finite), dtype


def targets_arg(spec_: MLPSpec, Y, lead, dtype: np.dtype, check_finite: bool, name: str = "Y") -> np.ndarray:
    """Y: float targets (*lead, d_out) for 'mse', int labels (*lead,) in [0, d_out) for 'ce'."""
    if spec_.loss == "ce":
        return int_array(name, Y, lead, 0, spec_.d_out, f"class labels (loss='ce', d_out={spec_.d_out})")
    return float_array(name, Y, (*lead, ("d_out", spec_.d_out)), dtype, check_finite)


def adam_state_arg(state, P: int, rows: int | None, dtype: np.dtype, check_finite: bool) -> AdamState:
    """Adam moments m, v of shape (P,) (or (rows, P)), v >= 0, and a step count t >= 0."""
    if not isinstance(state, AdamState):
        raise TypeError(f"state: expected an AdamState or None, got {type(state).__name__}")
    out = []
    for name, a in (("state.m", state.m), ("state.v", state.v)):
        a = _as_ndarray(name, a)
        dims = (("n_tasks", rows), ("P", P)) if rows is not None and a.ndim == 2 else (("P", P),)
        out.append(float_array(name, a, dims, dtype, check_finite))
    if check_finite and (out[1] < 0).any():
        raise ValueError("state.v: expected second moments >= 0, got a negative value")
    t = count("state.t", state.t, minimum=0)
    return AdamState(out[0], out[1], t)


def _check_finite_flag(check_finite) -> bool:
    if not isinstance(check_finite, (bool, np.bool_)):
        raise TypeError(f"check_finite: expected True or False, got {check_finite!r}")
    return bool(check_finite)


# ---------------------------------------------------------------------------------------------
# one function per entry point: each returns the cleaned arguments
# ---------------------------------------------------------------------------------------------
def forward_args(spec_, theta, X, check_finite=True):
    """forward(spec, theta (P,), X (B, d_in)); B may be 0. Returns (theta, X)."""
    spec(spec_)
    check_finite = _check_finite_flag(check_finite)
    theta, dtype = theta_arg(spec_, theta, check_finite)
    X = float_array("X", X, (("B", None), ("d_in", spec_.d_in)), dtype, check_finite, skip=(0,))
    return theta, X


def batch_args(spec_, theta, X, Y, check_finite=True):
    """loss / loss_and_grad(spec, theta (P,), X (B, d_in), Y); B >= 1. Returns (theta, X, Y)."""
    spec(spec_)
    check_finite = _check_finite_flag(check_finite)
    theta, dtype = theta_arg(spec_, theta, check_finite)
    X = float_array("X", X, (("B", None), ("d_in", spec_.d_in)), dtype, check_finite)
    Y = targets_arg(spec_, Y, (("B", X.shape[0]),), dtype, check_finite)
    return theta, X, Y


def tasks_args(spec_, dtype, X, Y, lead_labels, check_finite, names=("X", "Y")):
    """Task data X (*lead, n_points, d_in) and Y with the same leading axes. Returns (X, Y)."""
    X = float_array(names[0], X, (*lead_labels, ("n_points", None), ("d_in", spec_.d_in)), dtype, check_finite)
    lead = tuple((label, X.shape[k]) for k, (label, _) in enumerate(lead_labels)) + (("n_points", X.shape[-2]),)
    return X, targets_arg(spec_, Y, lead, dtype, check_finite, name=names[1])


def plan_arg(plan, lead, n_points: int, name: str = "plan") -> np.ndarray:
    """Index plan (*lead, steps, batch) with every index in [0, n_points)."""
    dims = (*lead, ("steps", None), ("batch", None))
    return int_array(name, plan, dims, 0, n_points, f"point indices (n_points={n_points})")


def in_dtype(name: str, value: float, dtype: np.dtype, positive: bool = True) -> None:
    """ValueError unless ``value`` stays finite (and, if ``positive``, non-zero) when stored in ``dtype``."""
    with np.errstate(over="ignore", under="ignore"):
        stored = np.dtype(dtype).type(value)
    if not np.isfinite(stored):
        raise ValueError(f"{name}: {value!r} overflows {np.dtype(dtype).name} (largest {np.finfo(dtype).max:.3g}); "
                         "use a smaller value or float64")
    if positive and value != 0 and stored == 0:
        raise ValueError(f"{name}: {value!r} is 0 in {np.dtype(dtype).name} (smallest {np.finfo(dtype).smallest_subnormal:.3g}); "
                         "use a larger value or float64")


def optimizer_in_dtype(opt: InnerOptimizer, dtype: np.dtype) -> None:
    """The optimizer's step size and Adam ε mean what they say in ``dtype`` (no underflow to 0, no overflow)."""
    in_dtype("opt.lr", opt.lr, dtype)
    if opt.name == "adam":
        in_dtype("opt.eps", opt.eps, dtype)


def inner_loop_args(spec_, theta, X, Y, plan, opt, state=None, check_finite=True):
    """inner_loop(spec, theta (P,)|(n, P), X (n, pts, d_in), Y, plan (n, steps, batch), opt, state).

    Returns (theta, X, Y, plan, state) cleaned; ``state`` is None for SGD.
    """
    spec(spec_)
    optimizer(opt)
    check_finite = _check_finite_flag(check_finite)
    dtype = params_dtype("theta", theta)
    optimizer_in_dtype(opt, dtype)
    X, Y = tasks_args(spec_, dtype, X, Y, (("n_tasks", None),), check_finite)
    n_tasks, n_points = X.shape[0], X.shape[1]
    theta, _ = theta_arg(spec_, theta, check_finite, rows=n_tasks)
    plan = plan_arg(plan, (("n_tasks", n_tasks),), n_points)
    if opt.name != "adam" or state is None:
        state = None
    else:
        state = adam_state_arg(state, spec_.n_params, n_tasks, dtype, check_finite)
    return theta, X, Y, plan, state


def out_arg(out, opt, theta, X, Y, state, n_tasks: int, P: int):
    """inner_loop's ``out``: (phi,) for SGD or (phi, m, v) for Adam, each an (n_tasks, P) array of θ's
    dtype, C-contiguous and writeable; no conversion (the result is written into them).

    ``theta``, ``X``, ``Y``, ``state`` are the cleaned inputs. θ may be ``phi`` itself and
    ``state.m`` / ``state.v`` may be ``m`` / ``v`` (the same memory: a task reads its start row
    before it writes it); no other input may overlap an output, nor the outputs each other.
    Returns ``out`` as a tuple, or None.
    """
    if out is None:
        return None
    names = ("phi", "m", "v") if opt.name == "adam" else ("phi",)
    want = "(phi, m, v) for Adam" if opt.name == "adam" else "(phi,) for SGD"
    if not isinstance(out, (tuple, list)):
        raise TypeError(f"out: expected a tuple {want}, got {type(out).__name__}")
    if len(out) != len(names):
        raise ValueError(f"out: expected a tuple {want}, got {len(out)} arrays")
    dtype = theta.dtype
    for name, a in zip(names, out):
        label = f"out[{names.index(name)}] ({name})"
        if type(a) is not np.ndarray:
            raise TypeError(f"{label}: expected a NumPy array to write into, got {type(a).__name__}")
        if a.dtype != dtype:
            raise TypeError(f"{label}: expected dtype {dtype} to match theta, got dtype {a.dtype} "
                            "(outputs are written into, not converted)")
        if a.shape != (n_tasks, P):
            raise ValueError(f"{label}: expected shape (n_tasks={n_tasks}, P={P}), got {a.shape}")
        if not (a.flags.c_contiguous and a.flags.writeable):
            raise ValueError(f"{label}: expected a C-contiguous, writeable array")
    for j in range(len(out)):
        for k in range(j):
            if np.may_share_memory(out[j], out[k]):
                raise ValueError(f"out: {names[k]} and {names[j]} overlap; expected separate arrays")
    inputs = [("theta", theta, "phi"), ("X", X, None), ("Y", Y, None)]
    if state is not None:
        inputs += [("state.m", state.m, "m"), ("state.v", state.v, "v")]
    for in_name, a, may_be in inputs:
        for name, o in zip(names, out):
            if not np.may_share_memory(a, o):
                continue
            if name == may_be and a.size == o.size and a.ctypes.data == o.ctypes.data:
                continue  # the same array: adapted in place
            allowed = f" (it may be {may_be} itself)" if may_be in names else ""
            raise ValueError(f"out[{names.index(name)}] ({name}): overlaps {in_name}{allowed}; "
                             "expected separate memory")
    return tuple(out)


def train_chunk_args(spec_, theta, X, Y, plans, eps, opt, state=None, check_finite=True):
    """train_chunk(spec, theta (P,), X (iters, n, pts, d_in), Y, plans (iters, n, steps, batch), eps (iters,), ...).

    Returns (theta, X, Y, plans, eps, state) cleaned: eps float64 with finite values >= 0; a
    ``state`` only with Adam and state_policy 'carry' (shape (P,)).
    """
    spec(spec_)
    optimizer(opt)
    check_finite = _check_finite_flag(check_finite)
    theta, dtype = theta_arg(spec_, theta, check_finite)
    optimizer_in_dtype(opt, dtype)
    X, Y = tasks_args(spec_, dtype, X, Y, (("iters", None), ("n_tasks", None)), check_finite)
    iters, n_tasks, n_points = X.shape[:3]
    plans = plan_arg(plans, (("iters", iters), ("n_tasks", n_tasks)), n_points, name="plans")
    eps = eps_arg(eps, iters)
    if state is not None:
        if opt.name != "adam" or opt.state_policy != "carry":
            raise ValueError(f"state: a chunk carries Adam state only with InnerOptimizer('adam', "
                             f"state_policy='carry'), got an AdamState with {opt.name!r}/{opt.state_policy!r}")
        state = adam_state_arg(state, spec_.n_params, None, dtype, check_finite)
    return theta, X, Y, plans, eps, state


def eps_arg(eps, iters: int | None, name: str = "eps") -> np.ndarray:
    """Outer step sizes: shape (iters,), finite, >= 0, as float64."""
    eps = _as_ndarray(name, eps)
    if eps.dtype != F64:
        if not _lossless(eps.dtype, F64):
            raise _dtype_error(name, eps.dtype, "float64 step sizes (or a dtype that converts without loss)")
        eps = eps.astype(F64)
    _shape(name, eps, (("iters", iters),))
    _nonempty(name, eps, (("iters", iters),))
    if not (np.isfinite(eps).all() and (eps >= 0).all()):
        bad = eps[~(np.isfinite(eps) & (eps >= 0))][0]
        raise ValueError(f"{name}: expected finite step sizes >= 0, got {bad}")
    return np.ascontiguousarray(eps)


def update_args(theta, phi, eps, check_finite=True):
    """reptile_update(theta (P,), phi (n_tasks, P), eps >= 0). Returns (theta, phi, eps as θ's dtype)."""
    check_finite = _check_finite_flag(check_finite)
    dtype = params_dtype("theta", theta)
    theta = _as_ndarray("theta", theta)
    if theta.ndim != 1:
        raise ValueError(f"theta: expected shape (P,), got {theta.shape}")
    theta = float_array("theta", theta, (("P", None),), dtype, check_finite)
    phi = float_array("phi", phi, (("n_tasks", None), ("P", theta.shape[0])), dtype, check_finite)
    eps = step_size("eps", eps, allow_zero=True)
    in_dtype("eps", eps, dtype)
    return theta, phi, dtype.type(eps)


def warmup_args(spec_, dtype, opt):
    """warmup(spec, dtype float32|float64, opt). Returns (spec, dtype, opt)."""
    spec(spec_)
    optimizer(opt)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from None
    if dt not in (F32, F64):
        raise TypeError(f"dtype: expected float32 or float64, got {dt}")
    optimizer_in_dtype(opt, dt)
    return spec_, dt, opt


def meta_train_args(spec_, theta, sample_block, block_iters, config, backend, start, stop, state, callback,
                    chunk_iters, check_finite=True):
    """meta_train's arguments. Returns (theta, block_iters, start, stop, state, chunk_iters)."""
    spec(spec_)
    if not isinstance(config, ReptileConfig):
        raise TypeError(f"config: expected a ReptileConfig, got {type(config).__name__}")
    backend_arg(backend, "train_chunk")
    if not callable(sample_block):
        raise TypeError("sample_block: expected a callable sample_block(b) -> (X, Y, plans), "
                        f"got {type(sample_block).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected a callable or None, got {type(callback).__name__}")
    check_finite = _check_finite_flag(check_finite)
    theta, dtype = theta_arg(spec_, theta, check_finite)
    in_dtype("config.eps0", config.eps0, dtype)
    in_dtype("config.eps_final", config.eps_final, dtype)
    optimizer_in_dtype(config.inner, dtype)
    block_iters = count("block_iters", block_iters)
    start = count("start", start, minimum=0)
    stop = config.iters if stop is None else count("stop", stop, minimum=0)
    if not start <= stop <= config.iters:
        raise ValueError(f"start, stop: expected 0 <= start <= stop <= config.iters={config.iters}, "
                         f"got start={start}, stop={stop}")
    if chunk_iters is not None:
        chunk_iters = count("chunk_iters", chunk_iters)
    if state is not None:
        if config.inner.name != "adam" or config.inner.state_policy != "carry":
            raise ValueError("state: meta_train carries Adam state only with InnerOptimizer('adam', "
                             "state_policy='carry')")
        state = adam_state_arg(state, spec_.n_params, None, dtype, check_finite)
    return theta, block_iters, start, stop, state, chunk_iters


def block_arg(b: int, block_iters: int, block):
    """What ``sample_block(b)`` returned: a tuple (X, Y, plans) with ``block_iters`` rows each."""
    if not (isinstance(block, tuple) and len(block) == 3):
        raise TypeError(f"sample_block({b}): expected a tuple (X, Y, plans), got {type(block).__name__}")
    for name, a in zip(("X", "Y", "plans"), block):
        shape = getattr(a, "shape", None)
        if not shape or shape[0] != block_iters:
            raise ValueError(f"sample_block({b}): expected {name} with block_iters={block_iters} rows, "
                             f"got shape {shape}")
    return block


def backend_arg(backend, needs: str):
    """A Backend: anything with a callable attribute ``needs`` ("inner_loop" or "train_chunk")."""
    if not callable(getattr(backend, needs, None)):
        hint = f"; use get_backend({backend!r})" if isinstance(backend, str) else ""
        raise TypeError(f"backend: expected a Backend from minireptile.get_backend, got {type(backend).__name__}{hint}")
    return backend


def evaluate_args(spec_, theta, X, Y, X_eval, Y_eval, opt, backend, steps, check_finite=True):
    """adapt_and_score's arguments. Returns (theta, X, Y, X_eval, Y_eval, steps)."""
    spec(spec_)
    optimizer(opt)
    backend_arg(backend, "inner_loop")
    check_finite = _check_finite_flag(check_finite)
    theta, dtype = theta_arg(spec_, theta, check_finite)
    X, Y = tasks_args(spec_, dtype, X, Y, (("n_tasks", None),), check_finite)
    X_eval, Y_eval = tasks_args(spec_, dtype, X_eval, Y_eval, (("n_tasks", X.shape[0]),), check_finite,
                                names=("X_eval", "Y_eval"))
    if X.shape[0] < 2:
        raise ValueError(f"X: expected n_tasks >= 2 (a confidence interval needs two tasks), got shape {X.shape}")
    try:
        steps = tuple(steps)
    except TypeError:
        raise TypeError(f"steps: expected a sequence of integers, got {type(steps).__name__}") from None
    steps = tuple(count("steps", s, minimum=0) for s in steps)
    if not steps or any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"steps: expected increasing non-negative counts, got {steps}")
    return theta, X, Y, X_eval, Y_eval, steps


def sine_tasks_arg(tasks):
    """Held-out sine tasks: anything with x_shots, y_shots, x_grid, y_grid arrays (SineEvalTasks)."""
    if not all(hasattr(tasks, k) for k in ("x_shots", "y_shots", "x_grid", "y_grid")):
        raise TypeError(f"tasks: expected SineEvalTasks (from sine_eval_tasks), got {type(tasks).__name__}")
    return tasks


# ---------------------------------------------------------------------------------------------
# task sources (minireptile.tasks.sources): the user's own data, checked once when a source is built
# ---------------------------------------------------------------------------------------------
def _float_data(name: str, a, dims) -> np.ndarray:
    """Real-valued data of shape ``dims`` (any lossless float dtype), finite; kept in its dtype."""
    a = _as_ndarray(name, a)
    if float_dtype_for(a.dtype) is None:
        raise _dtype_error(name, a.dtype, "real numbers (float32 or float64)")
    if a.dtype.kind != "f" or a.dtype.itemsize < 4:
        a = a.astype(float_dtype_for(a.dtype))
    _shape(name, a, dims)
    _nonempty(name, a, dims)
    _finite(name, a)
    return np.ascontiguousarray(a)


def labelled_arrays_arg(vectors, labels, vname: str = "vectors", lname: str = "labels"):
    """A labelled data set: vectors (n_examples, d_in) real, labels (n_examples,) integer class ids."""
    vectors = _float_data(vname, vectors, (("n_examples", None), ("d_in", None)))
    labels = _as_ndarray(lname, labels)
    if labels.dtype.kind not in "iu":
        raise _dtype_error(lname, labels.dtype, "an integer array of class ids")
    _shape(lname, labels, (("n_examples", vectors.shape[0]),))
    return vectors, np.ascontiguousarray(labels, dtype=I64)


def _targets_or_labels(name: str, Y, lead) -> np.ndarray:
    """Y (*lead, d_out) real targets or (*lead,) integer labels >= 0."""
    Y = _as_ndarray(name, Y)
    if Y.ndim == len(lead) and Y.dtype.kind in "iu":
        _shape(name, Y, lead)
        if Y.size and Y.min() < 0:
            raise ValueError(f"{name}: expected class labels >= 0, got {Y.min()}")
        return np.ascontiguousarray(Y, dtype=I64)
    if Y.ndim == len(lead) and Y.dtype.kind == "f":
        want = _describe((*lead, ("d_out", None)))
        raise ValueError(f"{name}: expected float targets of shape {want} (add a last axis: Y[..., None]) or integer "
                         f"labels of shape {_describe(lead)}, got float {Y.shape}")
    if Y.ndim != len(lead) + 1:
        raise ValueError(f"{name}: expected float targets of shape {_describe((*lead, ('d_out', None)))} or integer "
                         f"labels of shape {_describe(lead)}, got {Y.shape}")
    return _float_data(name, Y, (*lead, ("d_out", None)))


def task_stack_arg(X, Y):
    """A stack of tasks: X (n_tasks, n_points, d_in) real; Y (n_tasks, n_points, d_out) real or (n_tasks, n_points) int."""
    Xa = _as_ndarray("X", X)
    if Xa.ndim == 2:
        raise ValueError(f"X: expected shape (n_tasks, n_points, d_in), got {Xa.shape}; for one input feature add "
                         "a last axis (X[..., None])")
    X = _float_data("X", Xa, (("n_tasks", None), ("n_points", None), ("d_in", None)))
    Y = _targets_or_labels("Y", Y, (("n_tasks", X.shape[0]), ("n_points", X.shape[1])))
    if X.shape[1] < 2:
        raise ValueError(f"X: expected n_points >= 2 per task (some to adapt on, some to score), got {X.shape}")
    return X, Y


def sampled_task_arg(task, shapes, n_classes: int | None = None):
    """What a task sampler returned: (X (n_points, d_in), Y (n_points, d_out) or (n_points,) int).

    ``shapes``: the (X.shape, Y.shape) of the first task; every later task must match them.
    """
    if not (isinstance(task, tuple) and len(task) == 2):
        raise TypeError(f"sample(rng): expected a tuple (X, Y), got {type(task).__name__}")
    X = _float_data("sample(rng) X", task[0], (("n_points", None), ("d_in", None)))
    Y = _targets_or_labels("sample(rng) Y", task[1], (("n_points", X.shape[0]),))
    if X.shape[0] < 2:
        raise ValueError(f"sample(rng) X: expected n_points >= 2 (some to adapt on, some to score), got {X.shape}")
    if shapes is not None and (X.shape, Y.shape) != shapes:
        raise ValueError(f"sample(rng): expected every task with X of shape {shapes[0]} and Y of shape {shapes[1]} "
                         f"(as the first task), got {X.shape} and {Y.shape}")
    if n_classes is not None and Y.size and Y.max() >= n_classes:
        raise ValueError(f"sample(rng) Y: expected labels in [0, {n_classes}), got {Y.max()}")
    return X, Y


# ---------------------------------------------------------------------------------------------
# the second-order algorithms (minireptile.algorithms) and few-shot scoring (minireptile.evaluation)
# ---------------------------------------------------------------------------------------------
def lr_arg(lr, name: str = "lr") -> float:
    """A finite step size > 0."""
    return step_size(name, lr)


def algorithm_args(spec_, theta, X, Y, plan, query=None, check_finite=True, min_steps: int = 0):
    """maml_gradient, fomaml_gradient, taylor_terms, ...: theta (P,), X (n, pts, d_in), Y, plan (n, k, batch)
    with indices in [0, pts) and k >= ``min_steps``, query (n, q >= 1) in [0, pts). Returns the cleaned arrays."""
    spec(spec_)
    check_finite = _check_finite_flag(check_finite)
    theta, dtype = theta_arg(spec_, theta, check_finite)
    X, Y = tasks_args(spec_, dtype, X, Y, (("n_tasks", None),), check_finite)
    n, pts = X.shape[0], X.shape[1]
    plan = int_array("plan", plan, (("n_tasks", n), ("steps", None), ("batch", None)), 0, pts,
                     f"point indices (n_points={pts})", skip=(1,))
    if plan.shape[1] < min_steps:
        raise ValueError(f"plan: expected at least {min_steps} steps, got shape {plan.shape}")
    if query is not None:
        query = int_array("query", query, (("n_tasks", n), ("q", None)), 0, pts, f"point indices (n_points={pts})")
    return theta, X, Y, plan, query


def hvp_args(spec_, theta, X, Y, v, rows: bool = False, check_finite=True):
    """loss_grad_hvp / hvp: theta, v (P,), X (B, d_in), Y. With ``rows`` (batched_loss_grad_hvp): theta and v
    (P,) or (n, P), X (n, B, d_in), Y with the same leading axes; v may be None."""
    spec(spec_)
    check_finite = _check_finite_flag(check_finite)
    if not rows:
        theta, X, Y = batch_args(spec_, theta, X, Y, check_finite)
        return theta, X, Y, float_array("v", v, (("P", spec_.n_params),), theta.dtype, check_finite)
    dtype = params_dtype("theta", theta)
    X, Y = tasks_args(spec_, dtype, X, Y, (("n_tasks", None),), check_finite, names=("X", "Y"))
    theta, _ = theta_arg(spec_, theta, check_finite, rows=X.shape[0])
    if v is not None:
        v, _ = theta_arg(spec_, v, check_finite, rows=X.shape[0], name="v")
    return theta, X, Y, v


def scores_args(spec_, phi, X, Y, check_finite=True):
    """query_scores: phi (n, P), X (n, q, d_in), Y (n, q) labels in [0, d_out) (loss 'ce')."""
    spec(spec_)
    if spec_.loss != "ce":
        raise ValueError(f"spec: expected loss='ce' (classification), got {spec_.loss!r}")
    dtype = params_dtype("phi", phi)
    X, Y = tasks_args(spec_, dtype, X, Y, (("n_tasks", None),), check_finite)
    phi, _ = theta_arg(spec_, phi, check_finite, rows=X.shape[0], name="phi")
    return np.broadcast_to(phi, (X.shape[0], spec_.n_params)), X, Y


def neighbour_args(Xs, Ys, Xq, Yq):
    """nearest_neighbour_accuracy: Xs (n, s, d) and Xq (n, q, d) finite reals, Ys (n, s) and Yq (n, q) labels >= 0."""
    Xs = _float_data("Xs", Xs, (("n_tasks", None), ("s", None), ("d_in", None)))
    Xq = _float_data("Xq", Xq, (("n_tasks", Xs.shape[0]), ("q", None), ("d_in", Xs.shape[2])))
    n = Xs.shape[0]
    Ys = int_array("Ys", Ys, (("n_tasks", n), ("s", Xs.shape[1])), 0, np.iinfo(np.int64).max, "class labels")
    Yq = int_array("Yq", Yq, (("n_tasks", n), ("q", Xq.shape[1])), 0, np.iinfo(np.int64).max, "class labels")
    return Xs, Ys, Xq, Yq


def classify_args(spec_, theta, Xs, Ys, Xq, Yq, plan, check_finite=True):
    """adapt_and_classify: theta (P,) or (n, P), support Xs (n, s, d_in) / Ys (n, s) labels, query Xq (n, q, d_in) /
    Yq (n, q) labels, plan (n, S, batch) with indices in [0, s) (S may be 0)."""
    spec(spec_)
    dtype = params_dtype("theta", theta)
    Xs, Ys = tasks_args(spec_, dtype, Xs, Ys, (("n_tasks", None),), check_finite, names=("Xs", "Ys"))
    n, s = Xs.shape[0], Xs.shape[1]
    Xq, Yq = tasks_args(spec_, dtype, Xq, Yq, (("n_tasks", n),), check_finite, names=("Xq", "Yq"))
    theta, _ = theta_arg(spec_, theta, check_finite, rows=n)
    plan = int_array("plan", plan, (("n_tasks", n), ("steps", None), ("batch", None)), 0, s,
                     f"support indices (s={s})", skip=(1,))
    return theta, Xs, Ys, Xq, Yq, plan


def shots_arg(shots, n_points: int) -> int:
    """Adaptation points per task for your own tasks: fewer than ``n_points`` (the rest are scored).

    None picks half the points (at least 1).
    """
    if shots is None:
        return max(1, n_points // 2)
    shots = count("shots", shots)
    if shots >= n_points:
        raise ValueError(f"shots: expected fewer than the n_points={n_points} points of a task (the rest "
                         f"are scored), got {shots}")
    return shots
