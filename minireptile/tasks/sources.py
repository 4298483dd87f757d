"""Task sources: one interface over every kind of task the estimator trains and evaluates on.

Contract
--------
A task source turns a run seed into plain arrays, on the host, like the rest of this subpackage:

    train_block(seed, b, block_iters, meta_batch, steps, batch, dtype) -> X, Y, plans
        the tasks of outer iterations b·block_iters … (b+1)·block_iters − 1, for
        :func:`minireptile.meta_train`: X (block_iters, meta_batch, n_points, d_in), Y the matching
        targets (…, n_points, d_out) float or labels (…, n_points) int64, plans (…, steps, batch)
        int64. It depends on its arguments only (generator ``stream_rng(seed, TRAIN, b)``), so a
        resumed or repeated run sees the same tasks.
    eval_tasks(seed, n_tasks, dtype) -> X, Y, X_eval, Y_eval
        held-out tasks from ``stream_rng(seed, EVAL, …)``: adaptation points (n, shots, d_in) and the
        points the loss is measured on (n, n_eval, d_in), with their targets or labels.

Sources (:func:`as_task_source` builds one from what a user passes):

    SineTasks      a sine preset ("gist", "maml", "reptile-paper", "maml-paper"): the CLI's tasks
    FamilyTasks    torchmeta's "sinusoid", "harmonic", "sinusoid-and-line" (any noise level)
    EpisodeTasks   N-way K-shot episodes from a labelled array data set (e.g. Omniglot)
    ArrayTasks     your own tasks as arrays: a stack X (n_tasks, n_points, d_in), Y (n_tasks, n_points,
                   d_out) float targets or (n_tasks, n_points) integer labels
    SamplerTasks   your own tasks as a callable ``rng -> (X, Y)`` drawing one task: X (n_points, d_in),
                   Y (n_points, d_out) or (n_points,) labels

Every argument is checked once, here at construction, by :mod:`minireptile.validation`; the data is
cast to the model's dtype when blocks are drawn (float64 data with a float32 model is rounded).
"""

from __future__ import annotations

import numpy as np

from .. import validation as check
from .episodes import EpisodeConfig, gather, sample_episodes
from .episodes import block_iters_for as episode_block_iters
from .episodes import train_block as episode_train_block
from .families import TORCHMETA_FAMILIES, TaskFamily, family_block, family_eval_tasks
from .sine import PRESETS, SinePreset, block_iters_for, get_preset, sine_block, sine_eval_tasks
from .streams import EVAL, TRAIN, epoch_plan, stream_rng

DEFAULT_EVAL_STEPS = (0, 1, 2, 4, 8, 16, 32)
EVAL_EPISODES = 0  # sub-key of the EVAL stream for episodes, as `minireptile omniglot`


class TaskSource:
    """Base class: ``d_in``, ``d_out``, ``loss`` ("mse" or "ce"), ``eval_steps`` and the two methods."""

    d_in: int
    d_out: int
    loss: str = "mse"
    eval_steps: tuple[int, ...] = DEFAULT_EVAL_STEPS
    n_points: int

    def block_iters(self, meta_batch: int) -> int:
        """Outer iterations per sampled block (about 1024 tasks)."""
        return block_iters_for(meta_batch)

    def train_block(self, seed, b, block_iters, meta_batch, steps, batch, dtype):  # pragma: no cover
        raise NotImplementedError

    def eval_tasks(self, seed, n_tasks, dtype):  # pragma: no cover
        raise NotImplementedError


def _plans(rng, n_tasks, n_points, steps, batch, shape):
    plan = epoch_plan(rng, n_tasks, n_points, steps, batch)
    return plan.reshape(shape + plan.shape[1:])


class SineTasks(TaskSource):
    """Sine-wave regression A·sin(x + b) with a preset's distributions (what ``minireptile sine`` trains on).

    Parameters
    ----------
    preset : str or SinePreset
        "gist" (default), "maml", "reptile-paper", "maml-paper" or a :class:`SinePreset`.
    """

    d_in = d_out = 1

    def __init__(self, preset="gist"):
        self.preset = preset if isinstance(preset, SinePreset) else get_preset(preset)
        self.n_points = self.preset.n_train_points()
        self.eval_steps = self.preset.eval_schedule()

    def __repr__(self):
        return f"SineTasks({self.preset.name!r})"

    def train_block(self, seed, b, block_iters, meta_batch, steps, batch, dtype):
        return sine_block(seed, b, block_iters, meta_batch, self.preset, steps, batch, dtype)

    def eval_tasks(self, seed, n_tasks, dtype):
        t = sine_eval_tasks(stream_rng(seed, EVAL), n_tasks, self.preset, dtype)
        return t.x_shots, t.y_shots, t.x_grid, t.y_grid


class FamilyTasks(TaskSource):
    """torchmeta's regression families (1-D inputs): support points, then query points per task.

    Parameters
    ----------
    name : {"sinusoid", "harmonic", "sinusoid-and-line"} or a sine preset name
    noise_std : float
        Gaussian noise on every target (torchmeta's ``noise_std``).
    n_points : int
        Points per training task (the inner loop draws minibatches from them).
    shots, n_eval : int
        Held-out tasks: adapt on ``shots`` points, score on ``n_eval`` others.
    """

    d_in = d_out = 1

    def __init__(self, name: str, noise_std: float = 0.0, n_points: int = 20, shots: int = 10, n_eval: int = 10):
        self.family = TaskFamily(name, check.step_size("noise_std", noise_std, allow_zero=True))
        self.n_points = check.count("n_points", n_points)
        self.shots = check.count("shots", shots)
        self.n_eval = check.count("n_eval", n_eval)

    def __repr__(self):
        return f"FamilyTasks({self.family.name!r}, noise_std={self.family.noise_std})"

    def train_block(self, seed, b, block_iters, meta_batch, steps, batch, dtype):
        X, Y = family_block(self.family, seed, b, block_iters, meta_batch, self.n_points, dtype)
        plans = _plans(stream_rng(seed, TRAIN, b, 1), block_iters * meta_batch, self.n_points, steps, batch,
                       (block_iters, meta_batch))
        return X, Y, plans

    def eval_tasks(self, seed, n_tasks, dtype):
        return family_eval_tasks(self.family, seed, n_tasks, self.shots, self.n_eval, dtype)


class EpisodeTasks(TaskSource):
    """N-way K-shot classification episodes drawn from labelled arrays (Omniglot or any data set).

    Parameters
    ----------
    vectors : ndarray, shape (n_examples, d_in)
        Meta-training examples (e.g. flattened images).
    labels : ndarray of int, shape (n_examples,)
        Their class ids (any integers, renumbered 0 … n_classes-1 in increasing order; each class
        needs ``train_shots`` examples, and ``shots + queries`` for evaluation).
    ways, shots, queries : int
        Classes per episode, support and query examples per class of held-out episodes.
    train_shots : int, optional
        Support examples per class of training episodes (default ``shots``).
    test_vectors, test_labels : ndarray, optional
        Held-out classes for :meth:`Reptile.evaluate` (default: the training arrays).
    replacement : bool
        Inner minibatches drawn independently (True) or as shuffled epochs (default).
    """

    loss = "ce"

    def __init__(self, vectors, labels, ways: int = 5, shots: int = 1, queries: int = 5, train_shots=None,
                 test_vectors=None, test_labels=None, replacement: bool = False):
        self.ways, self.shots, self.queries = (check.count(n, v) for n, v in
                                               (("ways", ways), ("shots", shots), ("queries", queries)))
        self.train_shots = self.shots if train_shots is None else check.count("train_shots", train_shots)
        self.vectors, self.labels = check.labelled_arrays_arg(vectors, labels, "vectors", "labels")
        if test_vectors is None and test_labels is None:
            self.test_vectors, self.test_labels = self.vectors, self.labels
        else:
            self.test_vectors, self.test_labels = check.labelled_arrays_arg(test_vectors, test_labels,
                                                                            "test_vectors", "test_labels")
            if self.test_vectors.shape[1] != self.vectors.shape[1]:
                raise ValueError(f"test_vectors: expected shape (n_examples, d_in={self.vectors.shape[1]}), "
                                 f"got {self.test_vectors.shape}")
        # any integers: renumbered 0 … n_classes-1 in increasing order (unchanged when they already are)
        self.labels = np.unique(self.labels, return_inverse=True)[1].reshape(-1).astype(np.int64)
        self.test_labels = np.unique(self.test_labels, return_inverse=True)[1].reshape(-1).astype(np.int64)
        self.replacement = bool(replacement)
        self.d_in, self.d_out = self.vectors.shape[1], self.ways
        self.n_points = self.ways * self.train_shots
        self._cast = {}
        self.eval_steps = (0, 1, 2, 3, 5, 10)

    def __repr__(self):
        return f"EpisodeTasks({self.ways}-way {self.shots}-shot, {self.vectors.shape[0]} examples)"

    def _as(self, which: str, dtype):
        key = which, np.dtype(dtype)
        if key not in self._cast:
            self._cast[key] = np.ascontiguousarray(getattr(self, which), dtype=dtype)
        return self._cast[key]

    def block_iters(self, meta_batch):
        return episode_block_iters(meta_batch, self.n_points, self.d_in)

    def train_block(self, seed, b, block_iters, meta_batch, steps, batch, dtype):
        cfg = EpisodeConfig(self.ways, self.train_shots, steps, batch, self.replacement)
        return episode_train_block(seed, b, block_iters, meta_batch, self._as("vectors", dtype), self.labels, cfg)

    def eval_tasks(self, seed, n_tasks, dtype):
        ep = sample_episodes(stream_rng(seed, EVAL, EVAL_EPISODES), self.test_labels, n_tasks, self.ways,
                             self.shots, self.queries)
        v = self._as("test_vectors", dtype)
        return gather(v, ep.support), ep.support_labels, gather(v, ep.query), ep.query_labels


class ArrayTasks(TaskSource):
    """Your own tasks as arrays: a stack of tasks, each with its points.

    Parameters
    ----------
    X : ndarray, shape (n_tasks, n_points, d_in)
    Y : ndarray, shape (n_tasks, n_points, d_out) of float targets (regression, loss "mse"), or
        (n_tasks, n_points) of integer labels in [0, n_classes) (classification, loss "ce")
    shots : int, optional
        For evaluation: adapt on ``shots`` points of each task (a random subset, fixed by the seed),
        score on the others. Default: half the points.

    Training draws tasks uniformly with replacement; evaluation uses every task once (``n_tasks``
    of :meth:`Reptile.evaluate` may ask for fewer: the first ones; more is a ValueError).
    """

    def __init__(self, X, Y, shots=None):
        self.X, self.Y = check.task_stack_arg(X, Y)
        n_tasks, self.n_points, self.d_in = self.X.shape
        self.loss = "ce" if self.Y.ndim == 2 else "mse"
        self.d_out = int(self.Y.max()) + 1 if self.loss == "ce" else self.Y.shape[2]
        if self.loss == "ce" and self.d_out < 2:
            raise ValueError(f"Y: expected integer labels of at least 2 classes, got only label {self.d_out - 1}")
        self.shots = check.shots_arg(shots, self.n_points)

    def __repr__(self):
        return f"ArrayTasks({self.X.shape[0]} tasks of {self.n_points} points, loss {self.loss!r})"

    def train_block(self, seed, b, block_iters, meta_batch, steps, batch, dtype):
        rng = stream_rng(seed, TRAIN, b)
        n = block_iters * meta_batch
        pick = rng.integers(0, self.X.shape[0], size=n)
        shape = (block_iters, meta_batch)
        X = np.ascontiguousarray(self.X[pick], dtype=dtype).reshape(shape + self.X.shape[1:])
        Y = self.Y[pick] if self.loss == "ce" else np.ascontiguousarray(self.Y[pick], dtype=dtype)
        return X, Y.reshape(shape + self.Y.shape[1:]), _plans(rng, n, self.n_points, steps, batch, shape)

    def eval_tasks(self, seed, n_tasks, dtype):
        if n_tasks is not None and n_tasks > self.X.shape[0]:
            raise ValueError(f"n_tasks: expected at most {self.X.shape[0]} (the tasks given), got {n_tasks}")
        n_tasks = self.X.shape[0] if n_tasks is None else n_tasks
        order = np.argsort(stream_rng(seed, EVAL).random((n_tasks, self.n_points)), axis=1, kind="stable")
        X = np.take_along_axis(self.X[:n_tasks], order[..., None], axis=1)
        Y = np.take_along_axis(self.Y[:n_tasks], order if self.loss == "ce" else order[..., None], axis=1)
        X = np.ascontiguousarray(X, dtype=dtype)
        Y = np.ascontiguousarray(Y) if self.loss == "ce" else np.ascontiguousarray(Y, dtype=dtype)
        k = self.shots
        return (np.ascontiguousarray(X[:, :k]), np.ascontiguousarray(Y[:, :k]),
                np.ascontiguousarray(X[:, k:]), np.ascontiguousarray(Y[:, k:]))


class SamplerTasks(TaskSource):
    """Your own task distribution as a callable that draws one task: ``sample(rng) -> (X, Y)``.

    Parameters
    ----------
    sample : callable
        ``sample(rng)`` with a numpy Generator returns X (n_points, d_in) and Y (n_points, d_out)
        float targets or (n_points,) integer labels; every call the same shapes. All its randomness
        must come from ``rng`` (then a seed fixes every task).
    shots : int, optional
        For evaluation: adapt on the first ``shots`` points of a drawn task, score on the rest.
        Default: half the points.
    n_classes : int, optional
        For labels: the number of classes (default: found from the first task, at least 2).
    """

    def __init__(self, sample, shots=None, n_classes=None):
        if not callable(sample):
            raise TypeError(f"sample: expected a callable rng -> (X, Y), got {type(sample).__name__}")
        self.sample = sample
        X, Y = check.sampled_task_arg(sample(stream_rng(0, TRAIN, 2**31)), None)   # a probe: learns the shapes
        self.n_points, self.d_in = X.shape
        self.loss = "ce" if Y.ndim == 1 else "mse"
        if self.loss == "ce":
            self.d_out = check.count("n_classes", n_classes, 2) if n_classes is not None else max(2, int(Y.max()) + 1)
        else:
            self.d_out = Y.shape[1]
        self.shape = (X.shape, Y.shape)
        self.shots = check.shots_arg(shots, self.n_points)

    def __repr__(self):
        return f"SamplerTasks({getattr(self.sample, '__name__', 'sampler')}, {self.n_points} points, loss {self.loss!r})"

    def _draw(self, rng, n, dtype):
        tasks = [check.sampled_task_arg(self.sample(rng), self.shape, self.d_out if self.loss == "ce" else None)
                 for _ in range(n)]
        X = np.ascontiguousarray(np.stack([t[0] for t in tasks]), dtype=dtype)
        Y = np.stack([t[1] for t in tasks])
        return X, (np.ascontiguousarray(Y, dtype=np.int64) if self.loss == "ce"
                   else np.ascontiguousarray(Y, dtype=dtype))

    def train_block(self, seed, b, block_iters, meta_batch, steps, batch, dtype):
        rng = stream_rng(seed, TRAIN, b)
        n = block_iters * meta_batch
        X, Y = self._draw(rng, n, dtype)
        shape = (block_iters, meta_batch)
        return (X.reshape(shape + X.shape[1:]), Y.reshape(shape + Y.shape[1:]),
                _plans(rng, n, self.n_points, steps, batch, shape))

    def eval_tasks(self, seed, n_tasks, dtype):
        X, Y = self._draw(stream_rng(seed, EVAL), n_tasks, dtype)
        k = self.shots
        return (np.ascontiguousarray(X[:, :k]), np.ascontiguousarray(Y[:, :k]),
                np.ascontiguousarray(X[:, k:]), np.ascontiguousarray(Y[:, k:]))


def as_task_source(tasks) -> TaskSource:
    """A :class:`TaskSource` from what a user passes.

    Parameters
    ----------
    tasks : str, TaskSource, (X, Y) tuple of arrays, or callable
        A sine preset name ("gist", …) or torchmeta family name ("sinusoid", …); a source object;
        a stack of tasks ``(X (n_tasks, n_points, d_in), Y)`` (:class:`ArrayTasks`); or a sampler
        ``rng -> (X, Y)`` of one task (:class:`SamplerTasks`).
    """
    if isinstance(tasks, TaskSource):
        return tasks
    if isinstance(tasks, str):
        if tasks in PRESETS:
            return SineTasks(tasks)
        if tasks in TORCHMETA_FAMILIES:
            return FamilyTasks(tasks)
        raise ValueError(f"tasks: expected a sine preset {tuple(PRESETS)} or a torchmeta family "
                         f"{TORCHMETA_FAMILIES}, got {tasks!r}")
    if isinstance(tasks, tuple) and len(tasks) == 2:
        return ArrayTasks(*tasks)
    if callable(tasks):
        return SamplerTasks(tasks)
    raise TypeError(f"tasks: expected a preset or family name, a TaskSource, a tuple (X (n_tasks, n_points, d_in), "
                    f"Y) of arrays or a callable rng -> (X, Y), got {type(tasks).__name__}")
