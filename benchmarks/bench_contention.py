"""The numba backend with 1 and 2 threads on a quiet machine and under a competing 2-thread load.

    python benchmarks/bench_contention.py [--quick] [--json PATH] [--repeats N] [--load N]

What it measures
----------------
Workload: the gist network (1-64-64-1 tanh, MSE, 5 SGD steps of minibatch 10), float32, the
numba backend's ``train_chunk`` at meta-batch 16, 32 and 256 (one call = a chunk of outer
iterations, 4096 tasks: long against the time slices of the competing load), with numba's thread count set to 1 and to 2.

Two phases, each ``--repeats`` rounds that visit every meta-batch in turn:

* ``quiet``: nothing else started by this script (the machine's own load is recorded);
* ``loaded``: ``--load`` (default 2) competing processes that each keep one core busy (a Python
  busy loop), started before the phase and stopped after it; on a 2-core machine our threads then
  share the cores with two others, as when a second 2-thread job runs beside this one.

A round times, for one meta-batch, 1 thread, 2 threads, then 1 thread again (A-B-A): the host's
speed drifts by tens of percent within seconds, and the 2-thread call sits between the two
1-thread calls it is compared with. Reported per phase and meta-batch: median and min µs per task
with 1 and 2 threads, and the paired ratio: the median over rounds of (2-thread time) / (mean of
the round's two 1-thread times), < 1: two threads faster, with a 95% confidence interval (order
statistics of the rounds' ratios). The target: under load, 2 threads no slower than 1, i.e. the
interval does not lie above 1 (a ratio whose interval lies above 1 is a measured slowdown). A thread
pool whose idle workers spin (OpenMP's default policy) fails this badly: the spinning workers take
the cores the working ones need. On a busy machine the numba backend uses no more threads than
there are free cores, so there 2 threads run as 1 and the expected ratio is 1.

Output: a table on stdout, the checks, and with ``--json`` everything as JSON (machine, load
averages, rows, checks). ``--quick`` is a smoke run (shorter chunks, 3 repeats).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import numba
import numpy as np

from minireptile import InnerOptimizer, MLPSpec, get_backend, get_preset, init_params, sine_block
from minireptile.commands.common import nonnegative_int, positive_int
from report import finish

GIST = get_preset("gist")
SPEC = MLPSpec((1, *GIST.hidden, 1), GIST.activation, "mse")
OPT = InnerOptimizer("sgd", GIST.inner_lr)
META_BATCHES = (16, 32, 256)
ROUND = ("1", "2", "1b")  # a round: 1 thread, 2 threads, 1 thread again
BUSY = "while True:\n    pass\n"


def start_load(n: int) -> list[subprocess.Popen]:
    """``n`` processes that each keep one core busy until stopped."""
    return [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(n)]


def stop_load(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def measure(backend, repeats: int, quick: bool) -> dict:
    """{(meta_batch, threads): [µs per task of each round]}; threads 1, 2 and 1 again ("1b"), A-B-A."""
    work = {}
    for mb in META_BATCHES:
        iters = max(1, (256 if quick else 4096) // mb)
        X, Y, plans = sine_block(0, 0, iters, mb, GIST, GIST.inner_steps, GIST.inner_batch, np.float32)
        work[mb] = (X, Y, plans, np.full(iters, 0.1), iters)
    theta = init_params(SPEC, np.random.default_rng(0), np.float32)
    times = {(mb, t): [] for mb in META_BATCHES for t in ROUND}
    for _ in range(repeats):
        for mb in META_BATCHES:
            X, Y, plans, eps, iters = work[mb]
            for threads in ROUND:
                numba.set_num_threads(int(threads[0]))
                t = time.perf_counter()
                backend.train_chunk(SPEC, theta, X, Y, plans, eps, OPT)
                times[(mb, threads)].append((time.perf_counter() - t) / (iters * mb) * 1e6)
    return times


def median_ci(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval of the median: order statistics x(k), x(n+1-k)."""
    x, n = sorted(values), len(values)
    k = 0
    while k + 1 <= n // 2 and 2 * sum(math.comb(n, j) for j in range(k + 1)) / 2 ** n <= 1 - level:
        k += 1
    return (x[k - 1], x[n - k]) if k > 0 else (x[0], x[-1])


def summarize(times: dict) -> list[dict]:
    rows = []
    for mb in META_BATCHES:
        one, two, again = times[(mb, "1")], times[(mb, "2")], times[(mb, "1b")]
        paired = [b / ((a + c) / 2) for a, b, c in zip(one, two, again)]
        lo, hi = median_ci(paired)
        rows.append({"meta_batch": mb, "us_per_task_1_thread": statistics.median(one + again),
                     "us_per_task_2_threads": statistics.median(two), "min_1_thread": min(one + again),
                     "min_2_threads": min(two), "ratio_2_over_1": statistics.median(paired),
                     "ratio_ci95": [lo, hi], "ratios": paired})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: shorter chunks, 3 repeats")
    p.add_argument("--repeats", type=positive_int, help="A-B-A rounds per phase (default 15; --quick 3)")
    p.add_argument("--load", type=nonnegative_int, default=2,
                   help="competing busy processes in the loaded phase (default 2)")
    p.add_argument("--json", help="write the results here as JSON")
    args = p.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 15)
    if numba.config.NUMBA_NUM_THREADS < 2:
        print("bench_contention: numba has one thread (NUMBA_NUM_THREADS=1); nothing to compare")
        return 0

    backend = get_backend("numba")
    backend.warmup(SPEC, np.float32, OPT)
    old_threads = numba.get_num_threads()
    phases = {}
    loads = {}
    for phase in ("quiet", "loaded"):
        procs = start_load(args.load) if phase == "loaded" else []
        try:
            time.sleep(0.5 if procs else 0)
            before = os.getloadavg()
            measure(backend, 1, True)  # burn-in (first calls, thread start-up)
            times = measure(backend, repeats, args.quick)
            loads[phase] = {"before": before, "after": os.getloadavg()}
        finally:
            stop_load(procs)
        phases[phase] = summarize(times)
    numba.set_num_threads(old_threads)

    checks = [{"target": f"loaded, meta-batch {r['meta_batch']}: 2 threads no slower than 1",
               "value": f"{r['ratio_2_over_1']:.2f}x the 1-thread time (95% CI {r['ratio_ci95'][0]:.2f}–"
                        f"{r['ratio_ci95'][1]:.2f})", "met": r["ratio_ci95"][0] <= 1.0}
              for r in phases["loaded"]]
    print(f"gist protocol, float32, numba backend; {repeats} A-B-A rounds per phase; "
          f"loaded = {args.load} busy processes; cpu_count {os.cpu_count()}")
    print("| phase | meta-batch | µs/task 1 thread (min) | µs/task 2 threads (min) | 2 threads / 1 thread (95% CI) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for phase, rows in phases.items():
        for r in rows:
            lo, hi = r["ratio_ci95"]
            print(f"| {phase} | {r['meta_batch']} | {r['us_per_task_1_thread']:.2f} ({r['min_1_thread']:.2f}) | "
                  f"{r['us_per_task_2_threads']:.2f} ({r['min_2_threads']:.2f}) | "
                  f"{r['ratio_2_over_1']:.2f} ({lo:.2f}–{hi:.2f}) |")
    for phase, la in loads.items():
        print(f"load average {phase}: before {la['before'][0]:.2f}, after {la['after'][0]:.2f}")
    result = {"machine": {"python": platform.python_version(), "numba": numba.__version__,
                          "cpu_count": os.cpu_count(), "processor": platform.processor()},
              "load": args.load, "repeats": repeats, "loadavg": loads, "phases": phases, "checks": checks}
    finish(checks, result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
