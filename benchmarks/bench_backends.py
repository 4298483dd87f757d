"""Time minireptile's CPU backends on the gist protocol against the machine's measured peak.

    python benchmarks/bench_backends.py [--quick] [--json PATH] [--repeats N] [--no-compile]

What it measures
----------------
Workload: the gist network (1-64-64-1 tanh, MSE), 5 inner SGD steps of minibatch 10 at lr 0.02,
the ε schedule of a 30000-iteration run; serial Reptile (meta-batch 1) and batched Reptile with
meta-batch 32 and 256; float32 and float64; the ``numpy`` and ``numba`` backends'
``train_chunk`` (one call = a chunk of outer iterations); 1 and 2 threads (numba's thread count;
numpy's BLAS gets the same). Every row gets the same θ0, tasks, plans and ε.

Timing: one untimed first call per row, then ``--repeats`` rounds that visit every row in turn
(interleaved, so a noisy neighbour hits all rows alike); each repeat is one call, wall clock.
Reported: median, min and max µs per outer iteration, µs per task, GFLOP/s of the median and its
fraction of the PEAK: numpy's float32 / float64 matmul of 2048×2048 at the same thread count,
measured in the same run (best of a few). FLOPs per outer iteration = 2 × multiply-adds of the
forward and backward pass (weights only: forward W·a, backward dW and the input gradient except
for the first layer) × minibatch × steps × meta-batch; the count here is checked against
``MLPSpec.flops_per_example``. Compile time is excluded from the rows and reported apart: the
numba backend's ``warmup`` of each specialisation in ``SIGNATURES`` (activation, loss, optimizer,
dtype) in a fresh process with an empty cache folder (cold) and again with that folder (cached),
wall and CPU seconds (skipped by ``--quick`` and ``--no-compile``).

Output: a table on stdout, the performance targets, and with ``--json`` everything as JSON
(machine, versions, peaks, rows, checks). ``--quick`` is a smoke run (fewer iterations and
repeats, no meta-batch 256 for numpy, no compile timing); its numbers are rough.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import minireptile
from minireptile import InnerOptimizer, MLPSpec, epsilon_schedule, get_backend, get_preset, init_params, sine_block
from hostenv import BlasThreads, add_isa_argument, isa_info, matmul_peak, run_for_isa
from report import finish

GIST = get_preset("gist")
SPEC = MLPSpec((1, *GIST.hidden, 1), GIST.activation, "mse")
OPT = InnerOptimizer("sgd", GIST.inner_lr)
STEPS, BATCH = GIST.inner_steps, GIST.inner_batch
META_BATCHES = (1, 32, 256)
THREADS = (1, 2)
DTYPES = (np.float32, np.float64)


# ---------------------------------------------------------------------------------------------
# FLOPs and peak
# ---------------------------------------------------------------------------------------------
def flops_per_outer_iteration(spec: MLPSpec, meta_batch: int) -> int:
    """2 × multiply-adds of forward + backward per example × minibatch × steps × tasks."""
    macs = 0
    for layer, (fan_in, fan_out) in enumerate(zip(spec.sizes[:-1], spec.sizes[1:])):
        macs += fan_in * fan_out                      # forward: z = W a
        macs += fan_in * fan_out                      # backward: dW = dz aᵀ
        macs += fan_in * fan_out if layer > 0 else 0  # backward: da = Wᵀ dz (not needed for the input)
    assert 2 * macs == spec.flops_per_example(), (2 * macs, spec.flops_per_example())
    return 2 * macs * BATCH * STEPS * meta_batch


# ---------------------------------------------------------------------------------------------
# rows
# ---------------------------------------------------------------------------------------------
def iters_per_call(backend: str, meta_batch: int, quick: bool) -> int:
    """Outer iterations per timed call: about 0.05-0.3 s of work on the reference machine."""
    if backend == "numba":
        n = {1: 2048, 32: 64, 256: 8}[meta_batch]
    else:
        n = {1: 64, 32: 2, 256: 1}[meta_batch]
    return max(1, n // 4) if quick else n


class Row:
    def __init__(self, backend: str, dtype, meta_batch: int, threads: int, iters: int):
        self.backend, self.dtype, self.meta_batch = backend, np.dtype(dtype), meta_batch
        self.threads, self.iters = threads, iters
        X, Y, plans = sine_block(0, 0, iters, meta_batch, GIST, STEPS, BATCH, self.dtype)
        self.args = (SPEC, init_params(SPEC, np.random.default_rng(0), self.dtype), X, Y, plans,
                     epsilon_schedule(np.arange(iters), GIST.iters, GIST.eps0, GIST.eps_final), OPT)
        self.train = get_backend(backend).train_chunk
        self.first_call_s = None
        self.seconds: list[float] = []

    @property
    def name(self) -> str:
        return f"{self.backend} {self.dtype.name} mb{self.meta_batch} t{self.threads}"

    def call(self) -> float:
        t = time.perf_counter()
        self.train(*self.args)
        return time.perf_counter() - t


def set_threads(n: int, blas: BlasThreads) -> None:
    import numba

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    blas(n)


def measure(rows: list[Row], repeats: int, blas: BlasThreads, log) -> None:
    for row in rows:
        set_threads(row.threads, blas)
        row.first_call_s = row.call()
    for r in range(repeats):
        for row in rows:
            set_threads(row.threads, blas)
            row.seconds.append(row.call())
        log(f"round {r + 1}/{repeats} done")


# the specialisations timed cold and cached: (label, sizes, activation, loss, optimizer, dtype)
SIGNATURES = (
    ("gist sgd float32 (the default sine run)", (1, 64, 64, 1), "tanh", "mse", "sgd", "float32"),
    ("gist sgd float64", (1, 64, 64, 1), "tanh", "mse", "sgd", "float64"),
    ("gist adam float32", (1, 64, 64, 1), "tanh", "mse", "adam", "float32"),
    ("omniglot relu/ce/adam float32", (784, 256, 128, 64, 64, 5), "relu", "ce", "adam", "float32"),
)


def compile_seconds(sizes, activation, loss, optimizer, dtype) -> dict:
    """numba warmup of one specialisation in fresh processes, with an empty cache folder (cold), then
    with that folder (cached): wall seconds and the process's CPU seconds (on a busy machine the
    CPU seconds are the steadier number), plus the import time of minireptile and numba."""
    code = ("import time, numpy as np; t = time.perf_counter()\n"
            "from minireptile import InnerOptimizer, MLPSpec, get_backend\n"
            "be = get_backend('numba'); t1 = time.perf_counter(); c = time.process_time()\n"
            f"w = be.warmup(MLPSpec({tuple(sizes)}, {activation!r}, {loss!r}), np.{dtype}, "
            f"InnerOptimizer({optimizer!r}, 0.02))\n"
            "print(w, time.process_time() - c, t1 - t)\n")
    out = {}
    # the child imports the minireptile this process imported (``python -c`` would put the current folder
    # first on its path), and runs in the cache folder
    package_root = str(Path(minireptile.__file__).resolve().parent.parent)
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache,
                   PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
        for label in ("cold", "cached"):
            res = subprocess.run([sys.executable, "-c", code], env=env, cwd=cache, capture_output=True, text=True,
                                 check=True)
            warm, cpu, imports = (float(x) for x in res.stdout.split())
            out[label] = {"warmup_s": warm, "cpu_s": cpu, "import_s": imports}
    return out


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def summarize(rows: list[Row], peaks: dict) -> list[dict]:
    out = []
    for row in rows:
        us = [s / row.iters * 1e6 for s in row.seconds]
        med = statistics.median(us)
        flops = flops_per_outer_iteration(SPEC, row.meta_batch)
        gflops = flops / med / 1e3
        peak = peaks[(row.dtype.name, row.threads)]
        out.append({"backend": row.backend, "dtype": row.dtype.name, "meta_batch": row.meta_batch,
                    "threads": row.threads, "iters_per_call": row.iters, "repeats": len(us),
                    "us_per_iter_median": med, "us_per_iter_min": min(us), "us_per_iter_max": max(us),
                    "us_per_task_median": med / row.meta_batch, "flops_per_iter": flops,
                    "gflops": gflops, "peak_gflops": peak, "fraction_of_peak": gflops / peak,
                    "first_call_s": row.first_call_s})
    return out


def find(summary, **key):
    for r in summary:
        if all(r[k] == v for k, v in key.items()):
            return r
    return None


def checks(summary: list[dict]) -> list[dict]:
    """The performance targets, evaluated on this run's medians."""
    out = []

    def add(target, value, ok):
        out.append({"target": target, "value": value, "met": bool(ok)})

    s32 = find(summary, backend="numba", dtype="float32", meta_batch=1, threads=1)
    n32 = find(summary, backend="numpy", dtype="float32", meta_batch=1, threads=1)
    s64 = find(summary, backend="numba", dtype="float64", meta_batch=1, threads=1)
    b256 = find(summary, backend="numba", dtype="float32", meta_batch=256, threads=2)
    if s32:
        add("serial float32, 1 thread: >= 55% of the float32 matmul peak", f"{100 * s32['fraction_of_peak']:.1f}%",
            s32["fraction_of_peak"] >= 0.55)
        add("serial float32, 1 thread: about <= 22 us per outer iteration", f"{s32['us_per_iter_median']:.1f} us",
            s32["us_per_iter_median"] <= 22)
        if n32:
            ratio = n32["us_per_iter_median"] / s32["us_per_iter_median"]
            add("serial float32, 1 thread: >= 10x faster than numpy", f"{ratio:.1f}x", ratio >= 10)
    if s64:
        add("serial float64, 1 thread: >= 45% of the float64 matmul peak", f"{100 * s64['fraction_of_peak']:.1f}%",
            s64["fraction_of_peak"] >= 0.45)
    if b256:
        add("meta-batch 256 float32, 2 threads: >= 50% of the 2-thread float32 peak",
            f"{100 * b256['fraction_of_peak']:.1f}% ({b256['us_per_task_median']:.2f} us/task)",
            b256["fraction_of_peak"] >= 0.50)
    return out


def compile_checks(compile_s: dict) -> list[dict]:
    """Compile targets for the default sine run's specialisation (wall seconds, CPU in brackets)."""
    c = compile_s.get(SIGNATURES[0][0])
    if not c:
        return []
    cold, cached = c["cold"], c["cached"]
    return [{"target": "default sine specialisation: cold compile <= 5 s",
             "value": f"{cold['warmup_s']:.1f} s ({cold['cpu_s']:.1f} s CPU)", "met": cold["warmup_s"] <= 5},
            {"target": "default sine specialisation: cached load <= 0.5 s",
             "value": f"{cached['warmup_s']:.2f} s ({cached['cpu_s']:.2f} s CPU)", "met": cached["warmup_s"] <= 0.5}]


def table(summary: list[dict]) -> str:
    head = ("| backend | dtype | meta-batch | threads | µs/iter median | min | max | µs/task | GFLOP/s | % of peak |\n"
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    lines = [head]
    for r in summary:
        lines.append(f"| {r['backend']} | {r['dtype']} | {r['meta_batch']} | {r['threads']} | "
                     f"{r['us_per_iter_median']:.1f} | {r['us_per_iter_min']:.1f} | {r['us_per_iter_max']:.1f} | "
                     f"{r['us_per_task_median']:.2f} | {r['gflops']:.1f} | {100 * r['fraction_of_peak']:.1f} |")
    return "\n".join(lines)


def machine() -> dict:
    import numba
    import scipy

    info = {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "scipy": scipy.__version__, "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "numba_threads": numba.config.NUMBA_NUM_THREADS}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "L2 cache", "L3 cache"):
                info[key.strip()] = value.strip()
        info["avx512f"] = " avx512f " in lscpu + " "
    with contextlib.suppress(OSError):
        info["loadavg_start"] = os.getloadavg()
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: fewer iterations and repeats, no compile timing")
    p.add_argument("--json", help="write the results here as JSON")
    p.add_argument("--repeats", type=int, help="interleaved timed repeats per row (default 7; --quick 2)")
    p.add_argument("--no-compile", action="store_true", help="skip the cold/cached compile timing")
    add_isa_argument(p)
    args = p.parse_args(argv)
    child = run_for_isa(args.isa, __file__, sys.argv[1:] if argv is None else list(argv))
    if child is not None:
        return child
    repeats = args.repeats or (2 if args.quick else 7)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    info = machine()
    blas = BlasThreads()
    get_backend("numba")  # selects the threading layer before anything runs in parallel
    info["isa"] = isa_info(args.isa)
    log(f"CPU {info['isa']['cpu_model']}; kernels {info['isa']['kernels']}; OpenBLAS {info['isa']['openblas_core']}")

    rows = []
    for dtype in DTYPES:
        for mb in META_BATCHES:
            for threads in THREADS:
                for backend in ("numpy", "numba"):
                    if args.quick and backend == "numpy" and mb == 256:
                        continue
                    rows.append(Row(backend, dtype, mb, threads, iters_per_call(backend, mb, args.quick)))
    peaks_before = {(np.dtype(d).name, t): matmul_peak(d, t, blas) for d in DTYPES for t in THREADS}
    log("peaks (GFLOP/s): " + ", ".join(f"{k[0]} t{k[1]} {v:.1f}" for k, v in peaks_before.items()))
    measure(rows, repeats, blas, log)
    peaks_after = {(np.dtype(d).name, t): matmul_peak(d, t, blas) for d in DTYPES for t in THREADS}
    peaks = {k: max(peaks_before[k], peaks_after[k]) for k in peaks_before}   # the machine's best, both ends
    info["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    summary = summarize(rows, peaks)
    compile_s = {} if (args.quick or args.no_compile) else {sig[0]: compile_seconds(*sig[1:]) for sig in SIGNATURES}
    result = {"machine": info, "workload": {"spec": SPEC.to_dict(), "inner_steps": STEPS, "inner_batch": BATCH,
                                            "optimizer": OPT.to_dict(), "quick": args.quick, "repeats": repeats},
              "peaks_gflops": {f"{k[0]} t{k[1]}": v for k, v in peaks.items()},
              "peaks_gflops_before_after": {f"{k[0]} t{k[1]}": [peaks_before[k], peaks_after[k]] for k in peaks},
              "blas_threads_in_process": blas.available, "rows": summary, "compile_seconds": compile_s,
              "checks": checks(summary) + compile_checks(compile_s)}

    print(f"gist protocol ({SPEC.sizes} {SPEC.activation}, {STEPS} SGD steps of {BATCH}); "
          f"FLOPs per outer iteration per task {flops_per_outer_iteration(SPEC, 1):,}; "
          f"{repeats} interleaved repeats, wall clock")
    print("peak = numpy matmul 2048x2048, best of before/after the rows (GFLOP/s): "
          + ", ".join(f"{k} {v:.1f}" for k, v in result["peaks_gflops"].items()))
    print(table(summary))
    for name, c in compile_s.items():
        print(f"numba compile, {name}: cold {c['cold']['warmup_s']:.1f} s ({c['cold']['cpu_s']:.1f} s CPU), "
              f"cached {c['cached']['warmup_s']:.2f} s ({c['cached']['cpu_s']:.2f} s CPU) "
              f"(+ import {c['cached']['import_s']:.2f} s)")
    finish(result["checks"], result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
