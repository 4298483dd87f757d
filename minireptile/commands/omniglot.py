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
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..backends import BACKENDS
from ..checkpoint import atomic_write, save_checkpoint
from ..errors import DivergenceError
from ..evaluation.fewshot import evaluate_episodes, nearest_neighbour_episodes, score_schedule
from ..evaluation.regression import mean_ci95
from ..mlp import MLPSpec, init_params
from ..optim import InnerOptimizer
from ..reptile import ReptileConfig, meta_train
from ..tasks.episodes import (EpisodeConfig, block_iters_for, full_batch_plan, minibatch_plan, sample_episodes,
                              train_block)
from ..tasks.omniglot import omniglot_split, with_rotations
from ..tasks.streams import DEFAULT_SEED, EVAL, INIT, stream_rng
from .common import (EXIT_DIVERGED, Counter, Progress, add_threads_flag, apply_threads, int_at_least, nonnegative_float,
                     nonnegative_int, positive_float, positive_int, prepare_backend, progress_mode, unit_interval,
                     versions)

# the compiled CPU backend when it is part of this installation, as `minireptile sine`
DEFAULT_BACKEND = "numba" if importlib.util.find_spec("minireptile.backends.numba_cpu") is not None else "numpy"
EVAL_EPISODES, EVAL_PLAN, EVAL_INIT = 0, 1, 2   # sub-keys of the EVAL stream


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
    p.add_argument("--data", type=Path, required=True, help="Omniglot zips folder, a zip, or an unpacked split")
    p.add_argument("--ways", type=positive_int, default=5, help="classes per episode N (default 5)")
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
    p.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help=f"inner-loop implementation (default: {DEFAULT_BACKEND})")
    add_threads_flag(p)
    p.add_argument("--cache-dir", type=Path,
                   help="cache folder used when the data folder is read-only (default ~/.cache/minireptile)")
    p.add_argument("--no-cache", action="store_true", help="decode the PNGs every time; write no cache")
    p.add_argument("--out", type=Path, default=Path("runs/omniglot"), help="output folder (default runs/omniglot)")
    p.add_argument("--json", type=Path, help="also write a JSON summary here")
    p.add_argument("--quiet", action="store_true", help="no progress bars or lines")
    p.set_defaults(run=run)


def build_config(args) -> dict:
    """The run's full configuration as a JSON-serialisable dict (stored in checkpoints)."""
    d_in = args.size * args.size
    spec = MLPSpec((d_in, *args.hidden, args.ways), args.activation, "ce")
    opt = InnerOptimizer(args.optimizer, args.inner_lr, args.beta1, args.beta2, 1e-8, args.adam_state)
    reptile = ReptileConfig(iters=args.iters, meta_batch=args.meta_batch, eps0=args.outer_lr,
                            eps_final=args.outer_lr_final, inner=opt, inner_steps=args.inner_iters,
                            inner_batch=args.inner_batch)
    n_points = args.ways * args.train_shots
    return {
        "command": "omniglot",
        "data": str(args.data),
        "size": args.size,
        "augment": not args.no_augment,
        "ways": args.ways,
        "shots": args.shots,
        "train_shots": args.train_shots,
        "queries": args.queries,
        "replacement": args.replacement,
        "model": spec.to_dict(),
        "reptile": reptile.to_dict(),
        "dtype": args.dtype,
        "seed": args.seed,
        "backend": args.backend,
        "eval_episodes": args.eval_episodes,
        "eval_inner_iters": args.eval_inner_iters,
        "eval_inner_batch": args.eval_inner_batch or args.ways * args.shots,
        "eval_score_steps": list(score_schedule(args.eval_inner_iters, args.every_step)),
        "block_iters": block_iters_for(args.meta_batch, n_points, d_in),
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
        lines.append(f"{s:>5d}  {_pct(acc_m[j], acc_mc[j]):>16}  {loss_m[j]:>6.3f} ± {loss_mc[j]:<5.3f}  "
                     f"{_pct(acc_r[j], acc_rc[j]):>16}  {loss_r[j]:>6.3f} ± {loss_rc[j]:<5.3f}")
    lines.append(f"pixel nearest neighbour: {_pct(*nn)}")
    return "\n".join(lines)


def _summary(result) -> dict:
    acc, acc_ci = result.curve("accuracy")
    loss, loss_ci = result.curve("loss")
    return {"accuracy": float(acc[-1]), "ci95": float(acc_ci[-1]),
            "accuracy_per_step": acc.tolist(), "accuracy_ci95_per_step": acc_ci.tolist(),
            "loss_per_step": loss.tolist(), "loss_ci95_per_step": loss_ci.tolist()}


def run(args) -> int:
    cfg = build_config(args)
    rcfg = _reptile_config(cfg)
    spec = MLPSpec.from_dict(cfg["model"])
    dtype = np.dtype(cfg["dtype"])
    seed, ways = cfg["seed"], cfg["ways"]
    apply_threads(args)

    t = time.perf_counter()
    try:
        split = omniglot_split(args.data, cfg["size"], args.cache_dir, not args.no_cache)
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
    backend, compile_seconds = prepare_backend("minireptile omniglot", cfg["backend"], spec, dtype, rcfg.inner,
                                              args.quiet)
    if not args.quiet:
        cached = "cache hit" if split.train.cache_hit and split.test.cache_hit else "decoded"
        print(f"minireptile omniglot: {split.protocol}", flush=True)
        print(f"  meta-train {train_set.n_classes} classes ({split.train.n_classes} characters"
              f"{' x 4 rotations' if cfg['augment'] else ''}), meta-test {split.test.n_classes} characters; "
              f"{cfg['size']}x{cfg['size']} images, loaded in {load_seconds:.1f}s ({cached})", flush=True)
        print(f"  {ways}-way {cfg['shots']}-shot (train {cfg['train_shots']}-shot), MLP {'-'.join(map(str, spec.sizes))} "
              f"{spec.activation}, {rcfg.iters} iterations x meta-batch {rcfg.meta_batch}, {rcfg.inner.name} "
              f"x{rcfg.inner_steps} (batch {rcfg.inner_batch}, lr {rcfg.inner.lr}), ε {rcfg.eps0}→{rcfg.eps_final}, "
              f"backend {backend.name}, {dtype.name}, seed {seed}; compile {compile_seconds:.2f}s", flush=True)
    progress = Progress(rcfg.iters, 0, rcfg, args.quiet)
    out = Path(args.out)
    ckpt_path = out / "checkpoint.npz"
    t = time.perf_counter()
    try:
        theta, state = meta_train(spec, theta0, sample_block, block_iters, rcfg, backend, callback=progress)
    except DivergenceError as exc:
        save_checkpoint(ckpt_path, exc.theta, cfg, exc.iteration, exc.state, status="diverged")
        print(f"minireptile omniglot: error: training diverged at outer iteration {exc.iteration}: the inner loss or θ "
              f"became NaN or inf. The last finite θ is in {ckpt_path}. Start a new run with a smaller --inner-lr "
              f"(now {rcfg.inner.lr:g}) or --outer-lr (now {rcfg.eps0:g}).", file=sys.stderr)
        return EXIT_DIVERGED
    train_seconds = time.perf_counter() - t
    save_checkpoint(ckpt_path, theta, cfg, rcfg.iters, state)

    eval_opt = InnerOptimizer(rcfg.inner.name, rcfg.inner.lr, rcfg.inner.beta1, rcfg.inner.beta2, rcfg.inner.eps)

    def random_inits(i, j):  # a fresh network for every episode, independent of chunking
        return np.stack([init_params(spec, stream_rng(seed, EVAL, EVAL_INIT, e), dtype) for e in range(i, j)])

    t = time.perf_counter()
    steps = cfg["eval_score_steps"]
    counter = Counter(2 * test_episodes.n, "evaluate (meta-learned, then random init)", progress_mode(args))
    meta = evaluate_episodes(spec, theta, x_test, test_episodes, eval_plan, eval_opt, backend, steps,
                             callback=counter.update)
    random = evaluate_episodes(spec, random_inits, x_test, test_episodes, eval_plan, eval_opt, backend, steps,
                               callback=counter.update)
    counter.close()
    nn_acc = nearest_neighbour_episodes(x_test, test_episodes)
    nn = tuple(float(v) for v in mean_ci95(nn_acc))
    eval_seconds = time.perf_counter() - t

    print(f"\n{ways}-way {cfg['shots']}-shot query accuracy and loss after k inner steps ({eval_opt.name}, batch "
          f"{eval_batch}), mean ± 95% CI over {test_episodes.n} meta-test episodes of {cfg['queries']} queries per class "
          f"(train {train_seconds:.1f}s, eval {eval_seconds:.1f}s):")
    print(results_table(meta, random, nn))
    print(f"checkpoint: {ckpt_path}")

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
            "seconds_per_iteration": train_seconds / rcfg.iters,
            "gflop_per_iteration": flops / 1e9,
            "train_gflops": flops * rcfg.iters / train_seconds / 1e9,
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
        atomic_write(args.json, lambda f: f.write(json.dumps(summary, indent=2).encode()))
        print(f"json: {args.json}")
    return 0
