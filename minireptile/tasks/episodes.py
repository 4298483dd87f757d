"""N-way K-shot episodes from a labelled array data set, sampled on the host as index arrays.

Contract
--------
An episode (a classification task) picks ``ways`` distinct classes, gives them the labels
0 … ways-1 in a random order (a fresh permutation per episode), and draws for each class
``shots`` support examples (what the inner loop trains on) and ``queries`` query examples (what
the adapted network is scored on), all distinct, without replacement. Everything is drawn from a
numpy Generator passed in, vectorised over episodes, as index arrays into the data set, so every
backend sees exactly the same episodes:

    classes          (n, ways)             int64  class id that label j stands for: classes[e, j]
    support          (n, ways*shots)       int64  example indices, label-major (label j's shots at j*shots …)
    support_labels   (n, ways*shots)       int64  in [0, ways)
    query            (n, ways*queries)     int64
    query_labels     (n, ways*queries)     int64

:func:`gather` turns index arrays into the backend inputs ``X (n, pts, d_in)``; the labels are
``Y (n, pts)`` int64 for loss="ce"; :func:`minibatch_plan` makes ``plan (n, steps, batch)``.
:func:`train_block` puts the three together for :func:`minireptile.reptile.meta_train`.

Meta-train and meta-test classes are disjoint by construction: they are two different labelled
sets (see :func:`minireptile.tasks.omniglot.omniglot_split`); this module never mixes them.
Options follow openai/supervised-reptile: meta-train episodes may have more shots than evaluation
ones (``--train-shots``), and minibatches are drawn without replacement (shuffled epochs, which may
straddle an epoch boundary) or with replacement (each minibatch a fresh random subset).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .streams import TRAIN, epoch_plan, stream_rng


@dataclass(frozen=True)
class Episodes:
    """Index arrays of ``n`` episodes (shapes in the module docstring)."""

    classes: np.ndarray
    support: np.ndarray
    support_labels: np.ndarray
    query: np.ndarray
    query_labels: np.ndarray

    @property
    def n(self) -> int:
        return int(self.classes.shape[0])

    @property
    def ways(self) -> int:
        return int(self.classes.shape[1])

    def slice(self, start: int, stop: int) -> "Episodes":
        """Episodes ``start … stop-1``."""
        return Episodes(*(a[start:stop] for a in (self.classes, self.support, self.support_labels,
                                                  self.query, self.query_labels)))


def class_table(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Example indices grouped by class.

    Parameters
    ----------
    labels : ndarray of int, shape (n_examples,)
        Class ids in [0, n_classes); every id in that range must occur.

    Returns
    -------
    table : ndarray of int64, shape (n_classes, max_count)
        ``table[c, :counts[c]]`` are class c's example indices in increasing order; the rest is -1.
    counts : ndarray of int64, shape (n_classes,)
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels: expected a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size == 0 or labels.min() < 0:
        raise ValueError("labels: expected a non-empty array of class ids >= 0")
    if labels.max() >= labels.size:   # then an id below the size is unused: found before bincount allocates max + 1
        unused = int(np.setdiff1d(np.arange(labels.size), labels)[0])
        raise ValueError(f"labels: class ids must be 0 … n_classes-1 without gaps; id {unused} is unused")
    counts = np.bincount(labels).astype(np.int64)
    if (counts == 0).any():
        raise ValueError(f"labels: class ids must be 0 … n_classes-1 without gaps; id {int(np.argmin(counts))} is unused")
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    table = np.full((len(counts), counts.max()), -1, dtype=np.int64)
    col = np.arange(len(labels)) - np.repeat(starts, counts)
    table[labels[order], col] = order
    return table, counts


def sample_episodes(rng: np.random.Generator, labels: np.ndarray, n: int, ways: int, shots: int,
                    queries: int = 0, permute_labels: bool = True) -> Episodes:
    """Draw ``n`` N-way K-shot episodes.

    Parameters
    ----------
    rng : numpy.random.Generator
        The only source of randomness.
    labels : ndarray of int, shape (n_examples,)
        Class id of every example of the data set (ids 0 … n_classes-1, no gaps).
    n : int
        Number of episodes.
    ways : int
        Classes per episode, <= n_classes.
    shots, queries : int
        Support and query examples per class; ``shots + queries`` must not exceed the smallest
        class.
    permute_labels : bool
        True (default): a fresh random label permutation per episode. False: label j is the
        episode's j-th smallest class id (a fixed order; useful only to show why permuting matters).

    Returns
    -------
    Episodes
    """
    for name, value, low in (("n", n, 1), ("ways", ways, 2), ("shots", shots, 1), ("queries", queries, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    table, counts = class_table(labels)
    n_classes = len(counts)
    if ways > n_classes:
        raise ValueError(f"ways: {ways} classes per episode but the data set has only {n_classes}")
    per_class = shots + queries
    if per_class > counts.min():
        raise ValueError(f"shots: shots + queries = {per_class} but the smallest class has {int(counts.min())} examples")
    # classes: the first `ways` of a random order over all classes, then sorted -> (n, ways)
    chosen = np.sort(np.argsort(rng.random((n, n_classes)), axis=1)[:, :ways], axis=1)
    # label permutation: label j stands for class chosen[e, perm[e, j]]
    perm = np.argsort(rng.random((n, ways)), axis=1) if permute_labels else np.broadcast_to(np.arange(ways), (n, ways))
    classes = np.take_along_axis(chosen, perm, axis=1)                          # (n, ways)
    # examples: the first shots+queries of a random order over each class's examples
    keys = rng.random((n, ways, table.shape[1]))
    keys[counts[classes][:, :, None] <= np.arange(table.shape[1])] = np.inf    # padding sorts last
    pick = np.argsort(keys, axis=2)[:, :, :per_class]                          # (n, ways, shots+queries)
    examples = np.take_along_axis(table[classes], pick, axis=2)                # (n, ways, shots+queries)
    lab = np.broadcast_to(np.arange(ways, dtype=np.int64)[None, :, None], examples.shape)
    flat = lambda a: np.ascontiguousarray(a.reshape(n, -1), dtype=np.int64)  # noqa: E731
    return Episodes(np.ascontiguousarray(classes, dtype=np.int64),
                    flat(examples[:, :, :shots]), flat(lab[:, :, :shots]),
                    flat(examples[:, :, shots:]), flat(lab[:, :, shots:]))


def minibatch_plan(rng: np.random.Generator, n_tasks: int, n_points: int, steps: int, batch: int,
                   replacement: bool = False) -> np.ndarray:
    """Inner-loop minibatch indices into each task's ``n_points`` support points.

    Parameters
    ----------
    rng : numpy.random.Generator
    n_tasks, n_points, steps, batch : int
    replacement : bool
        False: shuffled epochs cut into minibatches (:func:`minireptile.tasks.streams.epoch_plan`; a batch
        may straddle two epochs). True: every minibatch is an independent random subset of
        ``batch`` distinct points (``batch <= n_points``), as supervised-reptile's ``--replacement``.

    Returns
    -------
    plan : ndarray of int64, shape (n_tasks, steps, batch)
    """
    if not replacement:
        return epoch_plan(rng, n_tasks, n_points, steps, batch)
    if batch > n_points:
        raise ValueError(f"batch: {batch} exceeds the {n_points} support points; sampling with replacement "
                         "draws each minibatch as distinct points")
    keys = rng.random((n_tasks, steps, n_points))
    return np.ascontiguousarray(np.argsort(keys, axis=2)[:, :, :batch], dtype=np.int64)


def full_batch_plan(n_tasks: int, n_points: int, steps: int) -> np.ndarray:
    """Every step uses all points in order: int64 (n_tasks, steps, n_points)."""
    return np.ascontiguousarray(np.broadcast_to(np.arange(n_points, dtype=np.int64), (n_tasks, steps, n_points)))


def gather(vectors: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Data of index arrays: ``vectors[index]``, C-contiguous.

    Parameters
    ----------
    vectors : ndarray, shape (n_examples, d_in)
    index : ndarray of int, shape (n, pts)

    Returns
    -------
    ndarray, shape (n, pts, d_in), ``vectors.dtype``
    """
    return np.ascontiguousarray(vectors[index])


@dataclass(frozen=True)
class EpisodeConfig:
    """How meta-training episodes are drawn.

    ways, train_shots : int          classes per episode, support examples per class
    inner_steps, inner_batch : int   plan shape
    replacement : bool               minibatch sampling (see :func:`minibatch_plan`)
    """

    ways: int
    train_shots: int
    inner_steps: int
    inner_batch: int
    replacement: bool = False

    @property
    def n_points(self) -> int:
        return self.ways * self.train_shots


def block_iters_for(meta_batch: int, n_points: int, d_in: int, budget: int = 1 << 24) -> int:
    """Outer iterations per sampled block: about ``budget`` input values (64 MiB of float32) per block."""
    return max(1, budget // (meta_batch * n_points * d_in))


def train_block(seed: int, block: int, block_iters: int, meta_batch: int, vectors: np.ndarray,
                labels: np.ndarray, config: EpisodeConfig):
    """Meta-training tasks of outer iterations ``block*block_iters … (block+1)*block_iters - 1``.

    Depends only on its arguments (generator ``stream_rng(seed, TRAIN, block)``), so a resumed
    run sees the same episodes.

    Parameters
    ----------
    vectors : ndarray, shape (n_examples, d_in)
        Meta-train examples.
    labels : ndarray of int, shape (n_examples,)
        Their class ids.

    Returns
    -------
    X : ndarray, shape (block_iters, meta_batch, ways*train_shots, d_in), ``vectors.dtype``
    Y : ndarray of int64, shape (block_iters, meta_batch, ways*train_shots)
    plans : ndarray of int64, shape (block_iters, meta_batch, inner_steps, inner_batch)
    """
    rng = stream_rng(seed, TRAIN, block)
    n = block_iters * meta_batch
    ep = sample_episodes(rng, labels, n, config.ways, config.train_shots)
    plan = minibatch_plan(rng, n, config.n_points, config.inner_steps, config.inner_batch, config.replacement)
    X = gather(vectors, ep.support)
    shape = (block_iters, meta_batch)
    return (X.reshape(shape + X.shape[1:]), ep.support_labels.reshape(shape + (config.n_points,)),
            plan.reshape(shape + plan.shape[1:]))
