"""Cost of argument validation on the hot paths (docs/errors.md, "What validation costs").

For the gist sine problem (1-64-64-1 tanh, 5 SGD steps of 10 points, float32) it times, per call:
the checks alone (``validation.inner_loop_args`` / ``train_chunk_args``), the validated backend
function, and the backend module's function called directly without checks. Repeats are
interleaved (checks, validated, raw, checks, ...) and the min and median are reported.

    python benchmarks/validation_overhead.py [--repeats 15] [--backends numpy numba]
"""

from __future__ import annotations

import argparse
import importlib
import platform
import statistics
import time

import numpy as np

from minireptile import InnerOptimizer, MLPSpec, get_backend, get_preset, init_params, reference, sine_block
from minireptile import validation as check
from minireptile.backends.base import _numpy_train_chunk


def per_call(fn, number: int) -> float:
    t = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--backends", nargs="+", default=["numpy", "numba"])
    args = parser.parse_args()

    spec = MLPSpec((1, 64, 64, 1))
    theta = init_params(spec, np.random.default_rng(0), np.float32)
    X, Y, plans = sine_block(0, 0, 1000, 1, get_preset("gist"), 5, 10, np.float32)
    eps = np.full(1000, 0.1)
    opt = InnerOptimizer("sgd", 0.02)
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"numpy {np.__version__}; min / median of {args.repeats} interleaved repeats")
    print(f"{'backend':8} {'call':32} {'checks':>10} {'validated':>12} {'unchecked':>12} {'overhead':>9}")
    for name in args.backends:
        validated = get_backend(name)
        if name == "numpy":
            raw_inner, raw_chunk = reference.inner_loop, _numpy_train_chunk  # reference validates itself
        else:
            module = importlib.import_module({"numba": "minireptile.backends.numba_cpu", "cuda": "minireptile.backends.cuda"}[name])
            raw_inner, raw_chunk = module.inner_loop, module.train_chunk
        validated.warmup(spec, np.float32, opt)
        cases = {
            "inner_loop (1 task, 5 steps)": (
                lambda: check.inner_loop_args(spec, theta, X[0], Y[0], plans[0], opt, None, True),
                lambda: validated.inner_loop(spec, theta, X[0], Y[0], plans[0], opt),
                lambda: raw_inner(spec, theta, X[0], Y[0], plans[0], opt), 200 if name == "numpy" else 2000),
            "train_chunk (1000 iterations)": (
                lambda: check.train_chunk_args(spec, theta, X, Y, plans, eps, opt, None, True),
                lambda: validated.train_chunk(spec, theta, X, Y, plans, eps, opt),
                lambda: raw_chunk(spec, theta, X, Y, plans, eps, opt), 1),
        }
        for label, (checks, full, raw, number) in cases.items():
            times = {"checks": [], "validated": [], "unchecked": []}
            for _ in range(args.repeats):
                times["checks"].append(per_call(checks, max(number, 50)))
                times["validated"].append(per_call(full, number))
                times["unchecked"].append(per_call(raw, number))
            fmt = lambda ts: f"{min(ts) * 1e6:,.1f}/{statistics.median(ts) * 1e6:,.1f}"  # noqa: E731
            share = min(times["checks"]) / min(times["unchecked"])
            print(f"{name:8} {label:32} {fmt(times['checks']):>10} {fmt(times['validated']):>12} "
                  f"{fmt(times['unchecked']):>12} {share:>8.1%}")
    xb, yb = X[0, 0, :10], Y[0, 0, :10]
    ts = [per_call(lambda: check.batch_args(spec, theta, xb, yb, False), 2000) for _ in range(args.repeats)]
    print(f"numpy reference: the checks at the top of each loss_and_grad call inside inner_loop "
          f"(check_finite=False): {min(ts) * 1e6:.1f}/{statistics.median(ts) * 1e6:.1f} µs per step")
    print("times in µs per call: min/median; overhead = min(checks) / min(unchecked); for numpy the "
          "'unchecked' functions are the reference itself, which validates every inner_loop call")


if __name__ == "__main__":
    main()
