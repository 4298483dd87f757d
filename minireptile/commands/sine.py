"""``minireptile sine``: meta-train on sine-wave regression, evaluate, report.

Pipeline: sample blocks of tasks on the host (:mod:`minireptile.tasks`) → the backend's
``train_chunk`` (inner loops + outer update) → evaluation on held-out tasks with 95% CIs for the
meta-learned θ and for the initial (not meta-trained) θ0 → a results table, a checkpoint, an
optional JSON summary and, with matplotlib, the gist's plot.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..backends import BACKENDS, get_backend
from ..checkpoint import save_checkpoint
from ..cli import nonnegative_float, positive_float, positive_int, unit_interval
from ..evaluate import EVAL_STEPS, adapted_predictions, evaluate_sine
from ..mlp import MLPSpec, init_params
from ..optim import InnerOptimizer
from ..reptile import ReptileConfig, meta_train
from ..tasks import EVAL, INIT, PLOT, PRESETS, block_iters_for, get_preset, sine_block, sine_eval_tasks, stream_rng

DEFAULT_BACKEND = "numpy"


def add_parser(sub) -> None:
    p = sub.add_parser("sine", help="meta-train on sine-wave regression (default: the gist protocol)",
                       description="Meta-train an MLP with Reptile on sine-wave regression and evaluate it. "
                       "Defaults reproduce openai's Reptile sine demo (preset 'gist').")
    p.add_argument("--preset", choices=sorted(PRESETS), default="gist", help="protocol (default: gist)")
    p.add_argument("--iters", type=positive_int, help="outer iterations (preset: 30000)")
    p.add_argument("--meta-batch", type=positive_int, help="tasks per outer iteration (preset: 1)")
    p.add_argument("--inner-steps", type=positive_int, help="inner steps per task (preset: 5)")
    p.add_argument("--inner-batch", type=positive_int, help="inner minibatch size (preset: 10)")
    p.add_argument("--inner-lr", type=positive_float, help="inner step size (preset: 0.02)")
    p.add_argument("--outer-lr", type=positive_float, help="initial outer step size ε0 (preset: 0.1)")
    p.add_argument("--outer-lr-final", type=nonnegative_float, help="final outer step size (preset: 0)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd", help="inner optimizer (default: sgd)")
    p.add_argument("--beta1", type=unit_interval, default=0.0, help="Adam β1 (default 0, as the paper)")
    p.add_argument("--beta2", type=unit_interval, default=0.999, help="Adam β2 (default 0.999)")
    p.add_argument("--adam-state", choices=("reset", "carry"), default="reset",
                   help="Adam moments per task (reset, default) or carried across tasks")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="default: float32")
    p.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    p.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help=f"inner-loop implementation (default: {DEFAULT_BACKEND})")
    p.add_argument("--eval-tasks", type=positive_int, default=100, help="held-out tasks (default 100)")
    p.add_argument("--out", type=Path, default=Path("runs/sine"), help="output folder (default runs/sine)")
    p.add_argument("--json", type=Path, help="also write a JSON summary here")
    p.add_argument("--no-plot", action="store_true", help="skip the plot even if matplotlib is installed")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(run=run)


def build_config(args) -> dict:
    """The run's full configuration as a JSON-serialisable dict (stored in checkpoints)."""
    preset = get_preset(args.preset)
    pick = lambda value, default: default if value is None else value  # noqa: E731
    opt = InnerOptimizer(args.optimizer, pick(args.inner_lr, preset.inner_lr), args.beta1, args.beta2,
                         1e-8, args.adam_state)
    reptile = ReptileConfig(
        iters=pick(args.iters, preset.iters),
        meta_batch=pick(args.meta_batch, preset.meta_batch),
        eps0=pick(args.outer_lr, preset.eps0),
        eps_final=pick(args.outer_lr_final, preset.eps_final),
        inner=opt,
        inner_steps=pick(args.inner_steps, preset.inner_steps),
        inner_batch=pick(args.inner_batch, preset.inner_batch),
    )
    spec = MLPSpec((1, *preset.hidden, 1), preset.activation, "mse")
    return {
        "command": "sine",
        "preset": preset.name,
        "model": spec.to_dict(),
        "reptile": reptile.to_dict(),
        "dtype": args.dtype,
        "seed": args.seed,
        "backend": args.backend,
        "eval_tasks": args.eval_tasks,
        "eval_steps": list(EVAL_STEPS),
        "block_iters": block_iters_for(reptile.meta_batch),
    }


def _reptile_config(cfg: dict) -> ReptileConfig:
    r = dict(cfg["reptile"])
    r["inner"] = InnerOptimizer(**r["inner"])
    return ReptileConfig(**r)


class Progress:
    """Prints a progress line every ``every`` seconds: iteration, ε, running loss, it/s, ETA."""

    def __init__(self, total: int, start: int, config: ReptileConfig, quiet: bool, every: float = 2.0):
        self.total, self.start, self.config, self.quiet, self.every = total, start, config, quiet, every
        self.t0 = self.last = time.perf_counter()
        self.running = None

    def __call__(self, it, theta, losses, state) -> None:
        for value in losses:  # exponential moving average of the inner training loss
            self.running = value if self.running is None else 0.98 * self.running + 0.02 * value
        now = time.perf_counter()
        if self.quiet or (now - self.last < self.every and it < self.total):
            return
        self.last = now
        rate = (it - self.start) / max(now - self.t0, 1e-9)
        eps = self.config.eps0 + (self.config.eps_final - self.config.eps0) * it / self.config.iters
        eta = (self.total - it) / rate if rate > 0 else float("inf")
        print(f"iter {it:>7d}/{self.total}  eps {eps:.4f}  train loss {self.running:.4f}  "
              f"{rate:,.0f} it/s  ETA {eta:.0f}s", flush=True)


def results_table(steps, meta, random) -> str:
    """Plain-text table: steps × (meta-learned, random init) mean ± 95% CI."""
    lines = [f"{'steps':>5}  {'meta-learned MSE':>20}  {'random-init MSE':>20}"]
    for s, mm, mc, rm, rc in zip(steps, meta.mean, meta.ci95, random.mean, random.ci95):
        lines.append(f"{s:>5d}  {mm:>10.4f} ± {mc:<7.4f}  {rm:>10.4f} ± {rc:<7.4f}")
    return "\n".join(lines)


def versions() -> dict:
    import numba
    import scipy

    return {"minireptile": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "scipy": scipy.__version__, "machine": platform.machine(),
            "processor": platform.processor() or platform.machine()}


def run(args) -> int:
    cfg = build_config(args)
    rcfg = _reptile_config(cfg)
    spec = MLPSpec.from_dict(cfg["model"])
    preset = get_preset(cfg["preset"])
    dtype = np.dtype(cfg["dtype"])
    seed = cfg["seed"]
    backend = get_backend(cfg["backend"])

    theta0 = init_params(spec, stream_rng(seed, INIT), dtype)
    t = time.perf_counter()
    backend.warmup(spec, dtype, rcfg.inner)
    compile_seconds = time.perf_counter() - t

    block_iters = cfg["block_iters"]

    def sample_block(b):
        return sine_block(seed, b, block_iters, rcfg.meta_batch, preset, rcfg.inner_steps, rcfg.inner_batch, dtype)

    if not args.quiet:
        print(f"minireptile sine: preset {preset.name}, {rcfg.iters} iterations, meta-batch {rcfg.meta_batch}, "
              f"{rcfg.inner.name} x{rcfg.inner_steps} (batch {rcfg.inner_batch}, lr {rcfg.inner.lr}), "
              f"backend {backend.name}, {dtype.name}, seed {seed}; compile {compile_seconds:.2f}s", flush=True)
    progress = Progress(rcfg.iters, 0, rcfg, args.quiet)
    t = time.perf_counter()
    theta, state = meta_train(spec, theta0, sample_block, block_iters, rcfg, backend, callback=progress)
    train_seconds = time.perf_counter() - t

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "checkpoint.npz", theta, cfg, rcfg.iters, state)

    eval_opt = InnerOptimizer(rcfg.inner.name, rcfg.inner.lr, rcfg.inner.beta1, rcfg.inner.beta2, rcfg.inner.eps)
    tasks = sine_eval_tasks(stream_rng(seed, EVAL), cfg["eval_tasks"], preset, dtype)
    meta = evaluate_sine(spec, theta, tasks, eval_opt, backend, EVAL_STEPS)
    random = evaluate_sine(spec, theta0, tasks, eval_opt, backend, EVAL_STEPS)

    print(f"\nMSE on the {preset.n_grid}-point grid after k full-batch steps on {preset.eval_shots} points, "
          f"mean ± 95% CI over {cfg['eval_tasks']} held-out tasks (train {train_seconds:.1f}s):")
    print(results_table(EVAL_STEPS, meta, random))
    print(f"checkpoint: {out / 'checkpoint.npz'}")

    if not args.no_plot:
        _plot(out / "sine.png", spec, theta, preset, eval_opt, backend, seed, dtype)

    if args.json is not None:
        from ..checkpoint import atomic_write

        summary = {
            "config": cfg,
            "compile_seconds": compile_seconds,
            "train_seconds": train_seconds,
            "seconds_per_iteration": train_seconds / rcfg.iters,
            "eval": {
                "steps": list(EVAL_STEPS),
                "meta_mse": meta.mean.tolist(), "meta_ci95": meta.ci95.tolist(),
                "random_mse": random.mean.tolist(), "random_ci95": random.ci95.tolist(),
            },
            "versions": versions(),
        }
        atomic_write(args.json, lambda f: f.write(json.dumps(summary, indent=2).encode()))
        print(f"json: {args.json}")
    return 0


def _plot(path, spec, theta, preset, opt, backend, seed, dtype) -> None:
    """The gist's figure: one test task, its shots, the fit after 0/8/16/24/32 steps."""
    try:
        import matplotlib
    except ImportError:
        print('plot skipped: matplotlib is not installed (pip install "minireptile[plot]")', file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task = sine_eval_tasks(stream_rng(seed, PLOT), 1, preset, dtype)
    x = task.x_grid[0]
    steps = (0, 8, 16, 24, 32)
    preds = adapted_predictions(spec, theta, task.x_shots[0], task.y_shots[0], x, opt, backend, steps)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x[:, 0], task.y_grid[0, :, 0], "k", label="true")
    ax.plot(task.x_shots[0, :, 0], task.y_shots[0, :, 0], "kx", label="shots")
    for s, p in zip(steps, preds):
        ax.plot(x[:, 0], p, label=f"after {s} steps", alpha=0.4 + 0.6 * s / 32)
    ax.set_ylim(-5.5, 5.5)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Reptile on sine waves: adaptation from the meta-learned init")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"plot: {path}")
