"""GPU benchmark: µs per task per outer Reptile step of the CUDA backend, against its peers.

    python benchmarks/bench_gpu.py [--meta-batches 1024 4096 16384] [--iters 8] [--repeats 5]
                                   [--json PATH] [--quick]

What it measures
----------------
Workload: the gist network (1-64-64-1 tanh, MSE, float32), 5 inner SGD steps of minibatch 10 at
lr 0.02 on the gist's sine tasks (``sine_block``), ε from ``epsilon_schedule``; every row gets the
same θ0, tasks, plans and ε. For each meta-batch size (default 1024, 4096, 16384) and each row:

1. one untimed first call, its seconds reported apart ("first call": compile + first run; for the
   cuda backend its ``warmup`` seconds are reported too);
2. agreement: that call's θ against the cuda backend's, max |Δθ| / max |θ| (float32: expect ≲ 1e-5);
3. ``--repeats`` timed calls, interleaved row by row; one call = ``--iters`` outer iterations of
   the whole meta-batch, host→device copy of the chunk's tasks and device→host copy of θ included
   (as ``meta_train`` uses a backend). Reported: min and median µs per task per outer iteration
   = seconds / (iters · meta_batch), and the median's speed-up of the cuda backend over the row.

Rows: minireptile's ``cuda`` backend (``train_chunk``: one kernel launch per outer step for the
whole inner loop, outer update on the device); minireptile's ``numba`` CPU backend if importable
(fewer iterations per call, the per-iteration work is the same); JAX ``vmap`` (``jax.jit`` of a
``lax.scan`` over the chunk, benchmarks/peers/jax_peer.py) and ``torch.func.vmap`` (the
torch_peer's ``train_vmap`` with its tensors on the GPU, here) when installed WITH GPU support.
Rows that cannot run print one line saying why.

Without a GPU it prints one line and exits 0. ``--quick`` is a smoke check of this script that also
runs in numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, no GPU): a 1-8-8-1 net, meta-batches
2 and 3, one iteration, one repeat, peers on whatever device they have; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
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
                         get_backend, get_preset, init_params, sine_block, stream_rng)
from minireptile.tasks import INIT  # noqa: E402

GIST = get_preset("gist")
SEED = 0


@dataclass
class Row:
    """One implementation at one meta-batch size and its measurements (seconds per call)."""

    label: str
    train: Callable              # train(theta, X, Y, plans, eps) -> theta (P,) numpy
    iters: int                   # outer iterations per timed call
    first_call_s: float = float("nan")
    rel_err: float = float("nan")
    times: list = field(default_factory=list)

    def us_per_task(self, meta_batch: int) -> list[float]:
        return [t / (self.iters * meta_batch) * 1e6 for t in self.times]


# ---------------------------------------------------------------------------------------------
# implementations: each returns (label, train) or a line saying why it cannot run
# ---------------------------------------------------------------------------------------------
def minireptile_row(name: str, spec, opt):
    be = get_backend(name)

    def train(theta, X, Y, plans, eps):
        return be.train_chunk(spec, theta, X, Y, plans, eps, opt)[0]

    return be, train


def jax_row(spec, opt, allow_cpu: bool):
    from peers import jax_peer

    if not jax_peer.AVAILABLE:
        return None, jax_peer.INSTALL
    platform_ = jax_peer.jax.default_backend()
    if platform_ != "gpu" and not allow_cpu:
        return None, f'JAX has no GPU here (default backend: {platform_}): pip install "jax[cuda12]"'

    def train(theta, X, Y, plans, eps):
        return jax_peer.train_scan(spec, theta, X, Y, plans, eps, opt)

    return f"JAX vmap, jit+scan ({platform_})", train


def torch_row(spec, opt, allow_cpu: bool):
    """torch_peer.train_vmap's computation with its tensors on the GPU (CPU only for --quick)."""
    from peers import torch_peer

    if not torch_peer.AVAILABLE:
        return None, torch_peer.INSTALL
    torch = torch_peer.torch
    if torch.cuda.is_available():
        device = "cuda"
    elif allow_cpu:
        device = "cpu"
    else:
        return None, "PyTorch has no CUDA GPU here (torch.cuda.is_available() is False): install a CUDA build of torch"
    from torch.func import functional_call, grad, vmap

    def train(theta, X, Y, plans, eps):
        model = torch_peer.gist_model(spec, theta).to(device)
        names = [name for name, _ in model.named_parameters()]
        theta_t = {name: p.detach() for name, p in model.named_parameters()}
        Xt, Yt = torch.from_numpy(X).to(device), torch.from_numpy(Y).to(device)
        Pt = torch.from_numpy(plans).to(device)
        iters, n_tasks, steps, _ = plans.shape
        rows = torch.arange(n_tasks, device=device)[:, None]              # (n_tasks, 1)

        def task_loss(params, x, y):                                       # x (batch, d_in)
            return (functional_call(model, params, (x,)) - y).pow(2).mean()

        task_grads = vmap(grad(task_loss))
        with torch.no_grad():
            for j in range(iters):
                e = theta.dtype.type(eps[j]).item()
                phi = {k: t.expand(n_tasks, *t.shape) for k, t in theta_t.items()}
                for s in range(steps):
                    idx = Pt[j, :, s]                                      # (n_tasks, batch)
                    g = task_grads(phi, Xt[j][rows, idx], Yt[j][rows, idx])
                    phi = {k: phi[k] - opt.lr * g[k] for k in names}
                theta_t = {k: theta_t[k] + e * (phi[k].mean(0) - theta_t[k]) for k in names}
        return torch.cat([theta_t[k].reshape(-1) for k in names]).cpu().numpy()  # synchronises

    return f"torch.func.vmap ({device})", train


# ---------------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------------
def problem(spec, meta_batch: int, iters: int, dtype=np.float32):
    theta = init_params(spec, stream_rng(SEED, INIT), dtype)
    X, Y, plans = sine_block(SEED, 0, iters, meta_batch, GIST, GIST.inner_steps, GIST.inner_batch, dtype)
    eps = epsilon_schedule(np.arange(iters), GIST.iters, GIST.eps0, GIST.eps_final)
    return theta, X, Y, plans, eps


def measure(rows: list[Row], spec, meta_batch: int, repeats: int, log) -> None:
    data = {}
    for row in rows:  # first calls, and agreement with the cuda backend (the first row)
        theta, X, Y, plans, eps = data.setdefault(row.iters, problem(spec, meta_batch, row.iters))
        t = time.perf_counter()
        out = row.train(theta, X, Y, plans, eps)
        row.first_call_s = time.perf_counter() - t
        ref = rows[0].train(theta, X, Y, plans, eps) if row is not rows[0] else out
        row.rel_err = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
        log(f"  {row.label}: first call {row.first_call_s:.2f}s, max rel dtheta vs cuda {row.rel_err:.1e}")
    for _ in range(repeats):  # interleaved
        for row in rows:
            theta, X, Y, plans, eps = data[row.iters]
            t = time.perf_counter()
            row.train(theta, X, Y, plans, eps)
            row.times.append(time.perf_counter() - t)


def table(results: list[dict]) -> str:
    lines = [f"{'meta-batch':>10}  {'implementation':<30} {'min µs/task':>12} {'median µs/task':>15} "
             f"{'cuda speed-up':>14} {'first call s':>13} {'rel Δθ':>8}"]
    for r in results:
        lines.append(f"{r['meta_batch']:>10}  {r['label']:<30} {r['us_per_task_min']:>12.3f} "
                     f"{r['us_per_task_median']:>15.3f} {r['cuda_speedup']:>13.2f}x {r['first_call_s']:>13.2f} "
                     f"{r['rel_err_vs_cuda']:>8.0e}")
    return "\n".join(lines)


def machine() -> dict:
    from minireptile.backends import cuda as cuda_backend

    info = {"python": platform.python_version(), "numpy": np.__version__, "minireptile": minireptile.__version__,
            "processor": platform.processor() or platform.machine()}
    import numba
    import numba_cuda

    info["numba"], info["numba_cuda"] = numba.__version__, numba_cuda.__version__
    gpu = cuda_backend.device_info()
    info.update(gpu=gpu["name"], compute_capability=gpu["compute_capability"], simulator=gpu["simulator"])
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--meta-batches", type=int, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--iters", type=int, default=8, help="outer iterations per timed call (default 8)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per row (default 5)")
    p.add_argument("--json", type=Path, default=Path("bench_gpu.json"), help="default bench_gpu.json")
    p.add_argument("--quick", action="store_true", help="smoke check: tiny sizes, also in the CUDA simulator")
    args = p.parse_args(argv)

    try:
        cuda_backend = get_backend("cuda")
    except BackendUnavailableError as exc:
        print(f"bench_gpu: nothing measured: {exc}")
        return 0
    info = machine()
    simulator = info["simulator"]
    spec = MLPSpec((1, *GIST.hidden, 1), GIST.activation, "mse")
    meta_batches, iters, repeats = args.meta_batches, args.iters, args.repeats
    if args.quick:
        spec, meta_batches, iters, repeats = MLPSpec((1, 8, 8, 1), GIST.activation, "mse"), [2, 3], 1, 1
    opt = InnerOptimizer("sgd", GIST.inner_lr)
    log = print
    log(f"bench_gpu: {info.get('gpu', '?')}{' (CUDA SIMULATOR: timings mean nothing)' if simulator else ''}; "
        f"net {spec.sizes} {spec.activation}, float32, SGD x{GIST.inner_steps} batch {GIST.inner_batch}")

    warm_s = cuda_backend.warmup(spec, np.float32, opt)
    log(f"cuda warmup (compile or load from cache): {warm_s:.2f}s")
    impls: list[tuple[str, Callable, int]] = []
    _, train = minireptile_row("cuda", spec, opt)
    impls.append(("minireptile cuda", train, iters))
    try:
        numba_be, train = minireptile_row("numba", spec, opt)
        log(f"numba warmup: {numba_be.warmup(spec, np.float32, opt):.2f}s")
        impls.append(("minireptile numba (CPU)", train, max(1, iters // 8)))
    except (ImportError, BackendUnavailableError) as exc:
        log(f"skipped numba CPU backend: {exc}")
    for make in (jax_row, torch_row):
        label, train = make(spec, opt, allow_cpu=args.quick)
        if label is None:
            log(f"skipped: {train}")
        else:
            impls.append((label, train, iters))

    results = []
    for n in meta_batches:
        log(f"meta-batch {n}:")
        rows = [Row(label, train, it) for label, train, it in impls]
        measure(rows, spec, n, repeats, log)
        cuda_median = statistics.median(rows[0].us_per_task(n))
        for row in rows:
            us = row.us_per_task(n)
            results.append({"meta_batch": n, "label": row.label, "iters_per_call": row.iters, "repeats": repeats,
                            "us_per_task_min": min(us), "us_per_task_median": statistics.median(us),
                            "us_per_task_all": us, "cuda_speedup": statistics.median(us) / cuda_median,
                            "first_call_s": row.first_call_s, "rel_err_vs_cuda": row.rel_err})
    text = table(results)
    print()
    print(text)
    summary = {"command": "python benchmarks/bench_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "machine": info, "spec": spec.to_dict(), "dtype": "float32", "cuda_warmup_s": warm_s,
               "inner_steps": GIST.inner_steps, "inner_batch": GIST.inner_batch, "results": results}
    args.json.write_text(json.dumps(summary, indent=2))
    print(f"json: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
