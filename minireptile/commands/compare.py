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

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ..backends import BACKENDS, get_backend
from ..checkpoint import atomic_write, save_checkpoint
from ..errors import BackendUnavailableError, CheckpointError
from ..algorithms.maml import MAMLConfig, meta_train_maml
from ..mlp import MLPSpec, init_params
from ..optim import InnerOptimizer
from ..progress import format_number
from ..reference import forward
from ..reptile import ReptileConfig, meta_train
from ..tasks.families import FAMILIES, TaskFamily, family_block, family_eval_tasks, support_query_plan
from ..tasks.sine import block_iters_for, get_preset
from ..tasks.streams import DEFAULT_SEED, INIT, TRAIN, epoch_plan, stream_rng
from . import runs
from .after_training import EvaluationGuard, evaluate_in_chunks
from .loss_history import MAX_WINDOWS, LossHistory
from .outputs import check_file_flags, write_json
from .plots import compare_figure
from .common import (Counter, FlagError, add_threads_flag, apply_threads, int_at_least, nonnegative_float,
                     nonnegative_int, positive_float, positive_int, prepare_backend, progress_mode)

ALGORITHMS = ("reptile", "fomaml", "maml", "joint", "random")
LABELS = {"reptile": "Reptile", "fomaml": "FOMAML", "maml": "MAML", "joint": "joint training (k=1)",
          "random": "random init"}
QUICK = {"iters": 1000, "eval_tasks": 600}
DEFAULT_OUT = Path("runs/compare")
DEFAULT_CHECKPOINT_EVERY = 1000
MAX_NOISE_STD = 1e6
# flags that define a run (each a key of the stored configuration); with --resume each must be left out or
# equal the checkpoint's value
RUN_KEYS = ("family", "noise_std", "iters", "meta_batch", "train_shots", "inner_lr", "maml_steps", "outer_lr",
            "reptile_steps", "reptile_batch", "reptile_eps", "shots", "eval_steps", "eval_tasks", "eval_query",
            "algorithms", "seed")
DEFAULTS: dict = {}   # filled by add_parser: the parser's default of each run-defining flag


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
    p.add_argument("--noise-std", type=noise_std, default=0.0, help="target noise std, in [0, 1e6] (default 0)")
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
    p.add_argument("--eval-tasks", type=int_at_least(2), default=600, help="held-out tasks, >= 2 (default 600)")
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
    runs.add_run_flags(
        p, "runs/compare", DEFAULT_CHECKPOINT_EVERY,
        out_help="output folder of the checkpoint (default runs/compare; with --resume: the checkpoint's)",
        every_help=f"write OUT/checkpoint.npz every N iterations of each algorithm (default {DEFAULT_CHECKPOINT_EVERY}; "
        "0: only when an algorithm starts and ends)",
        stop_help="stop cleanly once K iterations of the run are done (the algorithms train one after the other, "
        "--iters each; counted from 0, also when resuming) and skip evaluation")
    p.add_argument("--save", type=Path, help="also save every trained θ (and θ0) to this .npz")
    p.add_argument("--no-plot", action="store_true",
                   help="skip OUT/learning_curves.png (each algorithm's training loss) even if matplotlib is installed")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    # run-defining flags default to None, so that a value given with --resume can be told from a default
    DEFAULTS.update({dest: p.get_default(dest) for dest in RUN_KEYS})
    p.set_defaults(run=run, **{dest: None for dest in RUN_KEYS})


def noise_std(text: str) -> float:
    """Flag type of --noise-std: a number in [0, 1e6] (larger values overflow the squared errors)."""
    value = nonnegative_float(text)
    if value > MAX_NOISE_STD:
        raise argparse.ArgumentTypeError(f"expected a number in [0, {MAX_NOISE_STD:g}], got {text!r}")
    return value


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
    """Plain progress lines (every ``every`` s) and the learning curve (:class:`.loss_history.LossHistory`)."""

    def __init__(self, label: str, total: int, quiet: bool, every: float = 5.0, start: int = 0):
        self.label, self.total, self.quiet, self.every = label, total, quiet, every
        self.t0 = self.last = time.perf_counter()
        self.history = LossHistory(start, max(1, -(-(total - start) // MAX_WINDOWS)))

    def __call__(self, it, theta=None, losses=None, *_):
        if losses is not None:
            self.history.add(losses)
        now = time.perf_counter()
        if self.quiet or (now - self.last < self.every and it < self.total):
            return
        self.last = now
        print(f"  {self.label:<8} iter {it:>6d}/{self.total}  {now - self.t0:6.1f}s", flush=True)

    def curve(self, points: int = 100):
        """(iterations, windowed mean loss, window): :meth:`.loss_history.LossHistory.curve`."""
        return self.history.curve(points)


def trainer(name: str, c, spec, family, backend):
    """``train(theta, state, start, stop, callback, chunk_iters, chunk_seconds)`` of one algorithm.

    ``c``: the run's configuration as attributes. Every algorithm sees the same task stream.
    """
    K, mb, seed, alpha, iters = c.train_shots, c.meta_batch, c.seed, c.inner_lr, c.iters
    n_points = 2 * K
    block_iters = c.block_iters

    def tasks(b):
        return family_block(family, seed, b, block_iters, mb, n_points)

    if name in ("maml", "fomaml"):
        plan, query = support_query_plan(mb, K, K, c.maml_steps)
        plans = np.broadcast_to(plan, (block_iters,) + plan.shape)
        queries = np.broadcast_to(query, (block_iters,) + query.shape)
        mcfg = MAMLConfig(iters=iters, meta_batch=mb, inner_lr=alpha, first_order=(name == "fomaml"),
                          outer_lr=c.outer_lr)

        def train(theta, state, start, stop, callback, chunk_iters, chunk_seconds):
            it = start
            while it < stop:          # one block (or checkpoint interval) per call; the outer Adam state handed on
                end = min(stop, (it // block_iters + 1) * block_iters)
                if chunk_iters:
                    end = min(end, (it // chunk_iters + 1) * chunk_iters)
                losses = []
                theta, state = meta_train_maml(spec, theta, lambda b: tasks(b) + (plans, queries), block_iters, mcfg,
                                               backend, start=it, stop=end, state=state,
                                               callback=lambda i, th, lo: losses.append(lo))
                it = end
                if callback(it, theta, np.concatenate(losses), state):
                    return
        return train

    steps, batch = (c.reptile_steps, c.reptile_batch) if name == "reptile" else (1, n_points)
    rcfg = ReptileConfig(iters=iters, meta_batch=mb, eps0=c.reptile_eps, eps_final=0.0,
                         inner=InnerOptimizer("sgd", alpha), inner_steps=steps, inner_batch=batch)

    def block(b):
        X, Y = tasks(b)
        # minibatches: shuffled epochs over the task's 2K points, from their own stream
        plan = epoch_plan(stream_rng(seed, TRAIN, b, 1), block_iters * mb, n_points, steps, batch)
        return X, Y, plan.reshape((block_iters, mb) + plan.shape[1:])

    def train(theta, state, start, stop, callback, chunk_iters, chunk_seconds):
        meta_train(spec, theta, block, block_iters, rcfg, backend, start=start, stop=stop, state=state,
                   callback=callback, chunk_iters=chunk_iters, chunk_seconds=chunk_seconds)
    return train


def evaluate_all(args, spec, family, thetas, backend, progress="off") -> dict:
    """{algorithm: {K: EvalResult}} on the same held-out tasks (K-shot = the first K shots).

    ``progress``: a :class:`~minireptile.progress.Counter` mode for a bar or lines over all evaluations.
    """
    shots = sorted(set(args.shots))
    steps = (0,) + tuple(sorted(set(args.eval_steps)))
    Xs, Ys, Xq, Yq = family_eval_tasks(family, args.seed, args.eval_tasks, max(shots), args.eval_query)
    opt = InnerOptimizer("sgd", args.inner_lr)
    counter = Counter(len(thetas) * len(shots) * Xs.shape[0], "evaluate", progress, unit="task")
    out = {}
    try:
        for name, theta in thetas.items():
            out[name] = {K: evaluate_in_chunks(spec, theta, np.ascontiguousarray(Xs[:, :K]),
                                               np.ascontiguousarray(Ys[:, :K]), Xq, Yq, opt, backend, steps, counter)
                         for K in shots}
    finally:
        counter.close()
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
                cells.append(f"{format_number(r.mean[j], 3)} ± {format_number(r.ci95[j], 3)}")
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


def build_config(args) -> dict:
    """The run's full configuration as a JSON-serialisable dict (stored in checkpoints)."""
    c = {dest: DEFAULTS[dest] if getattr(args, dest) is None else getattr(args, dest) for dest in RUN_KEYS}
    if args.iters is None:
        c["iters"] = QUICK["iters"] if args.quick else 70000
    c["algorithms"] = list(dict.fromkeys(c["algorithms"]))
    c["shots"], c["eval_steps"] = list(c["shots"]), list(c["eval_steps"])
    return {"command": "compare", **c, "dtype": "float64", "backend": args.backend or DEFAULT_BACKEND,
            "block_iters": block_iters_for(c["meta_batch"])}


def config_argv(cfg: dict) -> list:
    """The flags that start the run ``cfg`` (the inverse of :func:`build_config`)."""
    argv = ["--backend", cfg["backend"]]
    for dest in RUN_KEYS:
        value = cfg[dest]
        argv += ["--" + dest.replace("_", "-"), *(value if isinstance(value, list) else [value])]
    return argv


def trained(cfg: dict) -> list:
    """The algorithms that train, in the order they do (``random`` is θ0 itself)."""
    return [a for a in cfg["algorithms"] if a != "random"]


def resumed_config(args, ck: dict) -> dict:
    """The configuration of the run saved in ``ck``, checked by the rules of the flags (CheckpointError,
    FlagError for a run-defining flag given with another value)."""
    cfg, where = ck["config"], repr(str(args.resume))
    if cfg.get("command") != "compare":
        raise CheckpointError(f"checkpoint: {where} was written by `minireptile {cfg.get('command')}`, not `compare`")
    runs.checked_config("compare", add_parser, build_config, cfg, config_argv, where)
    order, iters, g = trained(cfg), cfg["iters"], ck["iteration"]
    preset = get_preset("maml-paper")
    n_params = MLPSpec((1, *preset.hidden, 1), preset.activation, "mse").n_params
    problem = None
    if ck["theta"].dtype != np.float64 or ck["theta"].shape != (n_params,):
        problem = f"theta ({ck['theta'].dtype}, {ck['theta'].shape}) does not fit its configuration"
    elif not 0 <= g <= len(order) * iters:
        problem = f"iteration {g} is outside [0, {len(order) * iters}]"
    elif (ck["status"] == "complete") != (g == len(order) * iters):
        problem = f"status {ck['status']!r} does not go with iteration {g}"
    else:
        k = min(g // iters, max(len(order) - 1, 0))
        local, current = g - k * iters, order[k] if order else None
        if sorted(ck["extra"]) != sorted(order[:k]):
            problem = f"it holds the models {sorted(ck['extra'])}, expected those finished before {current}"
        elif current in ("maml", "fomaml") and local > 0 and (ck["state"] is None or ck["state"].t != local):
            problem = f"the outer Adam state of {current} is missing or not at iteration {local}"
        elif current not in ("maml", "fomaml") and ck["state"] is not None:
            problem = f"it holds an Adam state that {current} does not use"
    if problem:
        raise CheckpointError(f"checkpoint: {where} is corrupted: {problem}")
    if ck["status"] == "diverged":
        raise FlagError("--resume", f"the run in {where} diverged at iteration {g}; resuming it would diverge again: "
                        "start a new run with a smaller --inner-lr or --outer-lr")
    for dest in RUN_KEYS:
        value = getattr(args, dest)
        if value is not None and (list(value) if isinstance(value, list) else value) != cfg[dest]:
            flag = "--" + dest.replace("_", "-")
            raise FlagError(flag, f"cannot change a resumed run (the checkpoint has {cfg[dest]!r}, got {value!r}); "
                            "leave it out, or start a new run without --resume")
    return {**cfg, "backend": args.backend} if args.backend is not None else cfg


def memory_terms(cfg: dict) -> dict:
    """Bytes of the run's largest arrays, by the flag that sizes them (for :func:`runs.check_memory`)."""
    preset = get_preset("maml-paper")
    P, width = MLPSpec((1, *preset.hidden, 1)).n_params, max(preset.hidden)
    mb, n_points = cfg["meta_batch"], 2 * cfg["train_shots"]
    steps = max(cfg["reptile_steps"], cfg["maml_steps"])
    return {
        "--meta-batch": cfg["block_iters"] * mb * n_points * 2 * 8 + mb * (8 * P + n_points * width * 8) * 8,
        "--reptile-steps": cfg["block_iters"] * mb * steps * max(cfg["reptile_batch"], n_points) * 8
        + mb * cfg["maml_steps"] * P * 8,
        "--eval-tasks": cfg["eval_tasks"] * ((max(cfg["shots"]) + cfg["eval_query"]) * 2 + 4 * P
                                             + 2 * (len(cfg["eval_steps"]) + 1)) * 8,
        "--train-shots": mb * n_points * width * 4 * 8,
        # evaluation adapts every task up to the largest step count in one inner-loop call
        "--eval-steps": cfg["eval_tasks"] * max(cfg["eval_steps"]) * max(cfg["shots"]) * 8,
    }


def run(args) -> int:
    ck = runs.load_resume(args.resume) if args.resume is not None else None
    try:
        cfg = resumed_config(args, ck) if ck is not None else build_config(args)
    except CheckpointError as exc:
        raise FlagError("--resume", str(exc)) from None
    order, iters = trained(cfg), cfg["iters"]
    total = len(order) * iters
    start, stop = runs.iteration_range(args, ck, total)
    runs.check_memory(memory_terms(cfg), args=args)
    out, ckpt_path = runs.resolve_paths(args, DEFAULT_OUT)
    check_file_flags(args, out)   # OUT, --json (and --save) before the folder is claimed
    with runs.claim_folder(out):
        plot = out / "learning_curves.png" if not args.no_plot else None
        runs.check_run_outputs(args, ckpt_path, "compare", plot, **{"--save": args.save})
        with EvaluationGuard("minireptile compare", "compare") as guard:   # armed once training is complete
            return _train_and_evaluate(args, ck, cfg, order, start, stop, ckpt_path, guard)
    return guard.status


def _train_and_evaluate(args, ck, cfg, order, start, stop, ckpt_path, guard) -> int:
    c = argparse.Namespace(**cfg)
    iters, total = c.iters, len(order) * c.iters
    preset = get_preset("maml-paper")
    spec = MLPSpec((1, *preset.hidden, 1), preset.activation, "mse")
    family = TaskFamily(c.family, c.noise_std)
    apply_threads(args)
    theta0 = init_params(spec, stream_rng(c.seed, INIT), np.float64)
    backend, compile_seconds = prepare_backend("minireptile compare", c.backend, spec, np.float64,
                                               InnerOptimizer("sgd", c.inner_lr), args.quiet)
    if not args.quiet:
        resumed = f"; resuming {args.resume} at iteration {start}" if ck is not None else ""
        print(f"minireptile compare: family {family.name} (noise {family.noise_std}), {iters} iterations x "
              f"{c.meta_batch} tasks, K={c.train_shots} (+{c.train_shots} query), α={c.inner_lr}, "
              f"backend {backend.name}, seed {c.seed}; compile {compile_seconds:.1f}s{resumed}", flush=True)
    t0 = time.perf_counter()
    done = dict(ck["extra"]) if ck is not None else {}
    seconds, curves = {}, {}
    first = min(start // iters, max(len(order) - 1, 0)) if order else 0
    for k in range(first, len(order)):
        name, offset = order[k], k * iters
        if offset >= stop and offset > start:
            break
        resuming = ck is not None and k == first
        theta, state = (ck["theta"], ck["state"]) if resuming else (theta0, None)
        local_start, local_stop = start - offset if resuming else 0, min(iters, stop - offset)

        def save(it, theta, state, status, name=name, offset=offset, k=k):
            if it == iters and k < len(order) - 1:      # this model is done: the next one starts from θ0
                extra = {**done, name: theta}
                status = "running" if status in ("complete", "stopped") else status
                save_checkpoint(ckpt_path, theta0, cfg, offset + iters, None, status=status, extra=extra)
            else:
                save_checkpoint(ckpt_path, theta, cfg, offset + it, state, status=status, extra=done)

        t = time.perf_counter()
        progress = _Progress(name, iters, args.quiet, start=local_start)
        status, it, theta, state, _ = runs.train_with_checkpoints(
            prog="minireptile compare", command="compare", ckpt_path=ckpt_path, cfg=cfg, spec=spec, theta=theta,
            state=state, start=local_start, stop=local_stop, sample_block=None, block_iters=c.block_iters, rcfg=None,
            backend=backend, every=args.checkpoint_every, progress=progress, save=save,
            train=trainer(name, c, spec, family, backend), iters=iters, offset=offset, total=total,
            hint=f"a smaller --inner-lr (now {c.inner_lr:g}) or --outer-lr (now {c.outer_lr:g}) / --reptile-eps "
                 f"(now {c.reptile_eps:g})")
        seconds[name] = time.perf_counter() - t
        curves[name] = progress.curve()
        if status is not None:
            return status
        done[name] = theta
    if stop < total:
        if stop % iters == 0 and stop > start:   # stopped exactly where one model ends and the next begins
            save_checkpoint(ckpt_path, theta0, cfg, stop, None, status="stopped", extra=done)
            print(f"stopped after iteration {stop}/{total} (--stop-after); checkpoint: {ckpt_path}\n"
                  f"resume with: minireptile compare --resume {runs.quote(ckpt_path)}", flush=True)
        return 0
    guard.arm(ckpt_path, total)   # a signal from here on: say the checkpoint is complete
    thetas = {name: (done[name] if name != "random" else theta0) for name in cfg["algorithms"]}
    results = evaluate_all(c, spec, family, thetas, backend, progress_mode(args))
    total_seconds = time.perf_counter() - t0
    if not args.quiet:
        print()   # a blank line after the progress lines (none with --quiet)
    print(f"MSE on {c.eval_query} query points after k SGD steps (α={c.inner_lr}) on K shots, "
          f"mean ± 95% CI over {c.eval_tasks} held-out tasks ({family.name}, {iters} iterations, "
          f"{total_seconds:.0f}s):\n")
    print(results_table(results, c.shots, c.eval_steps))
    # "diverged": 10x the mean step-0 MSE of θ0 on the same tasks (the scale of the targets)
    Xs, Ys, Xq, Yq = family_eval_tasks(family, c.seed, c.eval_tasks, max(c.shots), c.eval_query)
    scale = float(np.mean([np.mean((forward(spec, theta0, Xq[i]) - Yq[i]) ** 2) for i in range(len(Xq))]))
    for line in outlier_notes(results, 10 * scale):
        print(line)
    if not args.no_plot and curves:
        query = "query MSE after 1 inner step"
        compare_figure(ckpt_path.parent / "learning_curves.png", curves, LABELS,
                       title=f"{family.name}: learning curves ({iters} iterations x {c.meta_batch} tasks, seed "
                       f"{c.seed})", quantities={"maml": query, "fomaml": query,
                                                 "reptile": "mean inner-loop training MSE",
                                                 "joint": "training MSE before its step"})
    if args.save is not None:
        atomic_write(args.save, lambda f: np.savez(f, theta0=theta0, **{k: v for k, v in thetas.items()}))
        print(f"thetas: {args.save}", file=sys.stderr)
    if args.json is not None:
        summary = {
            "config": cfg,
            "iters": iters, "backend": backend.name, "train_seconds": seconds, "total_seconds": total_seconds,
            "results": {name: {str(K): {"steps": list(r.steps), "mean": r.mean.tolist(), "ci95": r.ci95.tolist(),
                                        "median": np.median(r.losses, axis=0).tolist(),
                                        "max": r.losses.max(axis=0).tolist()}
                               for K, r in per_k.items()} for name, per_k in results.items()},
        }
        write_json(args, summary, file=sys.stderr)
    return 0
