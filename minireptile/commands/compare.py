"""``minireptile compare``: Reptile, FOMAML and MAML on the same task stream, the MAML paper's table.

Pipeline: one stream of training tasks (``tasks.families.family_block``: every algorithm sees the
same tasks, K support + K query points each) → each algorithm trains its own θ from the same θ0:

    maml      exact second-order MAML, one inner SGD step α on the K support points, outer
              Adam on the query loss (minireptile.algorithms.maml; the MAML paper's protocol)
    fomaml    the same without the Hessian terms (first-order MAML; supervised-reptile's
              --foml-tail with k = 2: one step on the support set, gradient on the disjoint tail)
    reptile   Reptile with SGD inner steps over all 2K points of the task (the backend's
              train_chunk), linear ε schedule
    joint     Reptile with one full-batch inner step: SGD on the mixed-task loss (the paper's
              "joint training" / MAML's "pretrained" baseline)
    random    θ0 itself

→ evaluation on held-out tasks (``stream_rng(seed, EVAL)``): adapt with full-batch SGD steps of
size α on K shots, score the MSE on the task's query points, mean ± Student-t 95% CI over tasks.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ..backends import BACKENDS, get_backend
from ..errors import BackendUnavailableError
from ..algorithms.maml import MAMLConfig, meta_train_maml
from ..evaluation.regression import adapt_and_score
from ..mlp import MLPSpec, init_params
from ..optim import InnerOptimizer
from ..reference import forward
from ..reptile import ReptileConfig, meta_train
from ..tasks.families import FAMILIES, TaskFamily, family_block, family_eval_tasks, support_query_plan
from ..tasks.sine import block_iters_for, get_preset
from ..tasks.streams import DEFAULT_SEED, INIT, TRAIN, epoch_plan, stream_rng
from .common import (add_threads_flag, apply_threads, nonnegative_float, nonnegative_int, positive_float, positive_int,
                     prepare_backend)

ALGORITHMS = ("reptile", "fomaml", "maml", "joint", "random")
LABELS = {"reptile": "Reptile", "fomaml": "FOMAML", "maml": "MAML", "joint": "joint training (k=1)",
          "random": "random init"}
QUICK = {"iters": 1000, "eval_tasks": 600}


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="train Reptile, FOMAML and MAML on one task stream and tabulate",
                       description="Train Reptile, first-order MAML and exact MAML (Hessian-vector products) "
                       "on the same stream of sine tasks (preset maml-paper by default), then report the "
                       "post-adaptation MSE after 1, 5 and 10 steps for K = 5 and 10 shots, mean ± 95% CI "
                       "over 600 held-out tasks, beside joint training and a random initialisation.")
    p.add_argument("--quick", action="store_true",
                   help=f"short run: {QUICK['iters']} outer iterations (unless --iters is given)")
    p.add_argument("--family", choices=FAMILIES, default="maml-paper",
                   help="task family: a sine preset or a torchmeta family (default maml-paper)")
    p.add_argument("--noise-std", type=nonnegative_float, default=0.0, help="target noise std (default 0)")
    p.add_argument("--iters", type=positive_int, help="outer iterations of every algorithm (default 70000, "
                   f"--quick {QUICK['iters']})")
    p.add_argument("--meta-batch", type=positive_int, default=25, help="tasks per outer iteration (default 25)")
    p.add_argument("--train-shots", type=positive_int, default=10,
                   help="K of training: support points per task, and as many query points (default 10)")
    p.add_argument("--inner-lr", type=positive_float, default=0.01,
                   help="inner SGD step α in training and evaluation (default 0.01)")
    p.add_argument("--maml-steps", type=positive_int, default=1, help="MAML/FOMAML inner steps (default 1)")
    p.add_argument("--outer-lr", type=positive_float, default=1e-3, help="MAML/FOMAML outer Adam lr (default 1e-3)")
    p.add_argument("--reptile-steps", type=positive_int, default=5, help="Reptile inner steps (default 5)")
    p.add_argument("--reptile-batch", type=positive_int, default=10, help="Reptile inner minibatch (default 10)")
    p.add_argument("--reptile-eps", type=positive_float, default=1.0,
                   help="Reptile/joint ε0, annealed linearly to 0 (default 1.0)")
    p.add_argument("--shots", type=positive_int, nargs="+", default=[5, 10], help="K at evaluation (default 5 10)")
    p.add_argument("--eval-steps", type=positive_int, nargs="+", default=[1, 5, 10],
                   help="adaptation steps to report (default 1 5 10)")
    p.add_argument("--eval-tasks", type=positive_int, default=600, help="held-out tasks (default 600)")
    p.add_argument("--eval-query", type=positive_int, default=10,
                   help="query points scored per held-out task (default 10)")
    p.add_argument("--algorithms", nargs="+", choices=ALGORITHMS, default=list(ALGORITHMS),
                   help="which rows to run (default all)")
    p.add_argument("--seed", type=nonnegative_int, default=DEFAULT_SEED,
                   help=f"run seed, an integer >= 0 (default {DEFAULT_SEED}, as every command)")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="inner loops of Reptile/joint/evaluation and MAML's forward pass "
                   "(default: numba if importable, else numpy)")
    add_threads_flag(p)
    p.add_argument("--json", type=Path, help="also write a JSON summary here")
    p.add_argument("--save", type=Path, help="also save every trained θ (and θ0) to this .npz")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(run=run)


DEFAULT_BACKEND = "numba"


def default_backend(name: str | None):
    """The named backend, or numba when it can be imported, else the NumPy reference."""
    if name is not None:
        return get_backend(name)
    try:
        return get_backend("numba")
    except (ImportError, BackendUnavailableError):
        return get_backend("numpy")


class _Progress:
    def __init__(self, label: str, total: int, quiet: bool, every: float = 5.0):
        self.label, self.total, self.quiet, self.every = label, total, quiet, every
        self.t0 = self.last = time.perf_counter()

    def __call__(self, it, *_):
        now = time.perf_counter()
        if self.quiet or (now - self.last < self.every and it < self.total):
            return
        self.last = now
        print(f"  {self.label:<8} iter {it:>6d}/{self.total}  {now - self.t0:6.1f}s", flush=True)


def train_all(args, spec, family, theta0, backend, iters: int) -> tuple[dict, dict]:
    """θ of every requested algorithm, trained on the same task stream; also the seconds each took."""
    K, mb, seed, alpha = args.train_shots, args.meta_batch, args.seed, args.inner_lr
    n_points = 2 * K
    block_iters = block_iters_for(mb)

    def tasks(b):
        return family_block(family, seed, b, block_iters, mb, n_points)

    thetas, seconds = {}, {}
    for name in args.algorithms:
        t = time.perf_counter()
        progress = _Progress(name, iters, args.quiet)
        if name in ("maml", "fomaml"):
            plan, query = support_query_plan(mb, K, K, args.maml_steps)
            plans = np.broadcast_to(plan, (block_iters,) + plan.shape)
            queries = np.broadcast_to(query, (block_iters,) + query.shape)
            cfg = MAMLConfig(iters=iters, meta_batch=mb, inner_lr=alpha, first_order=(name == "fomaml"),
                             outer_lr=args.outer_lr)
            thetas[name], _ = meta_train_maml(spec, theta0, lambda b: tasks(b) + (plans, queries), block_iters,
                                              cfg, backend, callback=progress)
        elif name in ("reptile", "joint"):
            steps, batch = (args.reptile_steps, args.reptile_batch) if name == "reptile" else (1, n_points)
            cfg = ReptileConfig(iters=iters, meta_batch=mb, eps0=args.reptile_eps, eps_final=0.0,
                                inner=InnerOptimizer("sgd", alpha), inner_steps=steps, inner_batch=batch)

            def block(b, steps=steps, batch=batch):
                X, Y = tasks(b)
                # minibatches: shuffled epochs over the task's 2K points, from their own stream
                plan = epoch_plan(stream_rng(seed, TRAIN, b, 1), block_iters * mb, n_points, steps, batch)
                return X, Y, plan.reshape((block_iters, mb) + plan.shape[1:])
            thetas[name], _ = meta_train(spec, theta0, block, block_iters, cfg, backend, callback=progress)
        else:                                      # random init: θ0 itself
            thetas[name] = theta0
        seconds[name] = time.perf_counter() - t
    return thetas, seconds


def evaluate_all(args, spec, family, thetas, backend) -> dict:
    """{algorithm: {K: EvalResult}} on the same held-out tasks (K-shot = the first K shots)."""
    shots = sorted(set(args.shots))
    steps = (0,) + tuple(sorted(set(args.eval_steps)))
    Xs, Ys, Xq, Yq = family_eval_tasks(family, args.seed, args.eval_tasks, max(shots), args.eval_query)
    opt = InnerOptimizer("sgd", args.inner_lr)
    out = {}
    for name, theta in thetas.items():
        out[name] = {K: adapt_and_score(spec, theta, np.ascontiguousarray(Xs[:, :K]), np.ascontiguousarray(Ys[:, :K]),
                                        Xq, Yq, opt, backend, steps) for K in shots}
    return out


def results_table(results: dict, shots, eval_steps) -> str:
    """Markdown table: one row per algorithm, one column per (K, steps), cells mean ± 95% CI."""
    shots = sorted(set(shots))
    eval_steps = sorted(set(eval_steps))
    head = ["algorithm"] + [f"K={K}, {s} step{'s' if s > 1 else ''}" for K in shots for s in eval_steps]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in ALGORITHMS:
        if name not in results:
            continue
        cells = [LABELS[name]]
        for K in shots:
            r = results[name][K]
            for s in eval_steps:
                j = r.steps.index(s)
                cells.append(f"{r.mean[j]:.3f} ± {r.ci95[j]:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def outlier_notes(results: dict, threshold: float) -> list[str]:
    """One line per (algorithm, K, steps) where some task's adapted MSE exceeds ``threshold``.

    A few diverging adaptations dominate a mean; these lines give their count and the median.
    """
    notes = []
    for name, per_k in results.items():
        for K, r in per_k.items():
            for j, s in enumerate(r.steps):
                bad = int((r.losses[:, j] > threshold).sum())
                if s > 0 and bad:
                    notes.append(f"note: {LABELS[name]}, K={K}, {s} steps: {bad} of {len(r.losses)} tasks above MSE "
                                 f"{threshold:.3g} (adaptation diverged); median {np.median(r.losses[:, j]):.3f}")
    return notes


def run(args) -> int:
    iters = args.iters if args.iters is not None else (QUICK["iters"] if args.quick else 70000)
    preset = get_preset("maml-paper")
    spec = MLPSpec((1, *preset.hidden, 1), preset.activation, "mse")
    family = TaskFamily(args.family, args.noise_std)
    apply_threads(args)
    theta0 = init_params(spec, stream_rng(args.seed, INIT), np.float64)
    backend, compile_seconds = prepare_backend("minireptile compare", args.backend or DEFAULT_BACKEND, spec,
                                               np.float64, InnerOptimizer("sgd", args.inner_lr), args.quiet)
    if not args.quiet:
        print(f"minireptile compare: family {family.name} (noise {family.noise_std}), {iters} iterations x "
              f"{args.meta_batch} tasks, K={args.train_shots} (+{args.train_shots} query), α={args.inner_lr}, "
              f"backend {backend.name}, seed {args.seed}; compile {compile_seconds:.1f}s", flush=True)
    t0 = time.perf_counter()
    thetas, seconds = train_all(args, spec, family, theta0, backend, iters)
    results = evaluate_all(args, spec, family, thetas, backend)
    total = time.perf_counter() - t0
    print(f"\nMSE on {args.eval_query} query points after k SGD steps (α={args.inner_lr}) on K shots, "
          f"mean ± 95% CI over {args.eval_tasks} held-out tasks ({family.name}, {iters} iterations, "
          f"{total:.0f}s):\n")
    print(results_table(results, args.shots, args.eval_steps))
    # "diverged": 10x the mean step-0 MSE of θ0 on the same tasks (the scale of the targets)
    Xs, Ys, Xq, Yq = family_eval_tasks(family, args.seed, args.eval_tasks, max(args.shots), args.eval_query)
    scale = float(np.mean([np.mean((forward(spec, theta0, Xq[i]) - Yq[i]) ** 2) for i in range(len(Xq))]))
    for line in outlier_notes(results, 10 * scale):
        print(line)
    if args.save is not None:
        from ..checkpoint import atomic_write

        atomic_write(args.save, lambda f: np.savez(f, theta0=theta0, **{k: v for k, v in thetas.items()}))
        print(f"thetas: {args.save}", file=sys.stderr)
    if args.json is not None:
        from ..checkpoint import atomic_write

        summary = {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "run"},
            "iters": iters, "backend": backend.name, "train_seconds": seconds, "total_seconds": total,
            "results": {name: {str(K): {"steps": list(r.steps), "mean": r.mean.tolist(), "ci95": r.ci95.tolist(),
                                        "median": np.median(r.losses, axis=0).tolist(),
                                        "max": r.losses.max(axis=0).tolist()}
                               for K, r in per_k.items()} for name, per_k in results.items()},
        }
        atomic_write(args.json, lambda f: f.write(json.dumps(summary, indent=2).encode()))
        print(f"json: {args.json}", file=sys.stderr)
    return 0
