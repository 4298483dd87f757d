"""Regression task families beyond the core sine sampler, and plans for MAML-style training.

Contract
--------
Host-side sampling only (like :mod:`minireptile.tasks`, whose streams and plans it reuses): every
function takes a numpy Generator and returns plain arrays

    X (n_tasks, n_points, 1)   inputs, i.i.d. from the task's input distribution
    Y (n_tasks, n_points, 1)   targets f_τ(x) (+ Gaussian noise of std ``noise_std``)

so the first K points of a task can be its support set and the rest its query set (as
cbfinn/maml splits one draw of 2K points into ``inputa`` / ``inputb``).

Families (``FAMILIES``):

* any sine preset of ``tasks.PRESETS`` ("maml-paper", "reptile-paper", ...): A·sin(x + b) with the
  preset's ranges, x ~ U(x_range);
* "sinusoid": torchmeta ``Sinusoid`` — A ~ U[0.1, 5], φ ~ U[0, π], x ~ U[−5, 5], y = A·sin(x − φ);
* "harmonic": torchmeta ``Harmonic`` (Lacoste et al. 2018) — μ ~ U[−4, 4], ω ~ U[5, 7],
  b_1, b_2 ~ U[0, 2π], a_1, a_2 ~ N(0, 1), x ~ N(μ, 1), y = a_1 sin(ωx + b_1) + a_2 sin(2ωx + b_2);
* "sinusoid-and-line": torchmeta ``SinusoidAndLine`` (Finn, Xu & Levine 2018) — half the tasks are
  torchmeta sinusoids, half lines y = m·x + c with m, c ~ U[−3, 3], x ~ U[−5, 5].

torchmeta draws its task parameters from one seeded generator and the points from NumPy's global
one, so its streams cannot be reproduced number for number; these samplers reproduce the
distributions. docs/algorithms.md lists every known discrepancy between sources.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .sine import PRESETS, SinePreset, sample_sine_params
from .streams import EVAL, TRAIN, epoch_plan, stream_rng

TORCHMETA_FAMILIES = ("sinusoid", "harmonic", "sinusoid-and-line")


@dataclass(frozen=True)
class TaskFamily:
    """A distribution over 1-D regression tasks.

    Parameters
    ----------
    name : str
        A sine preset name (``tasks.PRESETS``) or one of ``TORCHMETA_FAMILIES``.
    noise_std : float
        Standard deviation of Gaussian noise added to every target (torchmeta's ``noise_std``;
        0 = none).
    """

    name: str
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in FAMILIES:
            raise ValueError(f"family: expected one of {FAMILIES}, got {self.name!r}")
        if isinstance(self.noise_std, bool) or not (math.isfinite(self.noise_std) and self.noise_std >= 0):
            raise ValueError(f"noise_std: expected a finite number >= 0, got {self.noise_std!r}")

    def sample(self, rng: np.random.Generator, n_tasks: int, n_points: int, dtype=np.float64):
        """``n_tasks`` tasks of ``n_points`` points each: X, Y of shape (n_tasks, n_points, 1)."""
        if self.name in PRESETS:
            x, y = _preset_sine(rng, PRESETS[self.name], n_tasks, n_points)
        elif self.name == "sinusoid":
            x, y = _torchmeta_sinusoid(rng, n_tasks, n_points)
        elif self.name == "harmonic":
            x, y = _torchmeta_harmonic(rng, n_tasks, n_points)
        else:
            x, y = _torchmeta_sinusoid_and_line(rng, n_tasks, n_points)
        if self.noise_std > 0:
            y = y + self.noise_std * rng.standard_normal(y.shape)
        return (np.ascontiguousarray(x[..., None], dtype=dtype), np.ascontiguousarray(y[..., None], dtype=dtype))


def _preset_sine(rng, preset: SinePreset, n, m):
    amp, phase = sample_sine_params(rng, n, preset)
    x = rng.uniform(preset.x_range[0], preset.x_range[1], size=(n, m))
    return x, amp[:, None] * np.sin(x + phase[:, None])


def _torchmeta_sinusoid(rng, n, m):
    amp = rng.uniform(0.1, 5.0, size=n)
    phase = rng.uniform(0.0, np.pi, size=n)
    x = rng.uniform(-5.0, 5.0, size=(n, m))
    return x, amp[:, None] * np.sin(x - phase[:, None])          # note the minus, as torchmeta / cbfinn


def _torchmeta_harmonic(rng, n, m):
    domain = rng.uniform(-4.0, 4.0, size=n)
    freq = rng.uniform(5.0, 7.0, size=n)
    phases = rng.uniform(0.0, 2 * np.pi, size=(n, 2))
    amps = rng.standard_normal((n, 2))
    x = domain[:, None] + rng.standard_normal((n, m))
    w = freq[:, None]
    y = amps[:, :1] * np.sin(w * x + phases[:, :1]) + amps[:, 1:] * np.sin(2 * w * x + phases[:, 1:])
    return x, y


def _torchmeta_sinusoid_and_line(rng, n, m):
    # torchmeta marks exactly num_tasks - num_tasks // 2 tasks as sinusoids, in shuffled order
    is_sine = np.zeros(n, dtype=bool)
    is_sine[n // 2:] = True
    is_sine = rng.permutation(is_sine)
    x_s, y_s = _torchmeta_sinusoid(rng, n, m)
    slope = rng.uniform(-3.0, 3.0, size=n)
    intercept = rng.uniform(-3.0, 3.0, size=n)
    x_l = rng.uniform(-5.0, 5.0, size=(n, m))
    y_l = intercept[:, None] + slope[:, None] * x_l
    return np.where(is_sine[:, None], x_s, x_l), np.where(is_sine[:, None], y_s, y_l)


FAMILIES = tuple(PRESETS) + TORCHMETA_FAMILIES


# ---------------------------------------------------------------------------------------------
# plans
# ---------------------------------------------------------------------------------------------
def tail_plan(rng: np.random.Generator, n_tasks: int, n_points: int, steps: int, batch: int) -> np.ndarray:
    """Plan whose last minibatch is disjoint from the others (supervised-reptile's ``--foml-tail``).

    ``batch`` random points per task form the tail (minibatch ``steps``); minibatches
    1 … steps−1 are shuffled epochs over the remaining ``n_points − batch`` points.

    Returns
    -------
    plan : ndarray of int64, shape (n_tasks, steps, batch)
    """
    if steps < 1 or batch < 1:
        raise ValueError(f"steps, batch: expected integers >= 1, got {steps}, {batch}")
    if steps > 1 and n_points <= batch:
        raise ValueError(f"n_points: a disjoint tail needs n_points > batch, got {n_points} <= {batch}")
    perm = np.argsort(rng.random((n_tasks, n_points)), axis=1, kind="stable")
    plan = np.empty((n_tasks, steps, batch), dtype=np.int64)
    plan[:, -1] = perm[:, :batch]
    if steps > 1:
        rest = perm[:, batch:]                                               # (n_tasks, n_points - batch)
        head = epoch_plan(rng, n_tasks, n_points - batch, steps - 1, batch)  # indices into ``rest``
        plan[:, :-1] = np.take_along_axis(rest, head.reshape(n_tasks, -1), axis=1).reshape(head.shape)
    return plan


def support_query_plan(n_tasks: int, shots: int, n_query: int, steps: int):
    """cbfinn/maml's split: ``steps`` full-batch steps on points 0..shots−1, query shots..shots+n_query−1.

    Returns
    -------
    plan : ndarray of int64, shape (n_tasks, steps, shots)
    query : ndarray of int64, shape (n_tasks, n_query)
    """
    plan = np.broadcast_to(np.arange(shots, dtype=np.int64), (n_tasks, steps, shots)).copy()
    query = np.broadcast_to(np.arange(shots, shots + n_query, dtype=np.int64), (n_tasks, n_query)).copy()
    return plan, query


def family_block(family: TaskFamily, seed: int, block: int, block_iters: int, meta_batch: int, n_points: int,
                 dtype=np.float64):
    """Training tasks of outer iterations ``block*block_iters ...``: X, Y (block_iters, meta_batch, n_points, 1).

    Depends only on its arguments (generator ``stream_rng(seed, TRAIN, block)``), so every
    algorithm trained with the same seed sees the same task stream.
    """
    rng = stream_rng(seed, TRAIN, block)
    X, Y = family.sample(rng, block_iters * meta_batch, n_points, dtype)
    shape = (block_iters, meta_batch)
    return X.reshape(shape + X.shape[1:]), Y.reshape(shape + Y.shape[1:])


def family_eval_tasks(family: TaskFamily, seed: int, n_tasks: int, shots: int, n_query: int, dtype=np.float64):
    """Held-out tasks from ``stream_rng(seed, EVAL)``: (X_shots, Y_shots, X_query, Y_query).

    Shapes (n_tasks, shots, 1) and (n_tasks, n_query, 1). The first k < shots shots of a task are
    a k-shot version of the same task (so K = 5 and K = 10 rows score the same tasks).
    """
    X, Y = family.sample(stream_rng(seed, EVAL), n_tasks, shots + n_query, dtype)
    return (np.ascontiguousarray(X[:, :shots]), np.ascontiguousarray(Y[:, :shots]),
            np.ascontiguousarray(X[:, shots:]), np.ascontiguousarray(Y[:, shots:]))
