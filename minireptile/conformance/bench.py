"""Time an adapter's ``reptile`` beside the numba backend on identical work, after checking it agrees.

Contract
--------
Workloads (:data:`WORKLOADS`): the gist's network and inner loop (1-64-64-1 tanh, MSE, 5 SGD steps of
10 points, lr 0.02) on sine tasks from :func:`minireptile.sine_block`, serial (one task per outer
iteration) and meta-batch 256, in float32 and float64. For each: both implementations run once
(warm-up: compiling, tracing) and their θ are compared; then each is timed ``repeats`` times and the
median seconds per outer iteration kept. Where the adapter has ``to_native(array)``, converting the
inputs is timed separately and reported as ``conversion_s`` (also contained in the adapter's time).
Times depend on the machine and its load; the report names the CPU and the versions.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..backends import get_backend
from ..mlp import MLPSpec, init_params
from ..optim import InnerOptimizer
from ..reptile import epsilon_schedule
from ..tasks.sine import get_preset, sine_block
from ..tasks.streams import DEFAULT_SEED, INIT, stream_rng
from .adapters import adapter_name


@dataclass(frozen=True)
class Workload:
    name: str
    meta_batch: int
    iters: int                       # outer iterations per timed call
    dtype: str


WORKLOADS = tuple(Workload(f"{kind}-{dt}", mb, iters, dt)
                  for kind, mb, iters in (("serial", 1, 100), ("mb256", 256, 2)) for dt in ("float32", "float64"))


@dataclass
class BenchRow:
    workload: str
    meta_batch: int
    iters: int
    dtype: str
    numba_s_per_iter: float
    adapter_s_per_iter: float
    ratio: float                     # adapter / numba (> 1: the adapter is slower)
    conversion_s: float | None       # converting the inputs with the adapter's to_native (None: not declared)
    max_rel_diff: float              # max |θ_adapter − θ_numba| / max |θ_numba| after the warm-up call


def workload_arrays(w: Workload, seed: int = DEFAULT_SEED):
    """spec, opt and the arrays (θ0, X, Y, plans, eps) of a workload, from the gist preset."""
    preset = get_preset("gist")
    spec = MLPSpec((1, *preset.hidden, 1), preset.activation, "mse")
    opt = InnerOptimizer("sgd", preset.inner_lr)
    dtype = np.dtype(w.dtype)
    theta = init_params(spec, stream_rng(seed, INIT), dtype)
    X, Y, plans = sine_block(seed, 0, w.iters, w.meta_batch, preset, 5, 10, dtype)
    eps = epsilon_schedule(np.arange(w.iters), w.iters, 0.1, 0.0)
    return spec, opt, (theta, X, Y, plans, eps)


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(adapter, workloads=WORKLOADS, repeats: int = 5, seed: int = DEFAULT_SEED, progress=None) -> dict:
    """Run every workload; returns a JSON-ready dict with the rows, the machine and the versions.

    Raises
    ------
    ValueError
        The adapter has no ``reptile`` method.
    """
    if not callable(getattr(adapter, "reptile", None)):
        raise ValueError(f"{adapter_name(adapter)}: bench times reptile(), which this adapter does not have")
    numba = get_backend("numba")
    to_native = getattr(adapter, "to_native", None)
    rows = []
    for w in workloads:
        if progress is not None:
            progress(w)
        spec, opt, arrays = workload_arrays(w, seed)
        numba.warmup(spec, np.dtype(w.dtype), opt)
        ref = numba.train_chunk(spec, *arrays, opt)[0]
        got = np.asarray(adapter.reptile(spec, *arrays, opt), dtype=np.float64)
        rel = float(np.max(np.abs(got - ref)) / np.max(np.abs(ref))) if got.shape == ref.shape else float("inf")
        t_numba = _median_seconds(lambda: numba.train_chunk(spec, *arrays, opt), repeats)
        t_adapter = _median_seconds(lambda: adapter.reptile(spec, *arrays, opt), repeats)
        conv = _median_seconds(lambda: [to_native(a) for a in arrays], repeats) if callable(to_native) else None
        rows.append(BenchRow(w.name, w.meta_batch, w.iters, w.dtype, t_numba / w.iters, t_adapter / w.iters,
                             t_adapter / t_numba, conv, rel))
    from .._version import __version__
    return {"adapter": adapter_name(adapter), "repeats": repeats, "machine": {"cpu": _cpu(), "python":
            platform.python_version(), "numpy": np.__version__, "minireptile": __version__},
            "rows": [asdict(r) for r in rows]}


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def table(result: dict) -> list[str]:
    """The ratio table as text lines."""
    head = (f"{'workload':16} {'tasks':>5} {'numba ms/iter':>13} {'adapter ms/iter':>15} {'ratio':>7} "
            f"{'conversion ms':>13} {'max rel diff':>12}")
    out = [f"{result['adapter']} beside minireptile's numba backend (median of {result['repeats']}; "
           f"{result['machine']['cpu']})", head, "-" * len(head)]
    for r in result["rows"]:
        conv = f"{1e3 * r['conversion_s']:13.3f}" if r["conversion_s"] is not None else f"{'-':>13}"
        out.append(f"{r['workload']:16} {r['meta_batch']:5d} {1e3 * r['numba_s_per_iter']:13.3f} "
                   f"{1e3 * r['adapter_s_per_iter']:15.3f} {r['ratio']:7.2f} {conv} {r['max_rel_diff']:12.1e}")
    out.append("ratio = adapter time / numba time (> 1: slower than numba)")
    return out
