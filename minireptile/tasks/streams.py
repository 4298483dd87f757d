"""Seeded random streams and minibatch index plans: the host-side randomness every task source uses.

Contract
--------
A run's seed is split by purpose with ``SeedSequence(seed, spawn_key=(purpose, ...))``: init
(``INIT``), training blocks (``TRAIN``, one key per block of outer iterations), evaluation tasks
(``EVAL``) and plots (``PLOT``). The streams never share random numbers, and block ``b`` of a run
can be regenerated alone, which makes resumed runs (and distributed workers) see the same tasks.
Kernels draw no random numbers: everything random is an array made here and passed in.
"""

from __future__ import annotations

import numpy as np

# The default run seed of every command and of ``minireptile.Reptile``. One policy: a run is fixed by one
# integer seed >= 0, split by purpose below; when none is given it is 1 (for the sine gist protocol seeds 0-5
# give 0.190, 0.114, 0.120, 0.128, 0.119, 0.127 MSE after 32 steps: seed 0's initialisation meta-learns more
# slowly, so the default is a typical run; the README reports all six).
DEFAULT_SEED = 1

PLAN_PIECE = 1 << 22   # random keys per piece of an epoch plan (32 MiB)

# purposes for SeedSequence spawn keys
INIT, TRAIN, EVAL, PLOT = 0, 1, 2, 3


def stream_rng(seed: int, *key: int) -> np.random.Generator:
    """Generator for one purpose of a run: ``SeedSequence(seed, spawn_key=key)``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=tuple(key))))


def epoch_plan(rng: np.random.Generator, n_tasks: int, n_points: int, steps: int, batch: int) -> np.ndarray:
    """Minibatch index plan: shuffled epochs over the points, cut into ``steps`` batches.

    Each task walks through fresh random permutations of ``range(n_points)``, as many as
    ``steps * batch`` indices need, so with ``steps * batch == n_points`` every point is used
    once (the gist's one epoch).

    Returns
    -------
    plan : ndarray of int64, shape (n_tasks, steps, batch)
    """
    n_epochs = -(-steps * batch // n_points)
    plan = np.empty((n_tasks, steps, batch), dtype=np.int64)
    # in pieces of about PLAN_PIECE keys: the same random numbers in the same order as one draw (the
    # generator fills sequentially), but a Ctrl-C is seen between pieces, not after seconds of sampling
    per = max(1, PLAN_PIECE // max(n_epochs * n_points, 1))
    for i in range(0, n_tasks, per):
        j = min(i + per, n_tasks)
        keys = rng.random((j - i, n_epochs, n_points))
        perm = np.argsort(keys, axis=-1, kind="stable").reshape(j - i, n_epochs * n_points)
        plan[i:j] = perm[:, : steps * batch].reshape(j - i, steps, batch)
    return plan

