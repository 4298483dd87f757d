"""Throughput of the default `minireptile omniglot` configuration, against the machine's matmul peak.

What it measures (synthetic 28x28 data of Omniglot's shape, so it needs no dataset):

    train    seconds per outer iteration of meta-training (host episode sampling + the backend's
             train_chunk), and GFLOP/s counting forward + backward multiply-adds of the weights
             (MLPSpec.flops_per_example x meta-batch x inner steps x inner batch; Adam and the
             outer update are not counted)
    sample   the host-side share: seconds per outer iteration spent in episodes.train_block
    eval     seconds per meta-test episode (50 full-batch Adam steps on the 5 support images,
             25 queries scored at the default schedule, 100 episodes per backend call at most)
    peak     numpy float32 GEMM 2048x2048x2048 GFLOP/s (all BLAS threads): the matmul peak the
             MLP kernels are compared with

train, sample and eval run with numpy's BLAS on one thread, as the ``minireptile`` commands run it
(set in-process through hostenv.BlasThreads; where that is unavailable, with numpy's default and a
note in the output).

Each quantity is measured after a burn-in, in ``--repeats`` interleaved rounds (sample, peak, then
train and eval for each backend, again ...), and reported as min and median: on a shared machine the minimum is the
least disturbed run. Usage::

    python benchmarks/omniglot_throughput.py [--backends numba,numpy] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostenv import BlasThreads  # noqa: E402
from minireptile import InnerOptimizer, MLPSpec, ReptileConfig, get_backend, init_params, meta_train  # noqa: E402
from minireptile.tasks.episodes import (EpisodeConfig, block_iters_for, full_batch_plan, sample_episodes,  # noqa: E402
                                       train_block)
from minireptile.evaluation.fewshot import evaluate_episodes, score_schedule  # noqa: E402
from minireptile.tasks import stream_rng  # noqa: E402

# the command's defaults (minireptile/commands/omniglot.py)
WAYS, SHOTS, TRAIN_SHOTS, QUERIES = 5, 1, 10, 5
META_BATCH, INNER_ITERS, INNER_BATCH, INNER_LR = 5, 5, 10, 3e-3
HIDDEN, EVAL_ITERS = (256, 128, 64, 64), 50


def synthetic(n_classes: int, per_class: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Sparse 'ink' images in [0, 1] like Omniglot's (about 10% ink): (n, 784) float32, labels (n,)."""
    x = (rng.random((n_classes * per_class, 784)) < 0.1).astype(np.float32)
    return x, np.repeat(np.arange(n_classes), per_class)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="numba,numpy", help="comma-separated, measured interleaved")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--iters", type=int, default=40, help="outer iterations per train measurement")
    ap.add_argument("--episodes", type=int, default=20, help="meta-test episodes per eval measurement")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    backends = [get_backend(name) for name in args.backends.split(",")]
    spec = MLPSpec((784, *HIDDEN, WAYS), "relu", "ce")
    opt = InnerOptimizer("adam", INNER_LR, state_policy="carry")
    cfg = ReptileConfig(iters=args.iters, meta_batch=META_BATCH, eps0=1.0, inner=opt, inner_steps=INNER_ITERS,
                        inner_batch=INNER_BATCH)
    ecfg = EpisodeConfig(WAYS, TRAIN_SHOTS, INNER_ITERS, INNER_BATCH)
    rng = np.random.default_rng(0)
    x_train, y_train = synthetic(544, 20, rng)
    x_test, y_test = synthetic(106, 20, rng)
    block_iters = block_iters_for(META_BATCH, ecfg.n_points, 784)
    theta0 = init_params(spec, stream_rng(0, 0), np.float32)
    episodes = sample_episodes(stream_rng(0, 2, 0), y_test, args.episodes, WAYS, SHOTS, QUERIES)
    plan = full_batch_plan(args.episodes, WAYS * SHOTS, EVAL_ITERS)
    steps = score_schedule(EVAL_ITERS)
    eval_opt = InnerOptimizer("adam", INNER_LR)

    def train(backend) -> float:
        t = time.perf_counter()
        meta_train(spec, theta0, lambda b: train_block(0, b, block_iters, META_BATCH, x_train, y_train, ecfg),
                   block_iters, cfg, backend)
        return (time.perf_counter() - t) / args.iters

    def sample() -> float:
        t = time.perf_counter()
        train_block(0, 0, block_iters, META_BATCH, x_train, y_train, ecfg)
        return (time.perf_counter() - t) / block_iters

    def evaluate(backend) -> float:
        t = time.perf_counter()
        evaluate_episodes(spec, theta0, x_test, episodes, plan, eval_opt, backend, steps)
        return (time.perf_counter() - t) / args.episodes

    a = rng.random((2048, 2048), dtype=np.float32)
    blas = BlasThreads()
    if not blas.available:
        print("note: BLAS threads cannot be set in-process here; everything runs with numpy's default BLAS threads")

    def peak() -> float:
        blas(os.cpu_count() or 1)
        t = time.perf_counter()
        a @ a
        gflops = 2 * 2048**3 / (time.perf_counter() - t) / 1e9
        blas(1)  # as the commands run it
        return gflops

    measures = {"sample": sample, "peak": peak}
    for backend in backends:
        backend.warmup(spec, np.float32, opt)
        measures[f"train {backend.name}"] = lambda b=backend: train(b)
        measures[f"eval {backend.name}"] = lambda b=backend: evaluate(b)
    blas(1)
    for f in measures.values():  # burn-in
        f()
    runs = {name: [] for name in measures}
    for r in range(args.repeats):
        for name, f in measures.items():
            runs[name].append(f())
        print(f"round {r + 1}/{args.repeats}: " + ", ".join(
            f"{name} {runs[name][-1]:.1f} GFLOP/s" if name == "peak" else f"{name} {runs[name][-1] * 1e3:.2f} ms"
            for name in measures), flush=True)
    flop = META_BATCH * INNER_ITERS * INNER_BATCH * spec.flops_per_example()
    best = {k: (max(v) if k == "peak" else min(v)) for k, v in runs.items()}
    med = {k: statistics.median(v) for k, v in runs.items()}
    result = {
        "config": {"model": spec.to_dict(), "n_params": spec.n_params, "meta_batch": META_BATCH,
                   "inner_iters": INNER_ITERS, "inner_batch": INNER_BATCH, "inner": opt.to_dict(),
                   "repeats": args.repeats, "iters": args.iters, "episodes": args.episodes,
                   "blas_threads": 1 if blas.available else "numpy default"},
        "gflop_per_iteration": flop / 1e9,
        "sample_seconds_per_iteration": {"min": best["sample"], "median": med["sample"]},
        "matmul_peak_gflops": {"best": best["peak"], "median": med["peak"]},
        "backends": {},
        "machine": {"processor": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "numpy": np.__version__},
    }
    print(f"\n{'-'.join(map(str, spec.sizes))} ({spec.n_params} params), {flop / 1e9:.3f} GFLOP per outer "
          f"iteration; float32 GEMM peak {best['peak']:.1f} GFLOP/s (median {med['peak']:.1f}); host sampling "
          f"{best['sample'] * 1e3:.2f} ms/iter")
    for backend in backends:
        tr, ev = f"train {backend.name}", f"eval {backend.name}"
        result["backends"][backend.name] = {
            "seconds_per_iteration": {"min": best[tr], "median": med[tr]},
            "train_gflops": {"best": flop / best[tr] / 1e9, "median": flop / med[tr] / 1e9},
            "eval_seconds_per_episode": {"min": best[ev], "median": med[ev]},
            # one inner step: of an evaluation episode (batch = the support set) / of a training task (batch 10)
            "eval_over_train_per_step": {k: (d[ev] / EVAL_ITERS) / (d[tr] / (META_BATCH * INNER_ITERS))
                                         for k, d in (("min", best), ("median", med))},
        }
        ratio = result["backends"][backend.name]["eval_over_train_per_step"]
        print(f"  {backend.name:>6}: {best[tr] * 1e3:.1f} ms/iter (median {med[tr] * 1e3:.1f}) = "
              f"{flop / best[tr] / 1e9:.1f} GFLOP/s, {100 * flop / best[tr] / 1e9 / best['peak']:.0f}% of peak; "
              f"eval {best[ev] * 1e3:.0f} ms/episode (median {med[ev] * 1e3:.0f}); per inner step "
              f"{best[ev] / EVAL_ITERS * 1e3:.2f} ms eval vs {best[tr] / (META_BATCH * INNER_ITERS) * 1e3:.2f} ms "
              f"train = {ratio['min']:.2f}x (median {ratio['median']:.2f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
