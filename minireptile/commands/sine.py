"""``minireptile sine``: meta-train on sine-wave regression, evaluate, report.

Pipeline: sample blocks of tasks on the host (:mod:`minireptile.tasks`) → the backend's
``train_chunk`` (inner loops + outer update) → evaluation on held-out tasks with 95% CIs for the
meta-learned θ and for the initial (not meta-trained) θ0 → a results table, a checkpoint, an
optional JSON summary and, with matplotlib, the gist's plot.

Reliability (docs/errors.md): a checkpoint ``OUT/checkpoint.npz`` exists from the first moment of
training (written atomically, every ``--checkpoint-every`` iterations and at the end);
``--stop-after K`` ends cleanly after K iterations; Ctrl-C / SIGTERM stop after the current chunk
with a checkpoint (exit 130 / 143); a divergence writes the last finite θ (exit 3);
``--resume CKPT`` continues bit for bit with the checkpoint's configuration.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np

from ..backends import BACKENDS
from ..backends.distributed import task_block_for
from ..errors import CheckpointError
from ..evaluation.regression import adapted_predictions
from ..mlp import MLPSpec, init_params
from ..optim import InnerOptimizer
from ..progress import format_number
from ..reptile import ReptileConfig
from ..tasks.sine import PRESETS, block_iters_for, get_preset, sine_block, sine_eval_tasks
from ..tasks.streams import DEFAULT_SEED, EVAL, INIT, PLOT, stream_rng
from . import runs
from .plots import sine_figure
from .cluster import add_cluster_flags, describe_backend, distributed_meta_batch, with_task_block
from .after_training import EvaluationGuard, evaluate_in_chunks
from .loss_history import LossHistory
from .outputs import check_file_flags, write_json
from .common import (Counter, FlagError, Progress, add_threads_flag, apply_threads, int_at_least, nonnegative_float,
                     nonnegative_int, positive_float, positive_int, prepare_backend, progress_mode, unit_interval,
                     versions)
from .runs import check_resumable, checked_config

DEFAULT_BACKEND = "numba"
DEFAULT_EVAL_TASKS = 1000
DEFAULT_OUT = Path("runs/sine")
DEFAULT_CHECKPOINT_EVERY = 1000

# Flags that define a run -> where the config keeps their value. With --resume each must be left
# out or equal the checkpoint's value (the run continues with the checkpoint's configuration).
RUN_FLAGS = {
    "preset": ("--preset", lambda c: c["preset"]),
    **runs.REPTILE_RUN_FLAGS,
    "inner_steps": ("--inner-steps", lambda c: c["reptile"]["inner_steps"]),
    "dtype": ("--dtype", lambda c: c["dtype"]),
    "seed": ("--seed", lambda c: c["seed"]),
    "task_block": ("--task-block", lambda c: c["reptile"]["task_block"]),
}
ADAM_ONLY = ("beta1", "beta2", "adam_state")


def add_parser(sub) -> None:
    p = sub.add_parser("sine", help="meta-train on sine-wave regression (default: the gist protocol)",
                       description="Meta-train an MLP with Reptile on sine-wave regression and evaluate it. "
                       "Defaults reproduce openai's Reptile sine demo (preset 'gist').")
    p.add_argument("--preset", choices=sorted(PRESETS), help="protocol (default: gist)")
    p.add_argument("--iters", type=positive_int, help="outer iterations (preset: 30000)")
    p.add_argument("--meta-batch", type=positive_int, help="tasks per outer iteration (preset: 1)")
    p.add_argument("--inner-steps", type=positive_int, help="inner steps per task (preset: 5)")
    p.add_argument("--inner-batch", type=positive_int, help="inner minibatch size (preset: 10)")
    p.add_argument("--inner-lr", type=positive_float, help="inner step size (preset: 0.02)")
    p.add_argument("--outer-lr", type=positive_float, help="initial outer step size ε0 (preset: 0.1)")
    p.add_argument("--outer-lr-final", type=nonnegative_float, help="final outer step size (preset: 0)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), help="inner optimizer (default: sgd)")
    p.add_argument("--beta1", type=unit_interval, help="Adam β1 (default 0, as the paper)")
    p.add_argument("--beta2", type=unit_interval, help="Adam β2 (default 0.999)")
    p.add_argument("--adam-state", choices=("reset", "carry"),
                   help="Adam moments per task (reset, default) or carried across tasks")
    p.add_argument("--dtype", choices=("float32", "float64"), help="default: float32")
    p.add_argument("--seed", type=nonnegative_int, help=f"run seed, an integer >= 0 (default {DEFAULT_SEED}, as every command)")
    p.add_argument("--backend", choices=BACKENDS,
                   help=f"inner-loop implementation (default: {DEFAULT_BACKEND}; with --resume: the checkpoint's; "
                   "another backend continues the run to rounding, not bit for bit)")
    add_threads_flag(p)
    p.add_argument("--task-block", type=positive_int, metavar="B",
                   help="reduce the meta-batch in blocks of B tasks (default: meta-batch/16 rounded up): part of "
                   "the run, so θ is bitwise the same in one process and on any number of workers")
    add_cluster_flags(p, "adapt each meta-batch's blocks of tasks")
    p.add_argument("--eval-tasks", type=int_at_least(2), help="held-out tasks, >= 2 (default 1000)")
    runs.add_run_flags(p, "runs/sine", DEFAULT_CHECKPOINT_EVERY)
    p.add_argument("--no-plot", action="store_true", help="skip the plot even if matplotlib is installed")
    p.add_argument("--quiet", action="store_true", help="no progress bar or lines")
    p.set_defaults(run=run)


def build_config(args) -> dict:
    """The run's full configuration as a JSON-serialisable dict (stored in checkpoints)."""
    pick = lambda value, default: default if value is None else value  # noqa: E731
    if pick(args.optimizer, "sgd") != "adam":
        for dest in ADAM_ONLY:
            if getattr(args, dest) is not None:
                raise FlagError(RUN_FLAGS[dest][0], "applies to --optimizer adam only (the run uses sgd)")
    preset = get_preset(pick(args.preset, "gist"))
    opt = InnerOptimizer(pick(args.optimizer, "sgd"), pick(args.inner_lr, preset.inner_lr), pick(args.beta1, 0.0),
                         pick(args.beta2, 0.999), 1e-8, pick(args.adam_state, "reset"))
    meta_batch = pick(args.meta_batch, preset.meta_batch)
    reptile = ReptileConfig(
        iters=pick(args.iters, preset.iters),
        meta_batch=meta_batch,
        eps0=pick(args.outer_lr, preset.eps0),
        eps_final=pick(args.outer_lr_final, preset.eps_final),
        inner=opt,
        inner_steps=pick(args.inner_steps, preset.inner_steps),
        inner_batch=pick(args.inner_batch, preset.inner_batch),
        task_block=pick(args.task_block, task_block_for(meta_batch)),
    )
    spec = MLPSpec((1, *preset.hidden, 1), preset.activation, "mse")
    runs.check_in_dtype(pick(args.dtype, "float32"), {"--inner-lr": opt.lr, "--outer-lr": reptile.eps0,
                                                       "--outer-lr-final": reptile.eps_final})
    return {
        "command": "sine",
        "preset": preset.name,
        "model": spec.to_dict(),
        "reptile": reptile.to_dict(),
        "dtype": pick(args.dtype, "float32"),
        "seed": pick(args.seed, DEFAULT_SEED),
        "backend": pick(args.backend, DEFAULT_BACKEND),
        "eval_tasks": pick(args.eval_tasks, DEFAULT_EVAL_TASKS),
        "eval_steps": list(preset.eval_schedule()),
        "block_iters": block_iters_for(reptile.meta_batch),
    }


def _reptile_config(cfg: dict) -> ReptileConfig:
    r = dict(cfg["reptile"])
    r["inner"] = InnerOptimizer(**r["inner"])
    return ReptileConfig(**r)


def config_argv(cfg: dict) -> list:
    """The flags that start the run ``cfg`` (the inverse of :func:`build_config`)."""
    argv = []
    for dest, (flag, saved) in RUN_FLAGS.items():
        if dest in ADAM_ONLY and cfg["reptile"]["inner"]["name"] != "adam":
            continue
        argv += [flag, saved(cfg)]
    return argv + ["--backend", cfg["backend"], "--eval-tasks", cfg["eval_tasks"]]


def resumed_config(args, ck: dict) -> dict:
    """The configuration of the run saved in checkpoint ``ck`` (from :func:`load_checkpoint`).

    Raises CheckpointError if the checkpoint is not a usable ``minireptile sine`` run (its config
    is checked by the same rules as the flags), and FlagError for a run-defining flag whose value
    differs from the checkpoint's.
    """
    cfg, where = with_task_block(ck["config"]), repr(str(args.resume))
    if cfg.get("command") != "sine":
        raise CheckpointError(f"checkpoint: {where} was written by `minireptile {cfg.get('command')}`, not `sine`")
    checked_config("sine", add_parser, build_config, cfg, config_argv, where)
    rcfg = _reptile_config(cfg)
    carry = rcfg.inner.name == "adam" and rcfg.inner.state_policy == "carry"
    check_resumable(ck, cfg, MLPSpec.from_dict(cfg["model"]).n_params, rcfg.iters, rcfg.inner_steps if carry else None,
                    where)
    if ck["status"] == "diverged":
        raise FlagError("--resume", f"the run in {where} diverged at iteration {ck['iteration']}; resuming it would "
                        "diverge again: start a new run with a smaller --inner-lr or --outer-lr")
    for dest, (flag, saved) in RUN_FLAGS.items():
        value = getattr(args, dest)
        if value is not None and value != saved(cfg):
            raise FlagError(flag, f"cannot change a resumed run (the checkpoint has {saved(cfg)!r}, got {value!r}); "
                            "leave it out, or start a new run without --resume")
    for dest, key in (("backend", "backend"), ("eval_tasks", "eval_tasks")):  # these do not change training
        if getattr(args, dest) is not None:
            cfg = {**cfg, key: getattr(args, dest)}
    return cfg


def memory_terms(cfg: dict) -> dict:
    """Bytes of the run's largest arrays, by the flag that sizes them (for :func:`runs.check_memory`)."""
    r, preset = cfg["reptile"], get_preset(cfg["preset"])
    item = np.dtype(cfg["dtype"]).itemsize
    P = MLPSpec.from_dict(cfg["model"]).n_params
    width = max(MLPSpec.from_dict(cfg["model"]).sizes)
    tasks = cfg["block_iters"] * r["meta_batch"]
    n_points = preset.n_train_points()
    plans = "--inner-steps" if r["inner_steps"] >= r["inner_batch"] else "--inner-batch"
    return {
        "--meta-batch": tasks * 2 * n_points * item + r["meta_batch"] * (4 * P + r["inner_batch"] * width * 4) * 8,
        plans: tasks * r["inner_steps"] * r["inner_batch"] * 8,
        "--eval-tasks": cfg["eval_tasks"] * (2 * preset.n_grid + 4 * preset.eval_shots + 4 * P) * 8,
    }


def results_table(steps, meta, random) -> str:
    """Plain-text table: steps × (meta-learned, random init) mean ± 95% CI."""
    lines = [f"{'steps':>5}  {'meta-learned MSE':>20}  {'random-init MSE':>20}"]
    for s, mm, mc, rm, rc in zip(steps, meta.mean, meta.ci95, random.mean, random.ci95):
        lines.append(f"{s:>5d}  {format_number(mm):>10} ± {format_number(mc, width=7):<7}  "
                     f"{format_number(rm):>10} ± {format_number(rc, width=7):<7}".rstrip())
    return "\n".join(lines)


def run(args) -> int:
    ck = runs.load_resume(args.resume) if args.resume is not None else None
    try:
        cfg = resumed_config(args, ck) if ck is not None else build_config(args)
    except CheckpointError as exc:
        raise FlagError("--resume", str(exc)) from None
    rcfg = _reptile_config(cfg)
    spec = MLPSpec.from_dict(cfg["model"])
    preset = get_preset(cfg["preset"])
    dtype = np.dtype(cfg["dtype"])
    seed = cfg["seed"]
    apply_threads(args)
    start, stop = runs.iteration_range(args, ck, rcfg.iters)
    runs.check_memory(memory_terms(cfg), args=args)
    out, ckpt_path = runs.resolve_paths(args, DEFAULT_OUT)
    check_file_flags(args, out)   # OUT, --json (and --save) before the folder is claimed
    with runs.claim_folder(out), contextlib.ExitStack() as cluster:  # the stack closes a Dask cluster
        plot = out / "sine.png" if not args.no_plot else None
        runs.check_run_outputs(args, ckpt_path, "sine", plot)
        backend = distributed_meta_batch(args, cfg["backend"], rcfg.meta_batch, cluster) or cfg["backend"]
        return _train_and_evaluate(args, ck, cfg, rcfg, spec, preset, dtype, seed, backend, start, stop, out,
                                   ckpt_path, plot)


def _train_and_evaluate(args, ck, cfg, rcfg, spec, preset, dtype, seed, backend, start, stop, out, ckpt_path,
                        plot) -> int:
    theta0 = init_params(spec, stream_rng(seed, INIT), dtype)
    theta, state = (ck["theta"], ck["state"]) if ck is not None else (theta0, None)
    backend, compile_seconds = prepare_backend("minireptile sine", backend, spec, dtype, rcfg.inner, args.quiet)
    where = describe_backend(backend, rcfg)

    block_iters = cfg["block_iters"]

    def sample_block(b):
        return sine_block(seed, b, block_iters, rcfg.meta_batch, preset, rcfg.inner_steps, rcfg.inner_batch, dtype)

    if not args.quiet:
        resumed = f"; resuming {args.resume} at iteration {start}" if ck is not None else ""
        print(f"minireptile sine: preset {preset.name}, {rcfg.iters} iterations, meta-batch {rcfg.meta_batch}, "
              f"{rcfg.inner.name} x{rcfg.inner_steps} (batch {rcfg.inner_batch}, lr {rcfg.inner.lr}), "
              f"backend {where}, {dtype.name}, seed {seed}; compile {compile_seconds:.2f}s{resumed}", flush=True)
    progress = Progress(stop, start, rcfg, args.quiet)
    history = LossHistory.for_run(ck, rcfg.iters)   # the whole run's training loss, also across resumes
    status, it, theta, state, train_seconds = runs.train_with_checkpoints(
        prog="minireptile sine", command="sine", ckpt_path=ckpt_path, cfg=cfg, spec=spec, theta=theta, state=state,
        start=start, stop=stop, sample_block=sample_block, block_iters=block_iters, rcfg=rcfg, backend=backend,
        every=args.checkpoint_every, progress=progress, history=history)
    if status is not None:
        return status
    with EvaluationGuard("minireptile sine", "sine", ckpt_path, it) as guard:   # a signal now: say what is saved
        _evaluate_and_report(args, cfg, rcfg, spec, preset, dtype, seed, backend, theta, theta0, start, ckpt_path,
                             plot, compile_seconds, train_seconds, history)
    return guard.status or 0


def _evaluate_and_report(args, cfg, rcfg, spec, preset, dtype, seed, backend, theta, theta0, start, ckpt_path, plot,
                         compile_seconds, train_seconds, history) -> None:
    eval_opt = InnerOptimizer(rcfg.inner.name, rcfg.inner.lr, rcfg.inner.beta1, rcfg.inner.beta2, rcfg.inner.eps)
    tasks = sine_eval_tasks(stream_rng(seed, EVAL), cfg["eval_tasks"], preset, dtype)
    eval_steps = tuple(cfg["eval_steps"])
    counter = Counter(2 * cfg["eval_tasks"], "evaluate (meta-learned, then random init)", progress_mode(args),
                      unit="task")
    data = (tasks.x_shots, tasks.y_shots, tasks.x_grid, tasks.y_grid)
    try:
        meta = evaluate_in_chunks(spec, theta, *data, eval_opt, backend, eval_steps, counter)
        random = evaluate_in_chunks(spec, theta0, *data, eval_opt, backend, eval_steps, counter)
    finally:
        counter.close()

    if not args.quiet:
        print()   # a blank line after the progress lines (none with --quiet)
    print(f"MSE on the {preset.n_grid}-point grid after k full-batch steps on {preset.eval_shots} points, "
          f"mean ± 95% CI over {cfg['eval_tasks']} held-out tasks (train {train_seconds:.1f}s):")
    print(results_table(eval_steps, meta, random))
    print(f"checkpoint: {ckpt_path}")

    curve = history.curve()
    if plot is not None:
        _plot(plot, spec, theta, theta0, preset, eval_opt, backend, seed, dtype, eval_steps, meta, random, curve)

    if args.json is not None:
        summary = {
            "config": cfg,
            "start_iteration": start,
            "compile_seconds": compile_seconds,
            "train_seconds": train_seconds,
            "seconds_per_iteration": train_seconds / max(rcfg.iters - start, 1),
            "eval": {
                "steps": list(eval_steps),
                "meta_mse": meta.mean.tolist(), "meta_ci95": meta.ci95.tolist(),
                "random_mse": random.mean.tolist(), "random_ci95": random.ci95.tolist(),
            },
            # mean per-iteration inner training loss over windows of `every` iterations, ending at `iteration`
            "train_loss": {"every": curve[2], "iteration": curve[0].tolist(), "loss": curve[1].tolist()},
            "versions": versions(),
        }
        write_json(args, summary)


def _plot(path, spec, theta, theta0, preset, opt, backend, seed, dtype, steps, meta, random, curve) -> None:
    """The sine figure (:func:`minireptile.commands.plots.sine_figure`) for one task from the PLOT stream."""
    task = sine_eval_tasks(stream_rng(seed, PLOT), 1, preset, dtype)
    x = task.x_grid[0]
    preds = [adapted_predictions(spec, th, task.x_shots[0], task.y_shots[0], x, opt, backend, steps)
             for th in (theta, theta0)]
    sine_figure(path, x=x[:, 0], y_true=task.y_grid[0, :, 0], x_shots=task.x_shots[0, :, 0],
                y_shots=task.y_shots[0, :, 0], steps=steps, meta_preds=preds[0], random_preds=preds[1], meta=meta,
                random=random, curve=curve,
                title=f"Reptile on sine waves (preset {preset.name}): a held-out task "
                f"{task.amp[0]:.2f}·sin(x + {task.phase[0]:.2f})")
