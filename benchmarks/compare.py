"""Compare minireptile's backends with the PyTorch and JAX peers on identical Reptile workloads.

    python benchmarks/compare.py [--quick] [--json PATH] [--plot PATH] [--repeats N] [--no-full-check]
                                 [--torch-threads N] [--isa native|avx2|avx512|sse]

What it does
------------
1. Workloads: the gist network (1-64-64-1 tanh, MSE), 5 inner SGD steps of minibatch 10 at lr
   0.02, ε annealed from 0.1 over 30000 iterations; serial Reptile in float32 and float64, and
   batched Reptile with meta-batch 32 and 256 in float32. Every implementation gets the same θ0,
   tasks, minibatch plans and ε (``init_params``, ``sine_block``, ``epsilon_schedule``).
2. Rows: minireptile's ``numpy`` and ``numba`` backends (``train_chunk``), the PyTorch peer (eager
   as the gist; ``torch.func.vmap`` for meta-batches) and the JAX peer (``jax.jit`` per outer step;
   ``jax.jit`` of a ``lax.scan`` over the chunk; ``vmap`` over tasks for meta-batches). A missing
   framework or backend is one line saying what to install.
3. Timing: one untimed first call per row (its seconds are reported: compile + first run), then
   repeats interleaved row by row; each repeat is one call on a chunk of outer iterations,
   host-to-framework conversion included. Reported: median / min / max µs per outer iteration,
   µs per task, and the median's ratio to minireptile's numba backend on the same workload (to
   numpy if numba is unavailable, and the output says so). Slow rows run fewer iterations per
   repeat (the per-iteration work is the same). Threads: every library keeps its default (all
   cores) except PyTorch, which runs with 1 intra-op thread unless ``--torch-threads`` says
   otherwise: the gist's 10×64 ops are too small to split, and on a busy machine PyTorch's spare
   OpenMP threads made each step 10-30x slower in our runs.
   GFLOP/s of each median (the gist step's 1.26 MFLOP of products per task and outer iteration) and
   its share of the single-thread GEMM peak of the same instruction set: numpy's 2048×2048 matmul on
   one BLAS thread, measured in the same run (``hostenv.matmul_peak``).
   ``--isa`` runs everything again in a child process built for that instruction set (numba, XLA,
   JAX's YNNPACK kernels, oneDNN, MKL, PyTorch's kernels and OpenBLAS; see ``hostenv.py``), so an
   AVX-512 host measures an AVX2 machine; the output names the CPU model and what each library compiled
   for, and ends with a Markdown summary table.
4. Agreement (always): float64, 300 outer iterations of the gist preset: each peer's θ against the
   numpy (and numba) backend's, max |Δθ| / max |θ| ≤ 1e-12 (also a test: tests/benchmarks/test_peers.py).
5. Full float32 check (skipped by ``--quick`` and ``--no-full-check``; minutes): the whole 30000-
   iteration gist run in float32 with every serial implementation, then minireptile's evaluation
   (100 held-out tasks, numpy backend) of each final θ: the MSE after 32 steps must agree with the
   numpy backend's to two significant digits (|Δ| ≤ half a unit of the second digit). Too slow for
   CI, so it lives here and is reported, not tested.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import minireptile  # noqa: E402
from minireptile import (BackendUnavailableError, InnerOptimizer, MLPSpec, epsilon_schedule,  # noqa: E402
                         evaluate_sine, get_backend, get_preset, init_params, sine_block, sine_eval_tasks,
                         stream_rng)
from minireptile.tasks import EVAL, INIT  # noqa: E402
from hostenv import BlasThreads, add_isa_argument, cap_ynnpack, isa_info, matmul_peak, run_for_isa  # noqa: E402
from peers import jax_peer, torch_peer  # noqa: E402

GIST = get_preset("gist")
SPEC = MLPSpec((1, *GIST.hidden, 1), GIST.activation, "mse")
OPT = InnerOptimizer("sgd", GIST.inner_lr)
SEED = 0
AGREE_ITERS, AGREE_TOL = 300, 1e-12


@dataclass(frozen=True)
class Workload:
    name: str
    meta_batch: int
    dtype: type
    iters: int            # outer iterations per timed call (fast rows)
    slow_iters: int       # ... for slow rows (NumPy, PyTorch eager, torch.func)


def workloads(quick: bool) -> list[Workload]:
    if quick:
        return [Workload("serial float32", 1, np.float32, 256, 32),
                Workload("serial float64", 1, np.float64, 256, 32),
                Workload("meta-batch 32 float32", 32, np.float32, 8, 1),
                Workload("meta-batch 256 float32", 256, np.float32, 2, 1)]
    return [Workload("serial float32", 1, np.float32, 1024, 128),
            Workload("serial float64", 1, np.float64, 1024, 128),
            Workload("meta-batch 32 float32", 32, np.float32, 32, 4),
            Workload("meta-batch 256 float32", 256, np.float32, 4, 1)]


@dataclass
class Row:
    """One implementation on one workload and its measurements (seconds per call)."""

    workload: Workload
    label: str
    train: Callable
    iters: int
    first_call_s: float = float("nan")
    times: list = field(default_factory=list)
    error: str | None = None

    def us_per_iter(self) -> list[float]:
        return [t / self.iters * 1e6 for t in self.times]


# ---------------------------------------------------------------------------------------------
# implementations
# ---------------------------------------------------------------------------------------------
def backend_train(name: str):
    """minireptile backend ``name`` as a peer-style train function, or (None, why it is missing)."""
    try:
        be = get_backend(name)
    except (ImportError, BackendUnavailableError) as exc:
        return None, f"minireptile {name} backend unavailable: {exc}"

    def train(spec, theta, X, Y, plans, eps, opt):
        return be.train_chunk(spec, theta, X, Y, plans, eps, opt)[0]

    train.warmup = be.warmup
    return train, None


def torch_threads(train: Callable, n: int | None) -> Callable:
    """``train`` run with ``n`` PyTorch intra-op threads (None: PyTorch's default, one per core)."""
    if n is None:
        return train

    def threaded(*args):
        old = torch_peer.torch.get_num_threads()
        torch_peer.torch.set_num_threads(n)
        try:
            return train(*args)
        finally:
            torch_peer.torch.set_num_threads(old)

    return threaded


def implementations(n_torch: int | None = 1):
    """Rows that can run here, lines for those that cannot, and the ratio baseline.

    Returns ``([(label, train, applies(workload) -> bool, slow), ...], missing, baseline)``.
    PyTorch rows run with ``n_torch`` intra-op threads (None: PyTorch's default; see ``--torch-threads``).
    """
    impls, missing = [], []
    serial = lambda w: w.meta_batch == 1  # noqa: E731
    batched = lambda w: w.meta_batch > 1  # noqa: E731
    everywhere = lambda w: True  # noqa: E731
    for name, slow in (("numpy", True), ("numba", False)):
        train, why = backend_train(name)
        if train is None:
            missing.append(why)
        else:
            impls.append((f"minireptile {name}", train, everywhere, slow))
    baseline = "minireptile numba" if any(i[0] == "minireptile numba" for i in impls) else "minireptile numpy"
    if torch_peer.AVAILABLE:
        impls.append(("PyTorch eager (gist)", torch_threads(torch_peer.train_eager, n_torch), everywhere, True))
        impls.append(("PyTorch torch.func.vmap", torch_threads(torch_peer.train_vmap, n_torch), batched, True))
    else:
        missing.append(torch_peer.INSTALL)
    if jax_peer.AVAILABLE:
        impls.append(("JAX jit per outer step", jax_peer.train_step, serial, False))
        impls.append(("JAX jit+scan", jax_peer.train_scan, serial, False))
        impls.append(("JAX vmap, jit per outer step", jax_peer.train_step, batched, False))
        impls.append(("JAX vmap, jit+scan", jax_peer.train_scan, batched, False))
    else:
        missing.append(jax_peer.INSTALL)
    return impls, missing, baseline


def problem(iters: int, meta_batch: int, dtype, seed: int = SEED, block: int = 0):
    """θ0 and ``iters`` outer iterations of gist tasks (block ``block`` of a 30000-iteration run)."""
    theta0 = init_params(SPEC, stream_rng(seed, INIT), dtype)
    X, Y, plans = sine_block(seed, block, iters, meta_batch, GIST, GIST.inner_steps, GIST.inner_batch, dtype)
    eps = epsilon_schedule(np.arange(block * iters, (block + 1) * iters), GIST.iters, GIST.eps0, GIST.eps_final)
    return theta0, X, Y, plans, eps


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------
def measure(rows: list[Row], repeats: int, log) -> None:
    data = {}
    for row in rows:
        w = row.workload
        key = (w.name, row.iters)
        if key not in data:
            data[key] = problem(row.iters, w.meta_batch, w.dtype)
        t = time.perf_counter()
        try:
            if hasattr(row.train, "warmup"):
                row.train.warmup(SPEC, np.dtype(w.dtype), OPT)
            row.train(SPEC, *data[key], OPT)
        except Exception as exc:  # report the row as failed, keep measuring the others
            row.error = f"{type(exc).__name__}: {exc}"
            log(f"  {w.name:<24} {row.label:<30} FAILED: {row.error}")
            continue
        row.first_call_s = time.perf_counter() - t
        log(f"  first call  {w.name:<24} {row.label:<30} {row.first_call_s:7.2f} s")
    for r in range(repeats):                      # interleaved: every row once per repeat
        for row in rows:
            if row.error is None:
                args = data[(row.workload.name, row.iters)]
                t = time.perf_counter()
                row.train(SPEC, *args, OPT)
                row.times.append(time.perf_counter() - t)
        log(f"  repeat {r + 1}/{repeats} done")


def flops_per_task(spec: MLPSpec = SPEC) -> int:
    """FLOPs of the products of one task's inner loop: forward, dW, and the input gradient of every
    layer but the first, × minibatch × steps (1.26 MFLOP for the gist)."""
    return spec.flops_per_example() * GIST.inner_batch * GIST.inner_steps


def summarize(rows: list[Row], baseline: str, peaks: dict | None = None) -> list[dict]:
    base = {r.workload.name: statistics.median(r.us_per_iter()) for r in rows
            if r.label == baseline and r.error is None}
    out = []
    for r in rows:
        d = {"workload": r.workload.name, "meta_batch": r.workload.meta_batch,
             "dtype": np.dtype(r.workload.dtype).name, "implementation": r.label, "iters_per_call": r.iters}
        if r.error is not None:
            d["error"] = r.error
        else:
            us = r.us_per_iter()
            med = statistics.median(us)
            gflops = flops_per_task() * r.workload.meta_batch / med / 1e3
            peak = (peaks or {}).get(np.dtype(r.workload.dtype).name)
            d.update(median_us=med, min_us=min(us), max_us=max(us), us_per_task=med / r.workload.meta_batch,
                     first_call_s=r.first_call_s, repeats=len(us),
                     ratio_to_baseline=med / base[r.workload.name] if r.workload.name in base else None,
                     gflops=gflops, fraction_of_peak=gflops / peak if peak else None)
        out.append(d)
    return out


def table(summary: list[dict], baseline: str) -> str:
    short = baseline.split()[-1]
    head = (f"{'workload':<23} {'implementation':<29} {'median µs/it':>12} {'min':>9} {'max':>9} "
            f"{'µs/task':>9} {'1st call s':>10} {'x ' + short:>9}")
    lines = [head, "-" * len(head)]
    for d in summary:
        if "error" in d:
            lines.append(f"{d['workload']:<23} {d['implementation']:<29} FAILED: {d['error']}")
            continue
        ratio = "" if d["ratio_to_baseline"] is None else f"{d['ratio_to_baseline']:.2f}"
        lines.append(f"{d['workload']:<23} {d['implementation']:<29} {d['median_us']:>12.1f} {d['min_us']:>9.1f} "
                     f"{d['max_us']:>9.1f} {d['us_per_task']:>9.2f} {d['first_call_s']:>10.2f} {ratio:>9}")
    return "\n".join(lines)


TARGETS = [  # (description, workload, peer row, required peer/numba ratio)
    ("numba >= 2.0x faster than JAX jit+scan, serial float32", "serial float32", "JAX jit+scan", 2.0),
    ("numba >= 1.5x faster than JAX jit+scan, serial float64", "serial float64", "JAX jit+scan", 1.5),
    ("numba >= 2.5x faster than JAX vmap per task, meta-batch 256", "meta-batch 256 float32",
     "JAX vmap, jit+scan", 2.5),
    ("numba >= 50x faster than the PyTorch demo (gist, eager), serial float32", "serial float32",
     "PyTorch eager (gist)", 50.0),
]
PEAK_TARGET = ("numba serial float32 >= 35% of the single-thread float32 GEMM peak", "serial float32", 0.35)


def targets(summary: list[dict]) -> list[dict]:
    med = {(d["workload"], d["implementation"]): d.get("median_us") for d in summary}
    out = []
    for text, wl, peer, need in TARGETS:
        numba, other = med.get((wl, "minireptile numba")), med.get((wl, peer))
        if numba is None or other is None:
            absent = " and ".join(r for r, v in (("minireptile numba", numba), (peer, other)) if v is None)
            out.append({"target": text, "ratio": None, "met": None, "missing": f"{absent} on {wl}"})
            continue
        ratio = other / numba
        out.append({"target": text, "ratio": ratio, "need": need, "met": bool(ratio >= need)})
    text, wl, need = PEAK_TARGET
    share = next((d.get("fraction_of_peak") for d in summary
                  if d["workload"] == wl and d["implementation"] == "minireptile numba"), None)
    if share is not None:
        out.append({"target": text, "ratio": share, "need": need, "met": bool(share >= need), "share": True})
    return out


def markdown_summary(summary: list[dict], isa: dict, peaks: dict) -> str:
    """One Markdown table of the rows docs/benchmarks.md quotes per instruction set."""
    med = {(d["workload"], d["implementation"]): d for d in summary if "error" not in d}
    lines = [f"{isa['cpu_model']}, --isa {isa['requested']} (kernels {isa['kernels']}; XLA {isa['xla_flags'] or 'default'};"
             f" JAX's YNNPACK {isa.get('jax_ynnpack', '-')}; OpenBLAS {isa['openblas_core']});"
             f" single-thread GEMM peak float32 {peaks.get('float32', 0):.0f},"
             f" float64 {peaks.get('float64', 0):.0f} GFLOP/s", "",
             "| workload | numba µs | % of GEMM peak | JAX jit+scan / vmap µs | x JAX | PyTorch eager µs | x PyTorch |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for wl, jax_row in (("serial float32", "JAX jit+scan"), ("serial float64", "JAX jit+scan"),
                        ("meta-batch 256 float32", "JAX vmap, jit+scan")):
        n = med.get((wl, "minireptile numba"))
        if n is None:
            continue
        j, t = med.get((wl, jax_row)), med.get((wl, "PyTorch eager (gist)"))
        unit = "µs/task" if n["meta_batch"] > 1 else "µs/it"
        per = (lambda d: d["us_per_task"]) if n["meta_batch"] > 1 else (lambda d: d["median_us"])  # noqa: E731
        share = "" if n.get("fraction_of_peak") is None else f"{100 * n['fraction_of_peak']:.0f}%"
        lines.append(f"| {wl} ({unit}) | {per(n):.1f} | {share} | {per(j) if j else float('nan'):.1f} | "
                     f"{(per(j) / per(n)) if j else float('nan'):.2f} | {per(t) if t else float('nan'):.0f} | "
                     f"{(per(t) / per(n)) if t else float('nan'):.0f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# agreement checks
# ---------------------------------------------------------------------------------------------
def peer_modes(torch_threads_n: int | None = 1) -> dict[str, Callable]:
    modes = {}
    if torch_peer.AVAILABLE:
        modes.update({f"PyTorch {k}": torch_threads(f, torch_threads_n) for k, f in torch_peer.MODES.items()})
    if jax_peer.AVAILABLE:
        modes.update({f"JAX {k}": f for k, f in jax_peer.MODES.items()})
    return modes


def agreement_float64(log, torch_threads_n: int | None = 1) -> list[dict]:
    """Each peer's θ after 300 float64 gist iterations against each minireptile backend's."""
    args = problem(AGREE_ITERS, 1, np.float64)
    refs = {}
    for name in ("numpy", "numba"):
        train, why = backend_train(name)
        if train is None:
            log(f"  agreement: {why}")
            continue
        refs[name] = train(SPEC, *args, OPT)
    out = []
    for label, train in peer_modes(torch_threads_n).items():
        theta = train(SPEC, *args, OPT)
        for name, ref in refs.items():
            rel = float(np.abs(theta - ref).max() / np.abs(ref).max())
            out.append({"peer": label, "backend": name, "max_rel_diff": rel, "ok": bool(rel <= AGREE_TOL)})
    return out


def two_digit_agree(value: float, ref: float) -> bool:
    """|value − ref| ≤ half a unit in ref's second significant digit."""
    unit = 10.0 ** (math.floor(math.log10(abs(ref))) - 1)
    return bool(abs(value - ref) <= 0.5 * unit)


def full_float32_check(log, torch_threads_n: int | None = 1) -> list[dict]:
    """Whole 30000-iteration gist runs in float32, then eval MSE after 32 steps (see module doc)."""
    block = 1024
    rows = []
    trains = {}
    for name in ("numpy", "numba"):
        train, why = backend_train(name)
        if train is not None:
            trains[f"minireptile {name}"] = train
    trains.update({k: f for k, f in peer_modes(torch_threads_n).items() if k != "PyTorch vmap"})  # vmap: serial is not its use
    tasks = sine_eval_tasks(stream_rng(SEED, EVAL), 100, GIST, np.float32)
    numpy_backend = get_backend("numpy")
    blocks = {}
    for label, train in trains.items():
        t = time.perf_counter()
        theta = init_params(SPEC, stream_rng(SEED, INIT), np.float32)
        for b in range(-(-GIST.iters // block)):
            if b not in blocks:
                X, Y, plans = sine_block(SEED, b, block, 1, GIST, GIST.inner_steps, GIST.inner_batch, np.float32)
                n = min(block, GIST.iters - b * block)
                eps = epsilon_schedule(np.arange(b * block, b * block + n), GIST.iters, GIST.eps0, GIST.eps_final)
                blocks[b] = (X[:n], Y[:n], plans[:n], eps)
            theta = train(SPEC, theta, *blocks[b], OPT)
        seconds = time.perf_counter() - t
        res = evaluate_sine(SPEC, theta, tasks, OPT, numpy_backend)
        rows.append({"implementation": label, "mse_32": float(res.mean[-1]), "ci95_32": float(res.ci95[-1]),
                     "train_seconds": seconds, "theta": theta})
        log(f"  full float32 run  {label:<26} MSE after 32 steps {res.mean[-1]:.4g} ({seconds:.0f} s)")
    ref = next(r for r in rows if r["implementation"] == "minireptile numpy")
    for r in rows:
        r["agrees_2_digits_with_numpy"] = two_digit_agree(r["mse_32"], ref["mse_32"])
    for r in rows:
        r["theta_max_rel_diff_vs_numpy"] = float(np.abs(r["theta"] - ref["theta"]).max() / np.abs(ref["theta"]).max())
    for r in rows:
        del r["theta"]
    return rows


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__, "minireptile": minireptile.__version__}
    try:
        import numba

        info["numba"] = numba.__version__
        info["numba_threads"] = numba.get_num_threads()
    except ImportError:
        pass
    if torch_peer.AVAILABLE:
        info["torch"] = torch_peer.torch.__version__
        info["torch_threads"] = torch_peer.torch.get_num_threads()
    if jax_peer.AVAILABLE:
        info["jax"] = jax_peer.jax.__version__
        info["jax_devices"] = [str(d) for d in jax_peer.jax.devices()]
    return info


def plot(path: Path, summary: list[dict], baseline: str) -> None:
    try:
        import matplotlib
    except ImportError:
        print('plot skipped: matplotlib is not installed (pip install -e ".[bench]")')
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [d for d in summary if "error" not in d]
    names = list(dict.fromkeys(d["workload"] for d in ok))
    labels = list(dict.fromkeys(d["implementation"] for d in ok))
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 4.5), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, wl in zip(axes[0], names):
        rows = [d for d in ok if d["workload"] == wl]
        for k, d in enumerate(rows):
            c = colors[labels.index(d["implementation"]) % len(colors)]
            err = [[d["median_us"] - d["min_us"]], [d["max_us"] - d["median_us"]]]
            ax.bar(k, d["median_us"], yerr=err, color=c, capsize=3)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([d["implementation"] for d in rows], rotation=60, ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_title(wl, fontsize=9)
        ax.set_ylabel("µs per outer iteration (median, min–max)")
    fig.suptitle(f"Reptile on the gist network: minireptile vs framework peers (ratio base: {baseline})",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot: {path}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short chunks, 3 repeats, no full float32 check")
    p.add_argument("--repeats", type=int, help="timed repeats per row (default 7, --quick 3)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--plot", type=Path, help="bar chart (PNG) here, with matplotlib")
    p.add_argument("--no-full-check", action="store_true", help="skip the 30000-iteration float32 check")
    p.add_argument("--torch-threads", type=int, default=1, metavar="N",
                   help="PyTorch intra-op threads (default 1: the gist's 10x64 ops are too small to split, "
                   "and spare OpenMP threads spin on a busy machine); 0 = PyTorch's default (one per core)")
    add_isa_argument(p)
    args = p.parse_args(argv)
    child = run_for_isa(args.isa, __file__, sys.argv[1:] if argv is None else list(argv))
    if child is not None:
        return child
    repeats = args.repeats or (3 if args.quick else 7)
    log = lambda s: print(s, flush=True)  # noqa: E731

    info = machine()
    log("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    isa = isa_info(args.isa)
    if jax_peer.AVAILABLE:
        isa["jax_ynnpack"] = cap_ynnpack(args.isa)
    log(f"instruction set: {isa['cpu_model']}; numba CPU {isa['numba_cpu']}, kernels {isa['kernels']}; "
        f"XLA_FLAGS {isa['xla_flags'] or '(default)'}; JAX's YNNPACK {isa.get('jax_ynnpack', '-')}; "
        f"OpenBLAS core {isa['openblas_core']}")
    blas = BlasThreads()
    peaks = {np.dtype(d).name: matmul_peak(d, 1, blas) for d in (np.float32, np.float64)}
    blas(os.cpu_count() or 1)
    log("single-thread GEMM peak (numpy 2048x2048, GFLOP/s): " + ", ".join(f"{k} {v:.1f}" for k, v in peaks.items()))
    n_torch = args.torch_threads or None
    impls, missing, baseline = implementations(n_torch)
    if torch_peer.AVAILABLE:
        log(f"PyTorch intra-op threads: {n_torch or torch_peer.torch.get_num_threads()} (--torch-threads)")
    for line in missing:
        log(f"skipped: {line}")
    if baseline != "minireptile numba":
        log("note: the numba backend is unavailable, so ratios are to minireptile's numpy backend")

    rows = [Row(w, label, train, w.slow_iters if slow else w.iters)
            for w in workloads(args.quick) for label, train, applies, slow in impls if applies(w)]
    log(f"timing {len(rows)} rows, {repeats} interleaved repeats")
    measure(rows, repeats, log)
    summary = summarize(rows, baseline, peaks)
    log("")
    log(f"µs per outer iteration (gist network, 5 inner SGD steps of 10); ratio = median / {baseline} median")
    log(table(summary, baseline))

    goal = targets(summary)
    log("\ntargets (peer median / numba median):")
    for g in goal:
        if g["ratio"] is None:
            log(f"  {g['target']}: not measured (no {g['missing']} row)")
        elif g.get("share"):
            log(f"  {g['target']}: {100 * g['ratio']:.0f}%  {'met' if g['met'] else 'MISSED'}")
        else:
            verdict = "met" if g["met"] else f"MISSED (by {g['need'] / g['ratio']:.2f}x)"
            log(f"  {g['target']}: {g['ratio']:.2f}x  {verdict}")

    log(f"\nfloat64 agreement after {AGREE_ITERS} gist iterations (max |Δθ| / max |θ| <= {AGREE_TOL:g}):")
    agree = agreement_float64(log, n_torch)
    if not peer_modes():
        log("  no framework peer installed")
    for a in agree:
        log(f"  {a['peer']:<18} vs minireptile {a['backend']:<6} {a['max_rel_diff']:.2e}  {'ok' if a['ok'] else 'FAIL'}")

    full = None
    if args.quick or args.no_full_check:
        log("\nfull float32 check (30000 iterations, eval MSE after 32 steps): skipped; run without --quick")
    else:
        log("\nfull float32 check: 30000 gist iterations, then eval MSE after 32 steps on 100 held-out tasks")
        full = full_float32_check(log, n_torch)
        for r in full:
            log(f"  {r['implementation']:<26} {r['mse_32']:.4g} ± {r['ci95_32']:.2g}   "
                f"{'agrees' if r['agrees_2_digits_with_numpy'] else 'DIFFERS'} (2 significant digits vs numpy); "
                f"final θ max rel diff vs numpy {r['theta_max_rel_diff_vs_numpy']:.1e}")

    log("\nsummary for docs/benchmarks.md:\n" + markdown_summary(summary, isa, peaks))
    if args.json is not None:
        result = {"command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "machine": info,
                  "isa": isa, "gemm_peak_gflops_1_thread": peaks,
                  "baseline": baseline, "missing": missing, "rows": summary, "targets": goal,
                  "agreement_float64": agree, "full_float32_check": full, "quick": args.quick,
                  "repeats": repeats}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        log(f"json: {args.json}")
    if args.plot is not None:
        plot(args.plot, summary, baseline)
    failed = [a for a in agree if not a["ok"]] + [r for r in (full or []) if not r["agrees_2_digits_with_numpy"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
