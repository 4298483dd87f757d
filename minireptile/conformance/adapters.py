"""The adapter protocol: run a Python implementation in-process on every case of the suite.

Contract
--------
An adapter is any object (a module, a class instance, or a class, which is instantiated with no
arguments) with any subset of these methods. Every array argument is a NumPy array (float arrays in
the adapter's ``dtype``, labels and plans int64); converting to the adapter's framework, and back to
NumPy, is the adapter's job. ``spec`` is a :class:`~minireptile.MLPSpec`, ``opt`` an
:class:`~minireptile.InnerOptimizer`; θ is flat (P,) in the layout of docs/conformance.md.

    grad(spec, theta, x, y) -> (loss, grad)          one minibatch: x (B, d_in), y (B, d_out) or (B,)
                                                     → float, (P,)                [loss, grad]
    hvp(spec, theta, x, y, v) -> hv                  ∇²L(θ)·v on that minibatch → (P,)          [hvp]
    inner_loop(spec, theta, x, y, plan, opt) -> phis one task: x (N, d_in), plan (k, b); Adam from
                                                     m = v = 0, t = 0 → (k, P), φ after each step  [phi_s]
    fomaml(spec, theta, X, Y, plan, lr) -> grads     X (n, N, d_in), plan (n, k, b) → (n, P)  [fomaml_grad]
    maml(spec, theta, X, Y, plan, query, lr) -> g    query (n, q) → (n, P)                     [maml_grad]
    reptile(spec, theta, X, Y, plans, eps, opt) -> θ X (T, n, N, d_in), plans (T, n, k, b), eps (T,);
                                                     T outer iterations from θ (Adam state, for
                                                     ``state_policy="carry"``, starts at zero) → (P,)  [theta_t]

Optional attributes: ``name`` (str, for the report); ``dtype`` ("float64" default, or "float32": the
float inputs are cast to it and the float32 tolerances apply); ``supports(spec, opt, meta_batch)``
returning True, or False / a reason (str) to skip a case; ``to_native(array)`` (the conversion into
the framework, timed separately by ``bench``). A method that raises ``NotImplementedError`` skips its
stage for that case; any other exception fails the stage with its message.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path

import numpy as np

from ..mlp import MLPSpec
from ..optim import InnerOptimizer
from .suite import Suite

METHODS = ("grad", "hvp", "inner_loop", "fomaml", "maml", "reptile")


def load_adapter(target: str):
    """The adapter named ``MODULE:OBJECT`` (or ``path/to/file.py:OBJECT``, or a bare ``MODULE``).

    The current folder is importable, as with ``python -m``. A class is instantiated with no arguments.

    Raises
    ------
    ValueError
        The module cannot be imported, has no such object, or the object has none of the methods.
    """
    module_name, _, attr = target.partition(":")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ValueError(f"{module_name}: no such file")
            spec = importlib.util.spec_from_file_location(f"_adapter_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except ValueError:
        raise
    except Exception as exc:  # an import error of any kind is the user's module's problem: one line
        raise ValueError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    obj = module
    for part in filter(None, attr.split(".")):
        if not hasattr(obj, part):
            raise ValueError(f"{module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not any(callable(getattr(obj, m, None)) for m in METHODS):
        raise ValueError(f"{target!r} is not an adapter: it has none of the methods {', '.join(METHODS)}")
    if inspect.isclass(obj):
        try:
            obj = obj()
        except Exception as exc:  # noqa: BLE001 (the user's constructor: one line, not a traceback)
            raise ValueError(f"{target!r}: the class cannot be instantiated without arguments "
                             f"({type(exc).__name__}: {exc})") from None
    return obj


def adapter_name(adapter) -> str:
    return str(getattr(adapter, "name", None) or getattr(adapter, "__name__", None) or type(adapter).__name__)


def adapter_dtype(adapter) -> np.dtype:
    dt = np.dtype(getattr(adapter, "dtype", "float64"))
    if dt not in (np.float32, np.float64):
        raise ValueError(f"adapter dtype: expected float32 or float64, got {dt}")
    return dt


def case_objects(case: dict) -> tuple[MLPSpec, InnerOptimizer]:
    """The spec and the inner optimizer of a manifest case."""
    cfg = case["config"]
    return MLPSpec.from_dict(cfg["spec"]), InnerOptimizer(**cfg["optimizer"])


def _cast(arrays: dict[str, np.ndarray], dtype) -> dict[str, np.ndarray]:
    return {k: (a.astype(dtype) if a.dtype.kind == "f" else a) for k, a in arrays.items()}


def run_adapter(adapter, suite: Suite, cases: list[str] | None = None):
    """Call the adapter's methods on every case (or those named in ``cases``).

    Returns
    -------
    results : dict  {case: {output: ndarray}}
    skipped : dict  {(case, output): reason}
    errors : dict   {(case, output): message} for calls that raised
    """
    dtype = adapter_dtype(adapter)
    results, skipped, errors = {}, {}, {}
    for c in suite.cases:
        name = c["name"]
        if cases is not None and name not in cases:
            continue
        spec, opt = case_objects(c)
        outputs = list(c["outputs"])
        supports = getattr(adapter, "supports", None)
        ok = True if supports is None else supports(spec, opt, c["config"]["meta_batch"])
        if ok is not True:
            reason = ok if isinstance(ok, str) else "the adapter does not support this case"
            skipped.update({(name, o): reason for o in outputs})
            continue
        a = _cast({k: v for k, v in suite.arrays(name).items() if not k.startswith("expected/")}, dtype)
        got: dict[str, np.ndarray] = {}
        for output, method, call in _calls(spec, opt, a, outputs):
            fn = getattr(adapter, method, None)
            if not callable(fn):
                skipped[name, output] = f"the adapter has no {method}()"
                continue
            try:
                got[output] = call(fn)
            except NotImplementedError as exc:
                skipped[name, output] = f"{method}() not implemented" + (f": {exc}" if str(exc) else "")
            except Exception as exc:  # noqa: BLE001 (an adapter's error fails its stage, it does not stop the check)
                errors[name, output] = f"{method}() raised {type(exc).__name__}: {' '.join(str(exc).split())}"
        if dtype == np.float32:               # a float32 implementation is judged as one, also where it hands back
            got = {k: _as32(v) for k, v in got.items()}   # Python floats (the loss) or float64 arrays
        results[name] = got
    # outputs computed together (loss and grad, the phi_s, the theta_t) come back as one entry: split them
    return {n: _split(r) for n, r in results.items()}, _split_keys(skipped, suite), _split_keys(errors, suite)


def _calls(spec, opt, a, outputs):
    """(output key, method, call) for each stage group of one case."""
    x0, y0 = a["X"][0, 0, a["plans"][0, 0, 0]], a["Y"][0, 0, a["plans"][0, 0, 0]]
    yield "loss+grad", "grad", lambda f: _pair(f(spec, a["theta0"], x0, y0))
    yield "hvp", "hvp", lambda f: np.asarray(f(spec, a["theta0"], x0, y0, a["v"]))
    yield "phi_s", "inner_loop", lambda f: np.asarray(f(spec, a["theta0"], a["X"][0, 0], a["Y"][0, 0],
                                                        a["plans"][0, 0], opt))
    if "fomaml_grad" in outputs:
        yield "fomaml_grad", "fomaml", lambda f: np.asarray(f(spec, a["theta0"], a["X"][0], a["Y"][0], a["plans"][0],
                                                              opt.lr))
        yield "maml_grad", "maml", lambda f: np.asarray(f(spec, a["theta0"], a["X"][0], a["Y"][0], a["plans"][0],
                                                          a["query"], opt.lr))
    checkpoints = [int(o[6:]) for o in outputs if o.startswith("theta_")]
    yield "theta_t", "reptile", lambda f: {t: np.asarray(f(spec, a["theta0"], a["X"][:t], a["Y"][:t], a["plans"][:t],
                                                            a["eps"][:t], opt)) for t in checkpoints}


def _as32(value):
    if isinstance(value, tuple):
        return tuple(_as32(v) for v in value)
    if isinstance(value, dict):
        return {k: _as32(v) for k, v in value.items()}
    return value.astype(np.float32) if value.dtype == np.float64 else value


def _pair(value):
    loss, grad = value
    return np.asarray(loss), np.asarray(grad)


def _split(got: dict) -> dict[str, np.ndarray]:
    out = {}
    for key, value in got.items():
        if key == "loss+grad":
            out["loss"], out["grad"] = value
        elif key == "phi_s":
            out.update({f"phi_{s + 1}": value[s] for s in range(len(value))} if value.ndim == 2 else {"phi_1": value})
        elif key == "theta_t":
            out.update({f"theta_{t}": v for t, v in value.items()})
        else:
            out[key] = value
    return out


def _split_keys(table: dict, suite: Suite) -> dict:
    out = {}
    for (name, key), reason in table.items():
        outputs = suite.case(name)["outputs"]
        group = {"loss+grad": ["loss", "grad"], "phi_s": [o for o in outputs if o.startswith("phi_")],
                 "theta_t": [o for o in outputs if o.startswith("theta_")]}.get(key, [key])
        out.update({(name, o): reason for o in group})
    return out


class ReferenceAdapter:
    """The NumPy reference itself, as an adapter (an example of the protocol, and the suite's self-check)."""

    name = "minireptile NumPy reference"
    dtype = "float64"

    def grad(self, spec, theta, x, y):
        from ..reference import loss_and_grad
        return loss_and_grad(spec, theta, x, y)

    def hvp(self, spec, theta, x, y, v):
        from ..algorithms.hvp import hvp
        return hvp(spec, theta, x, y, v)

    def inner_loop(self, spec, theta, x, y, plan, opt):
        from ..reference import inner_loop
        return np.stack([inner_loop(spec, theta, x[None], y[None], plan[None, :s], opt).phi[0]
                         for s in range(1, plan.shape[0] + 1)])

    def fomaml(self, spec, theta, X, Y, plan, lr):
        from ..algorithms.maml import fomaml_gradient
        return fomaml_gradient(spec, theta, X, Y, plan, lr).grad

    def maml(self, spec, theta, X, Y, plan, query, lr):
        from ..algorithms.maml import maml_gradient
        return maml_gradient(spec, theta, X, Y, plan, query, lr).grad

    def reptile(self, spec, theta, X, Y, plans, eps, opt):
        from ..backends import get_backend
        return get_backend("numpy").train_chunk(spec, theta, X, Y, plans, eps, opt)[0]
