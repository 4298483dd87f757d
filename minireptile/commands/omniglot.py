"""``minireptile omniglot``: meta-train a softmax MLP on N-way K-shot Omniglot episodes, evaluate.

Pipeline: the data (:mod:`minireptile.tasks.omniglot`: zips or folders → cached 28x28 arrays, disjoint
meta-train / meta-test characters, meta-train augmented by 90° rotations) → blocks of meta-training
episodes sampled on the host (:mod:`minireptile.tasks.episodes`) → the backend's ``train_chunk`` (inner
loops + the Reptile update) → evaluation on ``--eval-episodes`` held-out episodes fixed by the seed
(:mod:`minireptile.evaluation.fewshot`): query accuracy and loss after 0, 1, 2, 3, 5, 10, … inner steps
(``--every-step``: each step) for the meta-learned θ and for a freshly initialised network per episode
trained the same way, and pixel 1-nearest-neighbour accuracy → a results table, a checkpoint, an
optional JSON summary.

Seeds: θ0 from ``stream_rng(seed, INIT)``; training block b from ``stream_rng(seed, TRAIN, b)``;
evaluation episodes and their minibatch plan from ``stream_rng(seed, EVAL, 0)`` and
``stream_rng(seed, EVAL, 1)``, the baseline's network for episode e from ``stream_rng(seed, EVAL, 2, e)``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..backends import BACKENDS
from ..backends.distributed import task_block_for
from ..errors import CheckpointError, DivergenceError
from ..evaluation.fewshot import evaluate_episodes, nearest_neighbour_episodes, score_schedule
from ..evaluation.regression import mean_ci95
from ..mlp import MLPSpec, init_params
from ..optim import InnerOptimizer
from ..progress import format_number
from ..reptile import ReptileConfig
from ..tasks.episodes import (EpisodeConfig, block_iters_for, full_batch_plan, minibatch_plan, sample_episodes,
                              train_block)
from ..tasks.omniglot import find_sources, omniglot_split, with_rotations
from ..tasks.streams import DEFAULT_SEED, EVAL, INIT, stream_rng
from . import runs
from .cluster import add_cluster_flags, describe_backend, distributed_meta_batch, with_task_block
from .common import (EXIT_DIVERGED, Counter, FlagError, Progress, add_threads_flag, apply_threads, int_at_least,
                     nonnegative_float, nonnegative_int, positive_float, positive_int, prepare_backend, progress_mode,
                     unit_interval, versions)
from .after_training import EvaluationGuard
from .outputs import check_file_flags, write_json
from .plots import omniglot_figure

# the compiled CPU backend when it is part of this installation, as `minireptile sine`
DEFAULT_BACKEND = "numba" if importlib.util.find_spec("minireptile.backends.numba_cpu") is not None else "numpy"
EVAL_EPISODES, EVAL_PLAN, EVAL_INIT = 0, 1, 2   # sub-keys of the EVAL stream
DEFAULT_OUT = Path("runs/omniglot")
DEFAULT_CHECKPOINT_EVERY = 500

# Flags that define a run -> where the config keeps their value. With --resume each must be left out or
# equal the checkpoint's value, except the evaluation flags, which do not change training.
RUN_FLAGS = {
    "ways": ("--ways", lambda c: c["ways"]),
    "shots": ("--shots", lambda c: c["shots"]),
    "train_shots": ("--train-shots", lambda c: c["train_shots"]),
    "queries": ("--queries", lambda c: c["queries"]),
    **runs.REPTILE_RUN_FLAGS,
    "inner_iters": ("--inner-iters", lambda c: c["reptile"]["inner_steps"]),
    "replacement": ("--replacement", lambda c: c["replacement"]),
    "hidden": ("--hidden", lambda c: tuple(c["model"]["sizes"][1:-1])),
    "activation": ("--activation", lambda c: c["model"]["activation"]),
    "size": ("--size", lambda c: c["size"]),
    "no_augment": ("--no-augment", lambda c: not c["augment"] if isinstance(c["augment"], bool) else c["augment"]),
    "eval_episodes": ("--eval-episodes", lambda c: c["eval_episodes"]),
    "eval_inner_iters": ("--eval-inner-iters", lambda c: c["eval_inner_iters"]),
    "eval_inner_batch": ("--eval-inner-batch", lambda c: c["eval_inner_batch"]),
    "every_step": ("--every-step", lambda c: c["every_step"]),
    "dtype": ("--dtype", lambda c: c["dtype"]),
    "seed": ("--seed", lambda c: c["seed"]),
    "task_block": ("--task-block", lambda c: c["reptile"]["task_block"]),
}
ADAM_ONLY = ("beta1", "beta2", "adam_state")
SWITCHES = ("replacement", "no_augment", "every_step")
EVAL_FLAGS = ("eval_episodes", "eval_inner_iters", "eval_inner_batch", "every_step")
DEFAULTS: dict = {}   # filled by add_parser: the parser's default of each run-defining flag


def hidden_sizes(text: str) -> tuple[int, ...]:
    """``"256,128,64,64"`` → (256, 128, 64, 64); ``""`` → () (a linear softmax classifier)."""
    if text.strip() == "":
        return ()
    try:
        sizes = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return sizes


def add_parser(sub) -> None:
    p = sub.add_parser(
        "omniglot", help="few-shot classification on Omniglot (N-way K-shot episodes)",
        description="Meta-train a softmax MLP with Reptile on N-way K-shot Omniglot episodes and evaluate it against "
        "a random-init network trained the same way and pixel nearest neighbour. --data takes a folder of official "
        "zips (images_background*.zip, images_evaluation.zip), one zip, or an unpacked alphabet/character/*.png "
        "folder. With images_background_small1.zip and images_background_small2.zip: meta-train on small1, meta-test "
        "on small2's alphabets not in small1. Decoding PNGs needs Pillow: pip install \"minireptile[images]\".")
    p.add_argument("--data", type=Path,
                   help="Omniglot zips folder, a zip, or an unpacked split (required; with --resume: the run's)")
    p.add_argument("--ways", type=int_at_least(2), default=5, help="classes per episode N, >= 2 (default 5)")
    p.add_argument("--shots", type=positive_int, default=1, help="support examples per class K at test (default 1)")
    p.add_argument("--train-shots", type=positive_int, default=10,
                   help="support examples per class in meta-training episodes (default 10)")
    p.add_argument("--queries", type=positive_int, default=5, help="query examples per class at test (default 5)")
    p.add_argument("--iters", type=positive_int, default=3000, help="outer iterations (default 3000)")
    p.add_argument("--meta-batch", type=positive_int, default=5, help="episodes per outer iteration (default 5)")
    p.add_argument("--inner-iters", type=positive_int, default=5, help="inner steps per training episode (default 5)")
    p.add_argument("--inner-batch", type=positive_int, default=10, help="inner minibatch size (default 10)")
    p.add_argument("--replacement", action="store_true",
                   help="draw each inner minibatch independently (default: shuffled epochs, no replacement)")
    p.add_argument("--inner-lr", type=positive_float, default=3e-3, help="inner step size (default 0.003)")
    p.add_argument("--outer-lr", type=positive_float, default=1.0, help="initial outer step size ε0 (default 1.0)")
    p.add_argument("--outer-lr-final", type=nonnegative_float, default=0.0, help="final outer step size (default 0)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="adam", help="inner optimizer (default: adam)")
    p.add_argument("--beta1", type=unit_interval, default=0.0, help="Adam β1 (default 0, as the paper)")
    p.add_argument("--beta2", type=unit_interval, default=0.999, help="Adam β2 (default 0.999)")
    p.add_argument("--adam-state", choices=("reset", "carry"), default="carry",
                   help="Adam moments carried across training tasks (carry, default, as openai/supervised-reptile) "
                   "or restarted for every task (reset)")
    p.add_argument("--hidden", type=hidden_sizes, default=(256, 128, 64, 64),
                   help="hidden layer widths, comma-separated (default 256,128,64,64: MAML's MLP)")
    p.add_argument("--activation", choices=("relu", "tanh"), default="relu", help="default: relu")
    p.add_argument("--size", type=positive_int, default=28, help="image side after resizing (default 28)")
    p.add_argument("--no-augment", action="store_true",
                   help="do not add 90/180/270° rotations of meta-train characters as new classes")
    p.add_argument("--eval-episodes", type=int_at_least(2), default=1000, help="meta-test episodes (default 1000)")
    p.add_argument("--eval-inner-iters", type=nonnegative_int, default=50,
                   help="inner steps on each test episode (default 50)")
    p.add_argument("--eval-inner-batch", type=positive_int,
                   help="inner minibatch size at test (default: the whole support set)")
    p.add_argument("--every-step", action="store_true",
                   help="score the query set after every inner step (one backend call per step, slower) "
                   "instead of after 0, 1, 2, 3, 5, 10, 15, 20, 30, 40, 50 steps")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="default: float32")
    p.add_argument("--seed", type=nonnegative_int, default=DEFAULT_SEED,
                   help=f"run seed, an integer >= 0 (default {DEFAULT_SEED}, as every command)")
    p.add_argument("--backend", choices=BACKENDS,
                   help=f"inner-loop implementation (default: {DEFAULT_BACKEND}; with --resume: the checkpoint's)")
    add_threads_flag(p)
    p.add_argument("--task-block", type=positive_int, metavar="B",
                   help="reduce the meta-batch in blocks of B episodes (default: meta-batch/16 rounded up): part "
                   "of the run, so θ is bitwise the same in one process and on any number of workers")
    add_cluster_flags(p, "adapt each meta-batch's blocks of episodes")
    p.add_argument("--cache-dir", type=Path,
                   help="cache folder used when the data folder is read-only (default ~/.cache/minireptile)")
    p.add_argument("--no-cache", action="store_true", help="decode the PNGs every time; write no cache")
    runs.add_run_flags(p, "runs/omniglot", DEFAULT_CHECKPOINT_EVERY)
    p.add_argument("--no-plot", action="store_true",
                   help="skip OUT/omniglot.png (query accuracy vs inner steps) even if matplotlib is installed")
    p.add_argument("--quiet", action="store_true", help="no progress bars or lines")
    # run-defining flags default to None, so that a value given with --resume can be told from a default
    DEFAULTS.update({dest: p.get_default(dest) for dest in RUN_FLAGS})
    p.set_defaults(run=run, **{dest: None for dest in RUN_FLAGS})


def build_config(args) -> dict:
    """The run's full configuration as a JSON-serialisable dict (stored in checkpoints).

    Raises FlagError for a combination no run can use (Adam-only flags with ``--optimizer sgd``).
    """
    given = {dest: getattr(args, dest) for dest in RUN_FLAGS}
    if (given["optimizer"] or DEFAULTS["optimizer"]) != "adam":
        for dest in ADAM_ONLY:
            if given[dest] is not None:
                raise FlagError(RUN_FLAGS[dest][0], "applies to --optimizer adam only (the run uses sgd)")
    a = argparse.Namespace(**{dest: DEFAULTS[dest] if v is None else v for dest, v in given.items()})
    if args.data is None:
        raise FlagError("--data", "required (the Omniglot zips folder, a zip, or an unpacked split)")
    d_in = a.size * a.size
    spec = MLPSpec((d_in, *a.hidden, a.ways), a.activation, "ce")
    opt = InnerOptimizer(a.optimizer, a.inner_lr, a.beta1, a.beta2, 1e-8, a.adam_state)
    reptile = ReptileConfig(iters=a.iters, meta_batch=a.meta_batch, eps0=a.outer_lr,
                            eps_final=a.outer_lr_final, inner=opt, inner_steps=a.inner_iters,
                            inner_batch=a.inner_batch,
                            task_block=a.task_block if a.task_block is not None else task_block_for(a.meta_batch))
    runs.check_in_dtype(a.dtype, {"--inner-lr": a.inner_lr, "--outer-lr": a.outer_lr,
                                  "--outer-lr-final": a.outer_lr_final})
    n_points = a.ways * a.train_shots
    return {
        "command": "omniglot",
        "data": os.path.abspath(args.data),
        "size": a.size,
        "augment": not a.no_augment,
        "ways": a.ways,
        "shots": a.shots,
        "train_shots": a.train_shots,
        "queries": a.queries,
        "replacement": a.replacement,
        "model": spec.to_dict(),
        "reptile": reptile.to_dict(),
        "dtype": a.dtype,
        "seed": a.seed,
        "backend": args.backend or DEFAULT_BACKEND,
        "eval_episodes": a.eval_episodes,
        "eval_inner_iters": a.eval_inner_iters,
        "eval_inner_batch": a.eval_inner_batch or a.ways * a.shots,
        "every_step": a.every_step,
        "eval_score_steps": list(score_schedule(a.eval_inner_iters, a.every_step)),
        "block_iters": block_iters_for(a.meta_batch, n_points, d_in),
    }


def config_argv(cfg: dict) -> list:
    """The flags that start the run ``cfg`` (the inverse of :func:`build_config`)."""
    argv = ["--data", cfg["data"], "--backend", cfg["backend"]]
    for dest, (flag, saved) in RUN_FLAGS.items():
        if dest in ADAM_ONLY and cfg["reptile"]["inner"]["name"] != "adam":
            continue
        value = saved(cfg)
        if dest in SWITCHES:
            if not isinstance(value, bool):
                raise ValueError(f"{flag} is {value!r}, not true or false")
            argv += [flag] if value else []
        elif dest == "hidden":
            argv += [flag, ",".join(runs.flag_text(v) for v in value)]
        else:
            argv += [flag, value]
    return argv


def resumed_config(args, ck: dict) -> dict:
    """The configuration of the run saved in checkpoint ``ck``, checked by the rules of the flags.

    Raises CheckpointError (not a usable ``minireptile omniglot`` run) or FlagError (a run-defining
    flag given with another value than the checkpoint's).
    """
    cfg, where = with_task_block(ck["config"]), repr(str(args.resume))
    if cfg.get("command") != "omniglot":
        raise CheckpointError(f"checkpoint: {where} was written by `minireptile {cfg.get('command')}`, not `omniglot`")
    runs.checked_config("omniglot", add_parser, build_config, cfg, config_argv, where)
    rcfg = _reptile_config(cfg)
    carry = rcfg.inner.name == "adam" and rcfg.inner.state_policy == "carry"
    runs.check_resumable(ck, cfg, MLPSpec.from_dict(cfg["model"]).n_params, rcfg.iters,
                         rcfg.inner_steps if carry else None, where)
    if ck["status"] == "diverged":
        raise FlagError("--resume", f"the run in {where} diverged at iteration {ck['iteration']}; resuming it would "
                        "diverge again: start a new run with a smaller --inner-lr or --outer-lr")
    for dest, (flag, saved) in RUN_FLAGS.items():
        value = getattr(args, dest)
        if dest in EVAL_FLAGS or value is None:
            continue
        if dest in SWITCHES:
            value = bool(value)
        if value != saved(cfg):
            raise FlagError(flag, f"cannot change a resumed run (the checkpoint has {saved(cfg)!r}, got {value!r}); "
                            "leave it out, or start a new run without --resume")
    cfg = dict(cfg)
    if args.data is not None:
        cfg["data"] = os.path.abspath(args.data)
    if args.backend is not None:
        cfg["backend"] = args.backend
    if any(getattr(args, dest) is not None for dest in EVAL_FLAGS):   # evaluation settings are free
        sgd = cfg["reptile"]["inner"]["name"] != "adam"
        ns = argparse.Namespace(**{dest: (getattr(args, dest) if getattr(args, dest) is not None else saved(cfg))
                                   for dest, (_, saved) in RUN_FLAGS.items() if not (sgd and dest in ADAM_ONLY)},
                                **{dest: None for dest in ADAM_ONLY if sgd}, data=cfg["data"], backend=cfg["backend"])
        fresh = build_config(ns)
        for key in ("eval_episodes", "eval_inner_iters", "eval_inner_batch", "every_step", "eval_score_steps"):
            cfg[key] = fresh[key]
    return cfg


def memory_terms(cfg: dict) -> dict:
    """Bytes of the run's largest arrays, by the flag that sizes them (for :func:`runs.check_memory`)."""
    r, spec = cfg["reptile"], MLPSpec.from_dict(cfg["model"])
    item, d_in, P = np.dtype(cfg["dtype"]).itemsize, spec.sizes[0], spec.n_params
    ways, mb, bi = cfg["ways"], r["meta_batch"], cfg["block_iters"]
    episode = ways * (cfg["shots"] + cfg["queries"])
    chunk = min(cfg["eval_episodes"], 100)
    return {
        "--meta-batch": bi * mb * ways * cfg["train_shots"] * (d_in * item + 8) + mb * (6 * P + 4 * max(spec.sizes)
                                                                                       * r["inner_batch"]) * item,
        ("--inner-iters" if r["inner_steps"] >= r["inner_batch"] else "--inner-batch"):
            bi * mb * r["inner_steps"] * r["inner_batch"] * 8,
        "--eval-episodes": cfg["eval_episodes"] * (episode * 8 * 2 + cfg["eval_inner_iters"] * cfg["eval_inner_batch"]
                                                   * 8 + 2 * len(cfg["eval_score_steps"]) * 8 + 8),
        "--queries": chunk * episode * (d_in + 4 * max(spec.sizes)) * item * 2 + 3 * chunk * P * item,
        "--hidden": 12 * P * item,
    }


def _reptile_config(cfg: dict) -> ReptileConfig:
    r = dict(cfg["reptile"])
    r["inner"] = InnerOptimizer(**r["inner"])
    return ReptileConfig(**r)


def _fail(message: str) -> int:
    print(f"minireptile omniglot: error: {message}", file=sys.stderr)
    return 2


def _pct(mean: float, ci: float) -> str:
    return f"{100 * mean:5.1f}% ± {100 * ci:4.1f}"


def results_table(meta, random, nn) -> str:
    """Plain-text table: inner steps × (meta-learned, random init) query accuracy and loss ± 95% CI."""
    acc_m, acc_mc = meta.curve("accuracy")
    loss_m, loss_mc = meta.curve("loss")
    acc_r, acc_rc = random.curve("accuracy")
    loss_r, loss_rc = random.curve("loss")
    lines = [f"{'steps':>5}  {'meta-learned acc':>16}  {'loss':>13}  {'random-init acc':>16}  {'loss':>13}"]
    for j, s in enumerate(meta.steps):
        lines.append(f"{s:>5d}  {_pct(acc_m[j], acc_mc[j]):>16}  {format_number(loss_m[j], 3, 6):>6} ± "
                     f"{format_number(loss_mc[j], 3, 5):<5}  {_pct(acc_r[j], acc_rc[j]):>16}  "
                     f"{format_number(loss_r[j], 3, 6):>6} ± {format_number(loss_rc[j], 3, 5):<5}".rstrip())
    lines.append(f"pixel nearest neighbour: {_pct(*nn)}")
    return "\n".join(lines)


def _summary(result) -> dict:
    acc, acc_ci = result.curve("accuracy")
    loss, loss_ci = result.curve("loss")
    return {"accuracy": float(acc[-1]), "ci95": float(acc_ci[-1]),
            "accuracy_per_step": acc.tolist(), "accuracy_ci95_per_step": acc_ci.tolist(),
            "loss_per_step": loss.tolist(), "loss_ci95_per_step": loss_ci.tolist()}


def run(args) -> int:
    ck = runs.load_resume(args.resume) if args.resume is not None else None
    try:
        cfg = resumed_config(args, ck) if ck is not None else build_config(args)
    except CheckpointError as exc:
        raise FlagError("--resume", str(exc)) from None
    rcfg = _reptile_config(cfg)
    start, stop = runs.iteration_range(args, ck, rcfg.iters)
    runs.check_memory(memory_terms(cfg), args=args)
    try:  # the inputs before the outputs: a missing --data is named before any checkpoint in the way
        find_sources(Path(cfg["data"]))
    except (FileNotFoundError, ValueError) as exc:
        message = str(exc).removeprefix("data: ")
        if args.data is None:   # the resumed checkpoint's data
            raise FlagError("--resume", f"the run's data: {message}") from None
        raise FlagError("--data", message) from None
    out, ckpt_path = runs.resolve_paths(args, DEFAULT_OUT)
    check_file_flags(args, out)   # OUT, --json (and --save) before the folder is claimed
    with runs.claim_folder(out), contextlib.ExitStack() as cluster:  # the stack closes a Dask cluster
        plot = out / "omniglot.png" if not args.no_plot else None
        runs.check_run_outputs(args, ckpt_path, "omniglot", plot)
        backend = distributed_meta_batch(args, cfg["backend"], rcfg.meta_batch, cluster) or cfg["backend"]
        with EvaluationGuard("minireptile omniglot", "omniglot") as guard:   # armed once training is complete
            return _train_and_evaluate(args, ck, cfg, rcfg, start, stop, ckpt_path, backend, guard)
    return guard.status


def _train_and_evaluate(args, ck, cfg, rcfg, start, stop, ckpt_path, backend, guard) -> int:
    spec = MLPSpec.from_dict(cfg["model"])
    dtype = np.dtype(cfg["dtype"])
    seed, ways = cfg["seed"], cfg["ways"]
    apply_threads(args)

    t = time.perf_counter()
    if not args.quiet:  # decoding the PNGs takes seconds on a first run: say so before it starts
        print(f"minireptile omniglot: loading {cfg['data']} ({cfg['size']}x{cfg['size']} images; a first load "
              "decodes the PNGs, later ones read a cache) ...", flush=True)
    try:
        split = omniglot_split(Path(cfg["data"]), cfg["size"], args.cache_dir, not args.no_cache)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        return _fail(str(exc))
    load_seconds = time.perf_counter() - t
    train_set = with_rotations(split.train) if cfg["augment"] else split.train
    x_train, x_test = train_set.vectors(dtype), split.test.vectors(dtype)
    episode_cfg = EpisodeConfig(ways, cfg["train_shots"], rcfg.inner_steps, rcfg.inner_batch, cfg["replacement"])
    block_iters = cfg["block_iters"]

    def sample_block(b):
        return train_block(seed, b, block_iters, rcfg.meta_batch, x_train, train_set.labels, episode_cfg)

    n_support = ways * cfg["shots"]
    S, eval_batch = cfg["eval_inner_iters"], cfg["eval_inner_batch"]
    try:  # every size check before spending time on training
        sample_block(0)
        test_episodes = sample_episodes(stream_rng(seed, EVAL, EVAL_EPISODES), split.test.labels,
                                        cfg["eval_episodes"], ways, cfg["shots"], cfg["queries"])
        if eval_batch == n_support:
            eval_plan = full_batch_plan(test_episodes.n, n_support, S)
        else:
            eval_plan = minibatch_plan(stream_rng(seed, EVAL, EVAL_PLAN), test_episodes.n, n_support, S, eval_batch,
                                       cfg["replacement"])
    except ValueError as exc:
        return _fail(str(exc))

    theta0 = init_params(spec, stream_rng(seed, INIT), dtype)
    theta, state = (ck["theta"], ck["state"]) if ck is not None else (theta0, None)
    backend, compile_seconds = prepare_backend("minireptile omniglot", backend, spec, dtype, rcfg.inner, args.quiet)
    if not args.quiet:
        cached = "cache hit" if split.train.cache_hit and split.test.cache_hit else "decoded"
        resumed = f"; resuming {args.resume} at iteration {start}" if ck is not None else ""
        print(f"minireptile omniglot: {split.protocol}", flush=True)
        print(f"  meta-train {train_set.n_classes} classes ({split.train.n_classes} characters"
              f"{' x 4 rotations' if cfg['augment'] else ''}), meta-test {split.test.n_classes} characters; "
              f"{cfg['size']}x{cfg['size']} images, loaded in {load_seconds:.1f}s ({cached})", flush=True)
        print(f"  {ways}-way {cfg['shots']}-shot (train {cfg['train_shots']}-shot), MLP {'-'.join(map(str, spec.sizes))} "
              f"{spec.activation}, {rcfg.iters} iterations x meta-batch {rcfg.meta_batch}, {rcfg.inner.name} "
              f"x{rcfg.inner_steps} (batch {rcfg.inner_batch}, lr {rcfg.inner.lr}), ε {rcfg.eps0}→{rcfg.eps_final}, "
              f"backend {describe_backend(backend, rcfg)}, {dtype.name}, seed {seed}; compile {compile_seconds:.2f}s"
              f"{resumed}", flush=True)
    progress = Progress(stop, start, rcfg, args.quiet)
    status, it, theta, state, train_seconds = runs.train_with_checkpoints(
        prog="minireptile omniglot", command="omniglot", ckpt_path=ckpt_path, cfg=cfg, spec=spec, theta=theta,
        state=state, start=start, stop=stop, sample_block=sample_block, block_iters=block_iters, rcfg=rcfg,
        backend=backend, every=args.checkpoint_every, progress=progress)
    if status is not None:
        return status
    guard.arm(ckpt_path, it)   # a signal from here on: say the checkpoint is complete

    eval_opt = InnerOptimizer(rcfg.inner.name, rcfg.inner.lr, rcfg.inner.beta1, rcfg.inner.beta2, rcfg.inner.eps)

    def random_inits(i, j):  # a fresh network for every episode, independent of chunking
        return np.stack([init_params(spec, stream_rng(seed, EVAL, EVAL_INIT, e), dtype) for e in range(i, j)])

    t = time.perf_counter()
    steps = cfg["eval_score_steps"]
    counter = Counter(2 * test_episodes.n, "evaluate (meta-learned, then random init)", progress_mode(args))
    try:
        meta = evaluate_episodes(spec, theta, x_test, test_episodes, eval_plan, eval_opt, backend, steps,
                                 callback=counter.update)
        random = evaluate_episodes(spec, random_inits, x_test, test_episodes, eval_plan, eval_opt, backend, steps,
                                   callback=counter.update)
    except DivergenceError as exc:
        counter.close()
        print(f"minireptile omniglot: error: {exc} (now --inner-lr {rcfg.inner.lr:g}); the trained θ is in "
              f"{ckpt_path}", file=sys.stderr)
        return EXIT_DIVERGED
    counter.close()
    nn_acc = nearest_neighbour_episodes(x_test, test_episodes)
    nn = tuple(float(v) for v in mean_ci95(nn_acc))
    eval_seconds = time.perf_counter() - t

    if not args.quiet:
        print()   # a blank line after the progress lines (none with --quiet)
    print(f"{ways}-way {cfg['shots']}-shot query accuracy and loss after k inner steps ({eval_opt.name}, batch "
          f"{eval_batch}), mean ± 95% CI over {test_episodes.n} meta-test episodes of {cfg['queries']} queries per class "
          f"(train {train_seconds:.1f}s, eval {eval_seconds:.1f}s):")
    print(results_table(meta, random, nn))
    print(f"checkpoint: {ckpt_path}")
    if not args.no_plot:
        omniglot_figure(ckpt_path.parent / "omniglot.png", steps=meta.steps, meta=meta, random=random, nn=nn,
                        title=f"Omniglot {ways}-way {cfg['shots']}-shot: query accuracy after k inner steps\n"
                        f"(mean and 95% CI over {test_episodes.n} meta-test episodes)")

    if args.json is not None:
        flops = rcfg.meta_batch * rcfg.inner_steps * rcfg.inner_batch * spec.flops_per_example()
        summary = {
            "config": cfg,
            "protocol": split.protocol,
            "sources": split.sources,
            "classes": {"meta_train": train_set.n_classes, "meta_train_characters": split.train.n_classes,
                        "meta_test": split.test.n_classes},
            "load_seconds": load_seconds,
            "compile_seconds": compile_seconds,
            "train_seconds": train_seconds,
            "seconds_per_iteration": train_seconds / max(rcfg.iters - start, 1),
            "gflop_per_iteration": flops / 1e9,
            "train_gflops": flops * (rcfg.iters - start) / max(train_seconds, 1e-9) / 1e9,
            "eval_seconds": eval_seconds,
            "eval": {
                "episodes": test_episodes.n,
                "steps": list(meta.steps),
                "meta": _summary(meta),
                "random_init": _summary(random),
                "nearest_neighbour": {"accuracy": nn[0], "ci95": nn[1]},
            },
            "versions": versions(),
        }
        write_json(args, summary)
    return 0
