"""``minireptile.Reptile``: meta-learn an initialisation on your tasks in a few lines.

Contract
--------
A thin layer over the pipeline: :class:`Reptile` holds the network spec, the inner optimizer, the
outer schedule, the backend, the dtype and the seed, and calls the same functions the commands
call — task sources (:mod:`minireptile.tasks.sources`) → :func:`minireptile.meta_train` with the
chosen backend → :func:`minireptile.evaluation.adapt_and_score` / ``adapt_and_classify``. It has
no loop of its own: ``Reptile.from_preset(PRESET, ...).fit(PRESET, iters)`` computes bit for bit the
θ that ``minireptile sine --preset PRESET --iters ITERS`` writes with the same seed and flags, at any
meta-batch: both reduce a meta-batch in blocks of ``task_block`` tasks (default ⌈meta_batch/16⌉, the
command's ``--task-block``).

Seeds: θ0 comes from ``stream_rng(seed, INIT)``, training tasks from ``stream_rng(seed, TRAIN, b)``
and held-out tasks from ``stream_rng(seed, EVAL)``, exactly as in the commands (one seed, split by
purpose). ``fit`` always starts from θ0, so fitting twice gives the same θ.

    >>> from minireptile import Reptile
    >>> model = Reptile.from_preset("gist", backend="numpy")
    >>> history = model.fit("gist", iters=20)
    >>> history.shape
    (20,)
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import validation as check
from .backends import get_backend
from .backends.distributed import task_block_for
from .budget import check_fits
from .checkpoint import load_checkpoint, save_checkpoint
from .config import ReptileConfig
from .errors import CheckpointError, DivergenceError
from .evaluation.fewshot import adapt_and_classify
from .evaluation.regression import adapt_and_score, mean_ci95
from .mlp import MLPSpec, init_params
from .optim import InnerOptimizer
from .progress import Counter, Progress, format_number, resolve_mode
from .reference import forward
from .reptile import meta_train
from .tasks.sine import SinePreset, get_preset
from .tasks.sources import ArrayTasks, TaskSource, as_task_source
from .tasks.streams import DEFAULT_SEED, INIT, stream_rng

EVAL_CHUNK = 250  # held-out tasks per backend call (results do not depend on it)

# InnerOptimizer's field names -> the constructor arguments a user gives (for error messages)
INNER_ARGUMENTS = {"lr": "inner_lr", "state_policy": "adam_state"}


@contextmanager
def _named_as(names: dict):
    """Re-raise a ValueError/TypeError whose message starts ``field:`` as ``argument:`` (``names``: field → argument)."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        field, sep, rest = str(exc).partition(": ")
        if sep and field in names:
            raise type(exc)(f"{names[field]}: {rest}") from None
        raise


@dataclass(frozen=True)
class Evaluation:
    """Scores of adapted networks on held-out tasks after each number of adaptation steps.

    Attributes
    ----------
    steps : tuple of int, (S,)
    losses : ndarray of float64, (n_tasks, S)
        Loss (MSE, or cross-entropy for labels) on each task's held-out points.
    mean, ci95 : ndarray, (S,)
        Mean over tasks and the half-width of its Student-t 95% confidence interval.
    accuracy : ndarray of float64, (n_tasks, S), or None
        Classification only: fraction of held-out points classified correctly.
    accuracy_mean, accuracy_ci95 : ndarray, (S,), or None
    """

    steps: tuple[int, ...]
    losses: np.ndarray
    mean: np.ndarray
    ci95: np.ndarray
    accuracy: np.ndarray | None = None
    accuracy_mean: np.ndarray | None = None
    accuracy_ci95: np.ndarray | None = None

    def __str__(self) -> str:
        head = f"{'steps':>5}  {'loss':>19}" + ("  accuracy" if self.accuracy is not None else "")
        rows = [head]
        for j, s in enumerate(self.steps):
            row = f"{s:>5d}  {format_number(self.mean[j], 4, 9):>9} ± {format_number(self.ci95[j], 4, 7):<7}"
            if self.accuracy is not None:
                row += f"  {100 * self.accuracy_mean[j]:5.1f}% ± {100 * self.accuracy_ci95[j]:.1f}"
            rows.append(row.rstrip())
        return "\n".join(rows)


class Reptile:
    """Reptile (Nichol, Achiam & Schulman 2018) for an MLP: learn θ, adapt it to a task, predict.

    Parameters
    ----------
    layers : sequence of int or MLPSpec
        Layer sizes ``(d_in, h_1, …, d_out)`` (e.g. ``(1, 64, 64, 1)``), or a ready
        :class:`~minireptile.MLPSpec` (then ``activation`` and ``loss`` are taken from it).
    activation : {"tanh", "relu"}
        Hidden-layer nonlinearity.
    loss : {"mse", "ce"}
        Squared error on float targets Y (n, d_out), or softmax cross-entropy on integer labels (n,).
    optimizer : {"sgd", "adam"}
        Inner optimizer; ``inner_lr`` its step size, ``beta1``/``beta2`` Adam's decays.
    inner_steps, inner_batch : int
        k inner steps of minibatches of this size on each training task.
    adam_state : {"reset", "carry"}
        Adam moments restarted per task, or carried across tasks (openai/supervised-reptile).
    meta_batch : int
        Tasks per outer iteration (1: serial Reptile).
    task_block : int, optional
        Reduce each meta-batch in blocks of this many tasks (sum in task order within a block, then
        over blocks); default ⌈meta_batch/16⌉, as the commands' ``--task-block``. It changes θ only
        in the last bits; :meth:`save` and :meth:`load` keep it.
    eps0, eps_final : float
        Outer step size ε, annealed linearly from ``eps0`` to ``eps_final`` over a ``fit``.
    backend : {"numba", "numpy", "cuda"}
        Inner-loop implementation (all compute the same function).
    dtype : {"float32", "float64"}
        Compute dtype; task data is converted to it.
    seed : int
        The run seed (default 1, as every ``minireptile`` command).

    Attributes
    ----------
    spec : MLPSpec
    theta0 : ndarray, (P,)
        The initialisation drawn from the seed (the random-init baseline).
    theta : ndarray, (P,)
        The current meta-learned initialisation (``theta0`` before ``fit``).
    state : AdamState or None
        Carried Adam moments after ``fit`` (``adam_state="carry"``).
    history : ndarray of float64, (iters,)
        Per-iteration mean inner training loss of the last ``fit``.
    iterations : int
        Outer iterations behind ``theta`` (0 before ``fit``).
    """

    def __init__(self, layers=(1, 64, 64, 1), *, activation="tanh", loss="mse", optimizer="sgd", inner_lr=0.02,
                 inner_steps=5, inner_batch=10, beta1=0.0, beta2=0.999, adam_state="reset", meta_batch=1,
                 eps0=0.1, eps_final=0.0, backend="numba", dtype="float32", seed=DEFAULT_SEED, task_block=None):
        self.spec = layers if isinstance(layers, MLPSpec) else MLPSpec(tuple(layers), activation, loss)
        with _named_as(INNER_ARGUMENTS):
            self.inner = InnerOptimizer(optimizer, inner_lr, beta1, beta2, 1e-8, adam_state)
        # the outer settings, checked by ReptileConfig now (iters is only known in fit)
        if task_block is None and not isinstance(meta_batch, bool) and isinstance(meta_batch, (int, np.integer)):
            task_block = task_block_for(max(int(meta_batch), 1))
        self._outer = dict(meta_batch=meta_batch, eps0=eps0, eps_final=eps_final, inner=self.inner,
                           inner_steps=inner_steps, inner_batch=inner_batch, task_block=task_block)
        ReptileConfig(iters=1, **self._outer)
        if backend not in ("numpy", "numba", "cuda"):
            raise ValueError(f"backend: expected one of ('numpy', 'numba', 'cuda'), got {backend!r}")
        self.backend = backend
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
        self.seed = check.count("seed", seed, minimum=0)
        # θ0, θ, a gradient and Adam's moments, per task of a meta-batch at most a few more
        check_fits({"layers": 8 * self.spec.n_params * self.dtype.itemsize})
        self.theta0 = init_params(self.spec, stream_rng(self.seed, INIT), self.dtype)
        self.theta = self.theta0.copy()
        self.state = None
        self.history = np.empty(0)
        self.iterations = 0

    @classmethod
    def from_preset(cls, preset="gist", **overrides) -> "Reptile":
        """A model with a sine preset's network and hyperparameters (what ``minireptile sine --preset`` uses).

        Parameters
        ----------
        preset : str or SinePreset
            "gist", "maml", "reptile-paper" or "maml-paper".
        **overrides
            Any constructor argument (``seed=``, ``backend=``, ``meta_batch=``, …).
        """
        p = preset if isinstance(preset, SinePreset) else get_preset(preset)
        kw = dict(activation=p.activation, inner_lr=p.inner_lr, inner_steps=p.inner_steps,
                  inner_batch=p.inner_batch, meta_batch=p.meta_batch, eps0=p.eps0, eps_final=p.eps_final)
        kw.update(overrides)
        return cls((1, *p.hidden, 1), **kw)

    def config(self, iters: int) -> ReptileConfig:
        """The :class:`ReptileConfig` of a ``fit`` of ``iters`` outer iterations."""
        return ReptileConfig(iters=iters, **self._outer)

    def __repr__(self) -> str:
        o = self._outer
        return (f"Reptile({'-'.join(map(str, self.spec.sizes))} {self.spec.activation}, loss {self.spec.loss!r}, "
                f"{self.inner.name} x{o['inner_steps']} (batch {o['inner_batch']}, lr {self.inner.lr}), meta-batch "
                f"{o['meta_batch']} (blocks of {o['task_block']}), eps {o['eps0']}->{o['eps_final']}, backend {self.backend!r}, {self.dtype.name}, "
                f"seed {self.seed})")

    # -- the pipeline -------------------------------------------------------------------------
    def _source(self, tasks) -> TaskSource:
        source = as_task_source(tasks)
        s = self.spec
        if source.loss != s.loss:
            kind = "integer labels (loss='ce')" if source.loss == "ce" else "float targets (loss='mse')"
            raise ValueError(f"tasks: {source!r} has {kind}, but the model was built with loss={s.loss!r}")
        if source.d_in != s.d_in or (source.loss == "mse" and source.d_out != s.d_out) or source.d_out > s.d_out:
            raise ValueError(f"tasks: {source!r} has d_in={source.d_in}, d_out={source.d_out}; the model's layers "
                             f"{s.sizes} expect d_in={s.d_in}, d_out={s.d_out}")
        return source

    def fit(self, tasks, iters: int, *, progress=False, callback=None) -> np.ndarray:
        """Meta-train θ from θ0 for ``iters`` outer iterations.

        Parameters
        ----------
        tasks : str, TaskSource, (X, Y) arrays or callable
            A sine preset or torchmeta family name, a source from :mod:`minireptile.tasks.sources`,
            your own stack of tasks ``(X (n_tasks, n_points, d_in), Y)`` or a sampler ``rng -> (X, Y)``
            of one task (see :func:`~minireptile.tasks.sources.as_task_source`).
        iters : int
            Outer iterations; the ε schedule runs over them.
        progress : bool or {"auto", "bar", "lines", "off"}
            Report progress (True: a tqdm bar on a terminal when tqdm is installed, plain lines otherwise).
            With the numba backend, a kernel not yet in numba's cache is compiled first, with a line on
            stderr before and after (nothing is printed with ``progress=False``).
        callback : callable, optional
            ``callback(it, theta, losses, state)`` after each chunk, as :func:`minireptile.meta_train`;
            returning True stops early.

        Returns
        -------
        history : ndarray of float64, shape (iters,)
            Mean inner training loss of every outer iteration (NaN for iterations not run after an
            early stop).

        Raises
        ------
        DivergenceError
            The loss or θ became NaN or inf (the error carries the last finite θ).
        """
        source = self._source(tasks)
        config = self.config(check.count("iters", iters))
        backend = get_backend(self.backend)
        self._check_fit_memory(source, config)
        self._compile_notice(backend, progress)
        block_iters = source.block_iters(config.meta_batch)
        seed, dtype = self.seed, self.dtype

        def sample_block(b):
            return source.train_block(seed, b, block_iters, config.meta_batch, config.inner_steps,
                                      config.inner_batch, dtype)

        history = np.full(config.iters, np.nan)
        report = Progress(config.iters, 0, config, progress)
        done = [0]

        def on_chunk(it, theta, losses, state):
            history[it - len(losses):it] = losses
            done[0] = it
            report(it, theta, losses, state)
            return bool(callback(it, theta, losses, state)) if callback is not None else False

        try:
            theta, state = meta_train(self.spec, self.theta0, sample_block, block_iters, config, backend,
                                      callback=on_chunk)
        finally:
            report.close()
        self.theta, self.state, self.history, self.iterations = theta, state, history, done[0]
        return history

    def _compile_notice(self, backend, progress) -> None:
        """With progress on and the numba kernel this model needs not in numba's cache: say so on stderr,
        compile it, and say how long it took (a first ``fit`` would otherwise be silent for seconds)."""
        if self.backend != "numba" or resolve_mode(progress) == "off":
            return
        from .backends.numba_cpu import kernel_cached

        if kernel_cached(self.spec, self.dtype, self.inner) is not False:
            return
        print(f"minireptile: compiling the numba kernels for {self.spec.activation}/{self.spec.loss} with "
              f"{self.inner.name}, {self.dtype.name} (once, then cached) ...", file=sys.stderr, flush=True)
        seconds = backend.warmup(self.spec, self.dtype, self.inner)
        print(f"minireptile: kernels ready in {seconds:.1f} s", file=sys.stderr, flush=True)

    def _check_fit_memory(self, source, config) -> None:
        """ValueError naming iters, meta_batch or inner_steps when a fit's arrays would not fit in memory."""
        points = getattr(source, "n_points", 1) * (source.d_in + source.d_out) * self.dtype.itemsize
        tasks = config.meta_batch * source.block_iters(config.meta_batch)   # tasks sampled at once
        check_fits({"iters": 8 * config.iters,
                    "meta_batch": tasks * (points + 2 * self.spec.n_params * self.dtype.itemsize),
                    "inner_steps": tasks * config.inner_steps * config.inner_batch * 8})

    def _eval_opt(self, lr=None) -> InnerOptimizer:
        o = self.inner
        if lr is not None:
            with _named_as({"lr": "lr"}):
                InnerOptimizer(o.name, lr)   # checked: a finite number > 0
        return InnerOptimizer(o.name, o.lr if lr is None else lr, o.beta1, o.beta2, o.eps)  # Adam restarts per task

    def _params(self, params):
        if params is None:
            return self.theta
        return check.theta_arg(self.spec, np.asarray(params, dtype=self.dtype) if np.asarray(params).dtype.kind == "f"
                               else params, True)[0]

    def _data(self, X, Y=None):
        X = np.asarray(X)
        if X.dtype.kind in "fiub":
            X = X.astype(self.dtype, copy=False)
        if Y is not None and self.spec.loss == "mse":
            Y = np.asarray(Y)
            if Y.dtype.kind in "fiub":
                Y = Y.astype(self.dtype, copy=False)
        return X, Y

    def adapt(self, X, Y, steps=None, *, params=None, lr=None) -> np.ndarray:
        """Adapt θ to one task: ``steps`` full-batch steps of the inner optimizer on (X, Y).

        Full batch: every step uses all n points (``fit`` instead takes minibatches of
        ``inner_batch`` points, drawn from the seed). Adam restarts its moments here.

        Parameters
        ----------
        X : array_like, shape (n, d_in)
        Y : array_like, shape (n, d_out) float targets, or (n,) integer labels for loss "ce"
        steps : int, optional
            Inner steps (default: ``inner_steps``).
        params : ndarray, shape (P,), optional
            Start from these parameters instead of θ (e.g. ``model.theta0``).
        lr : float, optional
            Adaptation step size (default: ``inner_lr``, the one training used).

        Returns
        -------
        phi : ndarray, shape (P,)
            The adapted parameters (θ is not modified); pass them to :meth:`predict`.

        Raises
        ------
        DivergenceError
            The adapted parameters became NaN or inf (the inner learning rate is too large).
        """
        steps = self._outer["inner_steps"] if steps is None else check.count("steps", steps, minimum=0)
        theta = self._params(params)
        X, Y = self._data(X, Y)
        _, X, Y = check.batch_args(self.spec, theta, X, Y)
        if steps == 0:
            return theta.copy()
        check_fits({"steps": 8 * steps * X.shape[0]})
        plan = np.broadcast_to(np.arange(X.shape[0], dtype=np.int64), (1, steps, X.shape[0])).copy()
        with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is raised below, not warned
            res = get_backend(self.backend).inner_loop(self.spec, theta, X[None], Y[None], plan, self._eval_opt(lr),
                                                       check_finite=False)  # checked just above
        if not np.isfinite(res.phi[0]).all():
            flag, used = ("inner_lr", self.inner.lr) if lr is None else ("lr", lr)
            raise DivergenceError(f"adapt: the parameters became NaN or inf within {steps} steps; use a smaller "
                                  f"{flag} (now {used:g})")
        return res.phi[0]

    def predict(self, X, params=None) -> np.ndarray:
        """Network outputs for inputs X.

        Parameters
        ----------
        X : array_like, shape (n, d_in)
        params : ndarray, shape (P,), optional
            Parameters to use (e.g. from :meth:`adapt`); default θ.

        Returns
        -------
        ndarray, shape (n, d_out)
            Predictions (loss "mse") or logits (loss "ce").
        """
        X, _ = self._data(X)
        return forward(self.spec, self._params(params), X)

    def evaluate(self, tasks, steps=None, n_tasks: int | None = 1000, *, params=None, progress=False,
                 lr=None) -> Evaluation:
        """Adapt to held-out tasks and score: mean ± 95% CI over tasks after each number of steps.

        Each held-out task's points are split in two: the network adapts with full-batch steps (as
        :meth:`adapt`) on the adaptation points and is scored on the others. The split is the
        source's: a sine preset adapts on ``eval_shots`` points and scores on its 50-point grid; an
        array source (``(X, Y)``, :class:`~minireptile.ArrayTasks`) adapts on a random ``shots`` of
        each task's points (fixed by the seed; default half) and scores on the rest; a sampler
        (:class:`~minireptile.SamplerTasks`) on the first ``shots`` points of each drawn task; a
        family (:class:`~minireptile.FamilyTasks`) on ``shots`` points, scored on ``n_eval`` others;
        episodes (:class:`~minireptile.EpisodeTasks`) on the support set, scored on the queries.

        Parameters
        ----------
        tasks : str, TaskSource, (X, Y) arrays or callable
            As in :meth:`fit`. Held-out tasks come from the seed's evaluation stream (for a sine
            preset: the very tasks ``minireptile sine`` reports on).
        steps : sequence of int, optional
            Increasing step counts (default: the source's, e.g. 0, 1, 2, 4, 8, 16, 32).
        n_tasks : int or None
            Held-out tasks (>= 2; None: all tasks of an array source).
        params : ndarray, shape (P,), optional
            Evaluate these parameters instead of θ (``model.theta0``: the random-init baseline).
        progress : bool or {"auto", "bar", "lines", "off"}
            As in :meth:`fit`.
        lr : float, optional
            Adaptation step size (default: ``inner_lr``).

        Returns
        -------
        Evaluation
        """
        source = self._source(tasks)
        if n_tasks is not None:
            check.count("n_tasks", n_tasks, minimum=2)
        elif not isinstance(source, ArrayTasks):
            raise ValueError(f"n_tasks: None (every task) needs tasks given as arrays; give a number of tasks for "
                             f"{type(source).__name__}")
        if steps is not None and (isinstance(steps, (str, bytes)) or not np.iterable(steps)):
            raise ValueError(f"steps: expected a sequence of step counts such as (0, 1, 5), got {steps!r}")
        steps = tuple(source.eval_steps if steps is None else steps)
        if n_tasks is not None:
            per_task = getattr(source, "n_points", 1) * (source.d_in + source.d_out) * self.dtype.itemsize
            check_fits({"n_tasks": n_tasks * (per_task + 8 * len(steps) + 64)})
        theta = self._params(params)
        Xs, Ys, Xq, Yq = source.eval_tasks(self.seed, n_tasks, self.dtype)
        backend, opt, n = get_backend(self.backend), self._eval_opt(lr), Xs.shape[0]
        self._compile_notice(backend, progress)
        if self.spec.loss == "ce":  # adapt_and_classify trusts its caller: check once, here
            check.evaluate_args(self.spec, theta, Xs, Ys, Xq, Yq, opt, backend, steps)
        counter = Counter(n, "evaluate", progress, unit="task")
        parts = []
        try:
            for i in range(0, n, EVAL_CHUNK):
                j = min(i + EVAL_CHUNK, n)
                if self.spec.loss == "ce":
                    plan = np.broadcast_to(np.arange(Xs.shape[1], dtype=np.int64),
                                           (j - i, max(steps), Xs.shape[1])).copy()
                    r = adapt_and_classify(self.spec, theta, Xs[i:j], Ys[i:j], Xq[i:j], Yq[i:j], plan, opt, backend,
                                           steps)
                    parts.append((r.loss, r.accuracy))
                else:
                    sl = slice(i, j) if j - i >= 2 else slice(i - 1, j)  # a chunk needs two tasks; drop the extra
                    r = adapt_and_score(self.spec, theta, Xs[sl], Ys[sl], Xq[sl], Yq[sl], opt, backend, steps)
                    parts.append((r.losses[-(j - i):], None))
                counter.update(j - i)
        finally:
            counter.close()
        losses = np.concatenate([p[0] for p in parts])
        mean, ci = mean_ci95(losses, axis=0)
        if self.spec.loss != "ce":
            return Evaluation(steps, losses, mean, ci)
        acc = np.concatenate([p[1] for p in parts])
        am, ac = mean_ci95(acc, axis=0)
        return Evaluation(steps, losses, mean, ci, acc, am, ac)

    # -- persistence --------------------------------------------------------------------------
    def _config_dict(self) -> dict:
        outer = {k: v for k, v in self._outer.items() if k != "inner"}
        return {"command": "Reptile", "model": self.spec.to_dict(),
                "reptile": {"iters": max(self.iterations, 1), **outer, "inner": self.inner.to_dict()},
                "dtype": self.dtype.name, "seed": self.seed, "backend": self.backend}

    def save(self, path) -> None:
        """Write θ, the carried Adam state and the full configuration to a checkpoint (atomically).

        The file is the format ``minireptile sine`` writes (:mod:`minireptile.checkpoint`); a partly
        written file never replaces an existing one.

        Raises
        ------
        ValueError
            ``path`` is a folder, a device, a FIFO, a minireptile lock, or a checkpoint other than a
            model ``save`` wrote (a command-line run's, or any in a folder with a run's lock); nothing
            is written. A model saved before may be replaced.
        """
        from .safety import check_output_file

        check_output_file("path", path, checkpoints="saved")
        save_checkpoint(Path(path), self.theta, self._config_dict(), self.iterations, self.state,
                        status="complete")

    @classmethod
    def load(cls, path) -> "Reptile":
        """A model from a checkpoint written by :meth:`save` or by ``minireptile sine``.

        A checkpoint without a ``task_block`` (written by an earlier version) gets the default,
        ⌈meta_batch/16⌉.

        Raises
        ------
        CheckpointError
            The file is missing, damaged, or holds no model configuration.
        """
        ck = load_checkpoint(path)
        cfg = ck["config"]
        try:
            spec = MLPSpec.from_dict(cfg["model"])
            if ck["theta"].shape != (spec.n_params,):   # before the model allocates anything of its size
                raise CheckpointError(f"checkpoint: {str(path)!r} is corrupted: theta {ck['theta'].dtype} "
                                      f"{ck['theta'].shape} does not fit the model {spec.sizes}")
            r = dict(cfg["reptile"])
            inner = dict(r.pop("inner"))
            model = cls(spec, optimizer=inner["name"], inner_lr=inner["lr"], beta1=inner["beta1"],
                        beta2=inner["beta2"], adam_state=inner["state_policy"], meta_batch=r["meta_batch"],
                        eps0=r["eps0"], eps_final=r["eps_final"], inner_steps=r["inner_steps"],
                        inner_batch=r["inner_batch"], backend=cfg.get("backend", "numba"), dtype=cfg["dtype"],
                        seed=cfg["seed"], task_block=r.get("task_block"))
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint: {str(path)!r} holds no usable model configuration ({exc})") from None
        if ck["theta"].shape != (spec.n_params,) or ck["theta"].dtype != model.dtype:
            raise CheckpointError(f"checkpoint: {str(path)!r} is corrupted: theta {ck['theta'].dtype} "
                                  f"{ck['theta'].shape} does not fit the model {spec.sizes}")
        model.theta, model.state, model.iterations = ck["theta"], ck["state"], ck["iteration"]
        return model
