"""Task sampling on the host: sine-wave regression and minibatch index plans.

Contract
--------
Everything random in minireptile happens here (and in ``init_params``), vectorised over tasks,
from numpy Generators passed in or derived from a seed with :func:`stream_rng`. The output is
plain arrays that every backend and every framework peer consumes unchanged:

    X     (n_tasks, n_points, 1)        inputs
    Y     (n_tasks, n_points, 1)        targets A·sin(x + b)
    plan  (n_tasks, steps, batch) int64 minibatch indices into the n_points axis

Seeds: a run's seed is split by purpose with ``SeedSequence(seed, spawn_key=(purpose, ...))``:
init, training blocks (one key per block of outer iterations) and evaluation tasks. Training
and evaluation streams therefore never share random numbers, and block ``b`` of a run can be
regenerated alone, which makes resumed runs see the same tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .streams import TRAIN, epoch_plan, stream_rng


@dataclass(frozen=True)
class SinePreset:
    """A sine-wave protocol: task distribution, training data, network and evaluation.

    Tasks are f(x) = A·sin(x + b), A ~ U(amp_range), b ~ U(phase_range).

    Parameters
    ----------
    name : str
    amp_range, phase_range, x_range : (float, float)
    n_grid : int
        Points of the evaluation grid linspace(x_range, n_grid).
    train_points : int or None
        None: train on the whole grid (the gist); K: K points x ~ U(x_range) per task.
    inner_steps, inner_batch, inner_lr : int, int, float
        Inner loop while meta-training: minibatches drawn as shuffled epochs over the points.
    eval_shots, eval_steps : int
        Evaluation: adapt on ``eval_shots`` points with full-batch steps, measure MSE on the grid.
    eval_at : tuple of int or None
        Step counts the results table reports; None: 0, 1, 2, 4, … up to ``eval_steps``
        (see :meth:`eval_schedule`).
    eval_from_grid : bool
        Evaluation points: ``eval_shots`` distinct grid points, or x ~ U(x_range). (The gist draws its
        plotted task's points with replacement; duplicates waste shots, so minireptile draws distinct ones.)
    hidden, activation : tuple of int, str
    eps0, eps_final, iters, meta_batch : float, float, int, int
        Outer loop.
    """

    name: str
    amp_range: tuple[float, float] = (0.1, 5.0)
    phase_range: tuple[float, float] = (0.0, 2 * math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)
    n_grid: int = 50
    train_points: int | None = None
    inner_steps: int = 5
    inner_batch: int = 10
    inner_lr: float = 0.02
    eval_shots: int = 10
    eval_steps: int = 32
    eval_at: tuple[int, ...] | None = None
    eval_from_grid: bool = True
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    eps0: float = 0.1
    eps_final: float = 0.0
    iters: int = 30000
    meta_batch: int = 1

    def grid(self, dtype=np.float64) -> np.ndarray:
        """Evaluation grid, shape (n_grid,)."""
        return np.linspace(self.x_range[0], self.x_range[1], self.n_grid).astype(dtype)

    def eval_schedule(self) -> tuple[int, ...]:
        """Step counts evaluation reports: ``eval_at``, or 0 and the powers of two below ``eval_steps``, then it."""
        if self.eval_at is not None:
            return tuple(self.eval_at)
        powers = [2**j for j in range(self.eval_steps.bit_length()) if 2**j < self.eval_steps]
        return (0, *powers, self.eval_steps)

    def n_train_points(self) -> int:
        return self.n_grid if self.train_points is None else self.train_points

    def with_(self, **changes) -> "SinePreset":
        """Copy with some fields changed."""
        return replace(self, **changes)


PRESETS: dict[str, SinePreset] = {
    # openai's Reptile sine demo (gist): train on the whole 50-point grid, one shuffled epoch
    # of 5 minibatches of 10, SGD lr 0.02; test on 10 distinct grid points, 32 full-batch steps.
    "gist": SinePreset(name="gist"),
    # Finn et al. 2017's sine distribution: A·sin(x − φ), φ ~ U[0, π], K = 10 points x ~ U[-5, 5],
    # 1-40-40-1 relu. In our form A·sin(x + b) that is b ~ U[−π, 0] (the same sign as cbfinn/maml and
    # torchmeta; b ~ U[0, π] would be its mirror image). Inner loop here: 5 full-batch SGD steps on the
    # K points (lr 0.02); evaluation: K = 10 uniform points, 32 steps, MSE on the 50-point grid.
    "maml": SinePreset(
        name="maml",
        phase_range=(-math.pi, 0.0),
        train_points=10,
        inner_steps=5,
        inner_batch=10,
        eval_from_grid=False,
        hidden=(40, 40),
        activation="relu",
    ),
    # The Reptile paper's sine protocol: A ~ U[0.1, 5], b ~ U[0, 2π]; 10 random points
    # x ~ U[-5, 5] per task; loss measured on the 50-point grid. What the paper leaves open
    # (network, inner/outer step sizes, iterations) is the gist's. Discrepancies: docs/algorithms.md.
    "reptile-paper": SinePreset(
        name="reptile-paper",
        train_points=10,
        inner_steps=5,
        inner_batch=10,
        eval_from_grid=False,
    ),
    # The MAML paper's sine protocol (Finn et al. 2017, §5.1): K = 10, ONE inner SGD step α = 0.01,
    # 1-40-40-1 relu, meta-batch 25, 70000 iterations (outer Adam 1e-3: minireptile.algorithms.maml).
    # cbfinn/maml computes A·sin(x − φ), φ ~ U[0, π]: the same distribution as A·sin(x + b),
    # b ~ U[−π, 0], which is what this range says. Its --update_lr defaults to 1e-3, not the
    # paper's 0.01. With one inner step, Reptile on this preset is joint training (pass
    # --inner-steps). Discrepancies: docs/algorithms.md.
    "maml-paper": SinePreset(
        name="maml-paper",
        phase_range=(-math.pi, 0.0),
        train_points=10,
        inner_steps=1,
        inner_batch=10,
        inner_lr=0.01,
        eval_steps=10,
        eval_at=(0, 1, 5, 10),   # the MAML paper's sine figure and table: 1 and 10 steps; 5 as in `compare`
        eval_from_grid=False,
        hidden=(40, 40),
        activation="relu",
        iters=70000,
        meta_batch=25,
    ),
}


def get_preset(name: str) -> SinePreset:
    """Preset by name (see ``PRESETS``)."""
    if name not in PRESETS:
        raise ValueError(f"preset: expected one of {tuple(PRESETS)}, got {name!r}")
    return PRESETS[name]


def sample_sine_params(rng: np.random.Generator, n_tasks: int, preset: SinePreset):
    """Amplitudes and phases of ``n_tasks`` tasks: two arrays of shape (n_tasks,), float64."""
    amp = rng.uniform(preset.amp_range[0], preset.amp_range[1], size=n_tasks)
    phase = rng.uniform(preset.phase_range[0], preset.phase_range[1], size=n_tasks)
    return amp, phase


def sine_values(amp: np.ndarray, phase: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A·sin(x + b) for per-task A, b (n,) and points x (n, m) or (m,): shape (n, m)."""
    return amp[:, None] * np.sin(x + phase[:, None])


def sample_sine_tasks(
    rng: np.random.Generator, n_tasks: int, preset: SinePreset, steps: int, batch: int, dtype=np.float64
):
    """Training tasks for one meta-batch (or many, flattened): data and minibatch plan.

    Parameters
    ----------
    rng : numpy.random.Generator
    n_tasks : int
    preset : SinePreset
    steps, batch : int
        Inner steps and minibatch size of the plan.
    dtype : {numpy.float32, numpy.float64}

    Returns
    -------
    X : ndarray, shape (n_tasks, n_points, 1)
    Y : ndarray, shape (n_tasks, n_points, 1)
    plan : ndarray of int64, shape (n_tasks, steps, batch)
    """
    from .. import validation as check

    n_tasks, batch = check.count("n_tasks", n_tasks), check.count("batch", batch)
    steps = check.count("steps", steps, minimum=0)
    amp, phase = sample_sine_params(rng, n_tasks, preset)
    if preset.train_points is None:
        x = np.broadcast_to(preset.grid(), (n_tasks, preset.n_grid))
    else:
        x = rng.uniform(preset.x_range[0], preset.x_range[1], size=(n_tasks, preset.train_points))
    y = sine_values(amp, phase, x)
    plan = epoch_plan(rng, n_tasks, x.shape[1], steps, batch)
    X = np.ascontiguousarray(x[..., None], dtype=dtype)
    Y = np.ascontiguousarray(y[..., None], dtype=dtype)
    return X, Y, plan


def block_iters_for(meta_batch: int) -> int:
    """Outer iterations per sampled block: about 1024 tasks per block, at least one iteration."""
    return max(1, 1024 // meta_batch)


def sine_block(seed: int, block: int, block_iters: int, meta_batch: int, preset: SinePreset,
               steps: int, batch: int, dtype=np.float64):
    """Tasks of outer iterations ``block*block_iters ... (block+1)*block_iters - 1``.

    Depends only on its arguments (the generator is ``stream_rng(seed, TRAIN, block)``).

    Returns
    -------
    X : ndarray, shape (block_iters, meta_batch, n_points, 1)
    Y : ndarray, shape (block_iters, meta_batch, n_points, 1)
    plans : ndarray of int64, shape (block_iters, meta_batch, steps, batch)
    """
    rng = stream_rng(seed, TRAIN, block)
    X, Y, plan = sample_sine_tasks(rng, block_iters * meta_batch, preset, steps, batch, dtype)
    shape = (block_iters, meta_batch)
    return (X.reshape(shape + X.shape[1:]), Y.reshape(shape + Y.shape[1:]),
            plan.reshape(shape + plan.shape[1:]))


@dataclass(frozen=True)
class SineEvalTasks:
    """Held-out evaluation tasks.

    x_shots, y_shots : (n_tasks, shots, 1)   points to adapt on
    x_grid, y_grid   : (n_tasks, n_grid, 1)  where the MSE is measured
    amp, phase       : (n_tasks,)
    """

    x_shots: np.ndarray
    y_shots: np.ndarray
    x_grid: np.ndarray
    y_grid: np.ndarray
    amp: np.ndarray
    phase: np.ndarray


def sine_eval_tasks(rng: np.random.Generator, n_tasks: int, preset: SinePreset, dtype=np.float64) -> SineEvalTasks:
    """Draw ``n_tasks`` evaluation tasks (fixed by the generator's seed)."""
    from .. import validation as check

    n_tasks = check.count("n_tasks", n_tasks)
    amp, phase = sample_sine_params(rng, n_tasks, preset)
    grid = preset.grid()
    if preset.eval_from_grid:
        # eval_shots distinct grid points per task: the first columns of a random permutation
        keys = rng.random((n_tasks, preset.n_grid))
        x = grid[np.argsort(keys, axis=1, kind="stable")[:, : preset.eval_shots]]
    else:
        x = rng.uniform(preset.x_range[0], preset.x_range[1], size=(n_tasks, preset.eval_shots))
    xg = np.broadcast_to(grid, (n_tasks, preset.n_grid))
    as3 = lambda a: np.ascontiguousarray(a[..., None], dtype=dtype)  # noqa: E731
    return SineEvalTasks(as3(x), as3(sine_values(amp, phase, x)), as3(xg),
                         as3(sine_values(amp, phase, xg)), amp, phase)
