"""Time the distributed meta-batch and sweeps on a local Dask cluster against one process.

    python benchmarks/bench_distributed.py [--quick] [--workers 2] [--json PATH]

What it measures
----------------
1. Per outer iteration, ``meta_train`` with the numba backend in one process (1 thread, and numba's
   default thread count) against the distributed meta-batch on a local cluster of ``--workers`` worker
   processes (one numba thread each), for the gist network (1-64-64-1 tanh, 5 SGD steps of 10 points)
   and the Omniglot network (784-256-128-64-64-5 relu, 5-way 10-shot, 5 steps of 10, synthetic images of
   the right shape) at several meta-batch sizes, float32, default task blocks (meta-batch/16 rounded
   up). The smallest meta-batch at which the cluster beats the best single process is reported, and the
   cluster's fixed cost per iteration (its time at meta-batch 2 minus the 1-thread process's).
   Every row checks that the cluster's θ equals the single-process θ bit for bit.
2. Sweep throughput: ``--runs`` short ``minireptile sine`` runs one after another (each its own
   process, as a user would in a shell loop) against ``minireptile sweep`` of the same runs on the
   cluster.

Timing: wall clock, one untimed warm-up call per row (compilation, worker start, task caches), then
the median of ``--repeats`` timed calls. Output: a table on stdout and with ``--json`` everything as
JSON (machine, load average, versions, rows).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from minireptile import InnerOptimizer, MLPSpec, ReptileConfig, get_backend, init_params, meta_train
from minireptile.backends.distributed import distributed_backend, local_client, task_block_for
from minireptile.tasks import get_preset, sine_block
from minireptile.tasks.streams import epoch_plan, stream_rng

GIST = MLPSpec((1, 64, 64, 1), "tanh", "mse")
OMNIGLOT = MLPSpec((784, 256, 128, 64, 64, 5), "relu", "ce")
SGD = InnerOptimizer("sgd", 0.02)


def omniglot_like_block(b, block_iters, meta_batch, ways=5, shots=10, steps=5, batch=10, dtype=np.float32):
    """Random 28x28 'images' in Omniglot's episode shapes (the benchmark needs no data set)."""
    rng = stream_rng(0, 1, b)
    n = block_iters * meta_batch
    X = rng.random((n, ways * shots, 784), dtype=np.float32).astype(dtype)
    Y = np.tile(np.repeat(np.arange(ways), shots), (n, 1)).astype(np.int64)
    plans = epoch_plan(rng, n, ways * shots, steps, batch)
    shape = (block_iters, meta_batch)
    return X.reshape(shape + X.shape[1:]), Y.reshape(shape + Y.shape[1:]), plans.reshape(shape + plans.shape[1:])


def sampler(net, meta_batch, block_iters):
    if net == "gist":
        return functools.partial(sine_block, 0, block_iters=block_iters, meta_batch=meta_batch,
                                 preset=get_preset("gist"), steps=5, batch=10, dtype=np.float32)
    return functools.partial(omniglot_like_block, block_iters=block_iters, meta_batch=meta_batch)


def time_rows(client, workers, nets, batches, iters, repeats):
    numba = get_backend("numba")
    import numba as nb

    default_threads = nb.get_num_threads()
    dist = distributed_backend(client)
    rows = []
    for net in nets:
        spec = GIST if net == "gist" else OMNIGLOT
        theta0 = init_params(spec, np.random.default_rng(0), np.float32)
        dist.warmup(spec, np.float32, SGD)
        for mb in batches[net]:
            n_iters = max(3, min(iters[net], (4000 if net == "gist" else 200) // mb))
            block_iters = n_iters
            config = ReptileConfig(iters=n_iters, meta_batch=mb, eps0=0.1, inner=SGD, inner_steps=5, inner_batch=10,
                                   task_block=task_block_for(mb))
            sample = sampler(net, mb, block_iters)
            cached = {0: sample(0)}
            host_sample = cached.__getitem__   # one process: tasks sampled once, outside the timing

            def one(threads):
                nb.set_num_threads(threads)
                t = time.perf_counter()
                theta, _ = meta_train(spec, theta0, host_sample, block_iters, config, numba)
                return time.perf_counter() - t, theta

            def cluster():
                t = time.perf_counter()
                theta, _ = meta_train(spec, theta0, sample, block_iters, config, dist)
                return time.perf_counter() - t, theta

            results = {"1 process, 1 thread": lambda: one(1),
                       f"1 process, {default_threads} threads": lambda: one(default_threads),
                       f"{workers} workers": cluster}
            for fn in results.values():   # warm-up: compile, caches, worker task caches
                fn()
            times = {k: [] for k in results}
            thetas = {}
            for _ in range(repeats):      # interleaved, so a noisy neighbour hits every variant alike
                for k, fn in results.items():
                    s, thetas[k] = fn()
                    times[k].append(s / n_iters * 1e3)
            nb.set_num_threads(default_threads)
            same = all(np.array_equal(th, thetas["1 process, 1 thread"]) for th in thetas.values())
            row = {"net": net, "meta_batch": mb, "task_block": config.task_block,
                   "ms_per_iteration": {k: statistics.median(v) for k, v in times.items()}, "bitwise_equal": same}
            rows.append(row)
            ms = row["ms_per_iteration"]
            print(f"{net:>8} {mb:>5}  " + "  ".join(f"{ms[k]:>10.2f}" for k in results) +
                  f"  {'yes' if same else 'NO'}", flush=True)
    return rows


def sweep_throughput(workers, runs, iters):
    """Seconds for ``runs`` sine runs one after another vs ``minireptile sweep`` on the cluster."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    flags = ["--iters", str(iters), "--eval-tasks", "100", "--no-plot", "--quiet"]
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    try:
        t = time.perf_counter()
        for seed in range(runs):
            subprocess.run([sys.executable, "-m", "minireptile", "sine", *flags, "--seed", str(seed), "--out",
                            str(tmp / f"seq{seed}")], check=True, stdout=subprocess.DEVNULL, env=env)
        sequential = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "minireptile", "sweep", "sine", "--seeds", f"0-{runs - 1}",
                        "--workers", str(workers), "--out", str(tmp / "sweep"), *flags[:-1]], check=True,
                       stdout=subprocess.DEVNULL)
        swept = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"runs": runs, "iters": iters, "sequential_s": sequential, "sweep_s": swept,
            "speedup": sequential / swept}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="fewer sizes, iterations and repeats (rough numbers)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runs", type=int, default=4, help="sweep: number of runs")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.quick:
        batches = {"gist": [2, 32], "omniglot": [2, 16]}
        iters = {"gist": 10, "omniglot": 3}
        repeats, runs, run_iters = 1, 2, 500
    else:
        batches = {"gist": [2, 32, 256, 1024, 4096], "omniglot": [2, 16, 64]}
        iters = {"gist": 40, "omniglot": 6}
        repeats, runs, run_iters = args.repeats, args.runs, 30000   # the default `minireptile sine` run
    load = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    client = local_client(args.workers)
    client.wait_for_workers(args.workers)
    try:
        import numba as nb

        cols = ["1 process, 1 thread", f"1 process, {nb.get_num_threads()} threads", f"{args.workers} workers"]
        print(f"\nms per outer iteration (median of {repeats}), float32, default task blocks")
        print(f"{'net':>8} {'batch':>5}  " + "  ".join(f"{c[:10]:>10}" for c in cols) + "  bitwise")
        rows = time_rows(client, args.workers, ("gist", "omniglot"), batches, iters, repeats)
    finally:
        client.close()
        client.cluster.close()
    verdicts = {}
    for net in ("gist", "omniglot"):
        net_rows = [r for r in rows if r["net"] == net]
        pays = [r["meta_batch"] for r in net_rows
                if r["ms_per_iteration"][cols[2]] < min(r["ms_per_iteration"][cols[0]], r["ms_per_iteration"][cols[1]])]
        first = net_rows[0]["ms_per_iteration"]
        verdicts[net] = {"pays_from_meta_batch": min(pays) if pays else None,
                         "overhead_ms_at_meta_batch_2": first[cols[2]] - first[cols[0]]}
        print(f"{net}: the cluster beats the best single process from meta-batch "
              f"{verdicts[net]['pays_from_meta_batch'] or '(never in this range)'}; overhead at meta-batch 2: "
              f"{verdicts[net]['overhead_ms_at_meta_batch_2']:.1f} ms per iteration")
    print(f"\nsweep throughput: {runs} runs of `minireptile sine --iters {run_iters}`")
    sweep = sweep_throughput(args.workers, runs, run_iters)
    print(f"  one after another {sweep['sequential_s']:.1f} s, sweep on {args.workers} workers {sweep['sweep_s']:.1f} s "
          f"(x{sweep['speedup']:.2f})")
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    if args.json is not None:
        import minireptile
        import dask

        doc = {"machine": {"processor": platform.processor(), "cores": os.cpu_count(), "load_before": load,
                           "load_after": load_after},
               "versions": {"minireptile": minireptile.__version__, "dask": dask.__version__,
                            "numpy": np.__version__, "python": platform.python_version()},
               "workers": args.workers, "rows": rows, "verdicts": verdicts, "sweep": sweep, "quick": args.quick}
        args.json.write_text(json.dumps(doc, indent=2))
        print(f"json: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
