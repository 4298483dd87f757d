"""The distributed meta-batch: each outer iteration's tasks adapted on Dask workers, in fixed blocks.

Contract
--------
:func:`distributed_backend` turns a ``dask.distributed.Client`` into a backend that
:func:`minireptile.reptile.meta_train` drives like any other. Each outer iteration of n tasks is cut
into blocks of ``task_block`` tasks (the run's :attr:`~minireptile.config.ReptileConfig.task_block`;
None: one block). Each block is adapted on a worker by the numba backend's ``inner_loop`` (consecutive
blocks are grouped into one Dask task per worker thread, to send fewer messages) and comes back as its
sums over the block's tasks, added in task order: Σφ (P,), Σ loss and, when Adam carries
its state, Σm and Σv. The driver adds the block sums in block order and applies the Reptile update

    θ ← θ + ε·(S / n − θ),   S = s_0 + s_1 + …,   s_k = φ_{kB} + φ_{kB+1} + …   (each sum in order)

which is exactly what the numba backend's ``train_chunk(..., task_block=B)`` computes in one process.
A block's sums depend only on θ and the block's tasks, never on which worker ran it, so θ is bitwise
the same for any number of workers, bitwise equal to the single-process numba run with the same
``task_block``, and equal to the NumPy reference's one-line update to rounding.

What travels: the run's task source — its ``sample_block`` (for sine: a seed and a preset; for an
array data set: the arrays) — is scattered to every worker once; workers sample the blocks of outer
iterations they need themselves (cached, two at a time). Per outer iteration only θ (and a carried
Adam state) goes out and the block sums come back.

Faults: a worker that dies takes its running blocks with it; Dask reschedules them on the others and,
because a block is a pure function of its inputs, the recomputed sums are the same bits. If the
scattered task source itself is lost (every worker holding it died), it is scattered again and the
iteration is recomputed.

Dask is imported only when a cluster is used: importing this module imports neither dask nor numba.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from .. import validation as check
from ..optim import AdamState

#: outer iterations an interrupted round is retried (a lost task source is scattered again)
RETRIES = 3


def task_block_for(meta_batch: int) -> int:
    """Default tasks per reduction block: at most 16 blocks per meta-batch (1 task each up to 16 tasks).

    With one task per block the blocked sum is the plain sum in task order, so runs with meta-batches
    of up to 16 tasks give the same bits as before blocks existed.
    """
    return max(1, -(-meta_batch // 16))


class BlockSums(NamedTuple):
    """A block's sums over its tasks, each in task order: phi (P,), loss (float), m, v (P,) or None."""

    phi: np.ndarray
    loss: float
    m: np.ndarray | None
    v: np.ndarray | None


def _row_sum(rows: np.ndarray) -> np.ndarray:
    """rows[0] + rows[1] + … in order (rows (k, P), k >= 1), as the numba kernel's block sums."""
    out = rows[0].copy()
    for row in rows[1:]:
        out += row
    return out


def block_sums(backend, spec, theta, X, Y, plan, opt, state, bounds) -> list[BlockSums]:
    """Adapt consecutive blocks of tasks in one ``backend.inner_loop`` call; their :class:`BlockSums`.

    X (k, n_points, d_in), Y, plan (k, steps, batch): the blocks' tasks; bounds: each block's
    (start, stop) rows in them, in order; state: the carried Adam state (moments (P,)) or None. A task's
    φ does not depend on the other tasks of the call, so the sums are those of one call per block.
    """
    res = backend.inner_loop(spec, theta, X, Y, plan, opt, state)
    carry = opt.name == "adam" and opt.state_policy == "carry"
    out = []
    for a, z in bounds:
        loss = 0.0
        for value in res.loss[a:z]:
            loss += float(value)
        m, v = (_row_sum(res.state.m[a:z]), _row_sum(res.state.v[a:z])) if carry else (None, None)
        out.append(BlockSums(_row_sum(res.phi[a:z]), loss, m, v))
    return out


class TaskSource:
    """A run's ``sample_block`` as it lives on a worker: blocks sampled there, the last two cached.

    Scattered once per run; a worker's tasks all receive the same instance, so the cache and the
    numba backend are per worker process.
    """

    def __init__(self, sample_block, block_iters: int):
        self.sample_block, self.block_iters = sample_block, block_iters
        self._cache: dict = {}
        self._backend = None

    def __getstate__(self):
        return {"sample_block": self.sample_block, "block_iters": self.block_iters}

    def __setstate__(self, state):
        self.__init__(state["sample_block"], state["block_iters"])

    def block(self, b: int):
        if b not in self._cache:
            if len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            self._cache[b] = check.block_arg(b, self.block_iters, self.sample_block(b))
        return self._cache[b]

    def backend(self):
        if self._backend is None:
            from . import get_backend

            self._backend = get_backend("numba")
        return self._backend


def _adapt_source_blocks(source: TaskSource, b, j, a, z, bounds, spec, theta_state, opt) -> list[BlockSums]:
    """Worker task: the blocks ``bounds`` (rows relative to a) of tasks a … z−1 of row j of sampled block b."""
    X, Y, plans = source.block(b)
    theta, state = theta_state
    return block_sums(source.backend(), spec, theta, X[j, a:z], Y[j, a:z], plans[j, a:z], opt, state, bounds)


def _adapt_arrays(X, Y, plan, bounds, spec, theta_state, opt) -> list[BlockSums]:
    """Worker task: the given tasks (arrays sent with the call) in blocks ``bounds``, adapted from θ."""
    from . import get_backend

    theta, state = theta_state
    return block_sums(get_backend("numba"), spec, theta, X, Y, plan, opt, state, bounds)


def groups_of_blocks(n_tasks: int, B: int, slots: int) -> list[tuple[int, int, list]]:
    """The blocks of B tasks cut into at most ``slots`` runs of consecutive blocks, one Dask task each.

    Returns (a, z, bounds) per Dask task: tasks a … z−1 and each block's rows relative to a. How blocks
    are grouped changes only the number of messages, never a block or the order of the block sums.
    """
    blocks = [(a, min(a + B, n_tasks)) for a in range(0, n_tasks, B)]
    g = max(1, min(slots, len(blocks)))
    cuts = [len(blocks) * k // g for k in range(g + 1)]
    out = []
    for k in range(g):
        part = blocks[cuts[k]:cuts[k + 1]]
        a0 = part[0][0]
        out.append((a0, part[-1][1], [(a - a0, z - a0) for a, z in part]))
    return out


class RemoteRows:
    """Rows j0 … j1−1 of block b of a run's tasks, sampled on the workers (stands in for X, Y and plans).

    :func:`minireptile.reptile.meta_train` hands these to a backend that samples tasks where it runs
    them (see :meth:`DistributedBackend.bind_tasks`); slicing ``[:j]`` keeps the first j rows.
    ``n_tasks`` and ``steps``: the meta-batch size and inner steps of the run's tasks.
    """

    def __init__(self, b: int, j0: int, j1: int, n_tasks: int, steps: int):
        self.b, self.j0, self.j1, self.n_tasks, self.steps = b, j0, j1, n_tasks, steps

    def __len__(self) -> int:
        return self.j1 - self.j0

    def __getitem__(self, index):
        if not (isinstance(index, slice) and index.step is None):
            raise TypeError("RemoteRows: only slices of consecutive rows")
        start, stop, _ = index.indices(len(self))
        return RemoteRows(self.b, self.j0 + start, self.j0 + max(start, stop), self.n_tasks, self.steps)


class DistributedBackend:
    """A backend whose ``train_chunk`` adapts each meta-batch's blocks of tasks on Dask workers.

    Built by :func:`distributed_backend`. ``inner_loop`` and ``warmup`` are the local numba backend's
    (evaluation runs in the driver) and warm the workers too; ``train_chunk`` distributes;
    :meth:`bind_tasks` makes the workers sample tasks themselves, so that only θ travels per iteration.
    """

    name = "distributed"

    def __init__(self, client, local):
        self.client, self.local = client, local
        self.inner_loop = local.inner_loop
        self._source = None          # [TaskSource, its scattered future or None]

    def warmup(self, spec, dtype, opt) -> float:
        """Compile (or load) the numba kernel here and on every worker; the seconds it took."""
        import time

        t = time.perf_counter()
        self.local.warmup(spec, dtype, opt)
        self.client.run(_warm_worker, spec, np.dtype(dtype).name, opt)
        return time.perf_counter() - t

    def bind_tasks(self, sample_block, block_iters: int):
        """Let the workers sample the run's tasks: ``sample_block`` is sent to every worker once.

        Block 0 is sampled here once, to learn the meta-batch's shape. Returns ``rows(b, j0, j1)``,
        which :func:`minireptile.reptile.meta_train` calls instead of sampling block b itself.
        """
        _, _, plans = check.block_arg(0, block_iters, sample_block(0))
        n_tasks, steps = plans.shape[1], plans.shape[2]
        self._source = [TaskSource(sample_block, block_iters), None]

        def rows(b, j0, j1):
            r = RemoteRows(b, j0, j1, n_tasks, steps)
            return r, r, r

        return rows

    def _source_future(self, renew: bool):
        if self._source is None:
            raise ValueError("X: RemoteRows need bind_tasks(sample_block, block_iters) first")
        if self._source[1] is None or renew:   # again after a loss: to one worker (others fetch it from there)
            self._source[1] = self.client.scatter(self._source[0], broadcast=not renew, hash=False)
        return self._source[1]

    def train_chunk(self, spec, theta, X, Y, plans, eps, opt, state=None, task_block=None, *, check_finite=True):
        """``len(eps)`` outer iterations, each iteration's blocks of tasks adapted on the workers.

        As :func:`minireptile.reptile.train_chunk_generic` (same arguments and returns), reduced as the
        module docstring says: bitwise equal to the numba backend's ``train_chunk(...,
        task_block=task_block)``. X, Y, plans are arrays (sent to the workers with each call) or the
        :class:`RemoteRows` of :meth:`bind_tasks` (sampled on the workers).
        """
        if isinstance(X, RemoteRows):
            check.spec(spec)
            check.optimizer(opt)
            theta, _ = check.theta_arg(spec, theta, check_finite)
            eps = check.eps_arg(eps, len(X))
            n_tasks, steps = X.n_tasks, X.steps
            if state is not None:
                state = check.adam_state_arg(state, spec.n_params, None, theta.dtype, check_finite)
        else:
            theta, X, Y, plans, eps, state = check.train_chunk_args(spec, theta, X, Y, plans, eps, opt, state,
                                                                    check_finite)
            n_tasks, steps = plans.shape[1], plans.shape[2]
        B = n_tasks if task_block is None else min(check.count("task_block", task_block), n_tasks)
        dtype = theta.dtype
        carry = opt.name == "adam" and opt.state_policy == "carry"
        state = state if carry else None
        nf = dtype.type(n_tasks)
        losses = np.full(len(eps), np.nan, dtype=np.float64)
        for j in range(len(eps)):
            parts = self._round(spec, theta, state, opt, X, Y, plans, j, n_tasks, B)
            total = parts[0].phi.copy()                     # block sums added in block order
            for part in parts[1:]:
                total += part.phi
            theta = theta + dtype.type(eps[j]) * (total / nf - theta)
            loss = 0.0
            for part in parts:
                loss += part.loss
            losses[j] = loss / n_tasks
            if carry:                                       # the task-mean moments, t advanced by the steps
                m, v = parts[0].m.copy(), parts[0].v.copy()
                for part in parts[1:]:
                    m += part.m
                    v += part.v
                state = AdamState(m / nf, v / nf, (0 if state is None else state.t) + steps)
            if not (np.isfinite(losses[j]) and np.isfinite(theta).all()
                    and (state is None or (np.isfinite(state.m).all() and np.isfinite(state.v).all()))):
                losses[j] = np.nan
                break
        return theta, losses, state

    def _round(self, spec, theta, state, opt, X, Y, plans, j, n_tasks, B):
        """Row j's blocks adapted on the workers: their :class:`BlockSums` in block order.

        A block lost with its worker is recomputed by Dask; if the scattered inputs are lost too, they
        are scattered again and the round is resubmitted (at most RETRIES times).
        """
        client = self.client
        # θ travels inside each block's task (not scattered): a task is then complete in itself, and a
        # worker that dies mid-iteration cannot hold the only copy of an input
        theta_state = (theta, state)
        for attempt in range(RETRIES + 1):
            slots = sum(w.get("nthreads", 1) for w in client.scheduler_info().get("workers", {}).values())
            groups = groups_of_blocks(n_tasks, B, slots)
            if isinstance(X, RemoteRows):
                source = self._source_future(renew=attempt > 0)
                futures = [client.submit(_adapt_source_blocks, source, X.b, X.j0 + j, a, z, bounds, spec,
                                         theta_state, opt, pure=False) for a, z, bounds in groups]
            else:
                futures = [client.submit(_adapt_arrays, X[j, a:z], Y[j, a:z], plans[j, a:z], bounds, spec,
                                         theta_state, opt, pure=False) for a, z, bounds in groups]
            try:
                return [part for parts in client.gather(futures) for part in parts]
            except _lost_errors():
                if attempt == RETRIES:
                    raise


def _warm_worker(spec, dtype_name, opt):
    """Load (or compile) the numba kernel in a worker process (run on every worker by warmup)."""
    from . import get_backend

    return get_backend("numba").warmup(spec, np.dtype(dtype_name), opt)


def _lost_errors() -> tuple:
    """Exceptions meaning a round's inputs were lost with a worker (the round can be recomputed)."""
    import asyncio
    import concurrent.futures

    return (concurrent.futures.CancelledError, asyncio.CancelledError)


def distributed_backend(client) -> DistributedBackend:
    """A backend that adapts each meta-batch's blocks of tasks on the workers of a Dask ``client``.

    Parameters
    ----------
    client : dask.distributed.Client
        Any cluster (:func:`local_client`, ``Client("tcp://host:8786")``, dask-jobqueue, …); its
        workers need minireptile with the numba backend.

    Returns
    -------
    DistributedBackend
        Use it with :func:`minireptile.reptile.meta_train` and a ``ReptileConfig(task_block=B)``: θ is
        bitwise that of ``get_backend("numba")`` with the same config, on any number of workers.
    """
    from . import get_backend

    return DistributedBackend(client, get_backend("numba"))


def local_client(n_workers: int | None = None):
    """A ``dask.distributed.Client`` on a new local cluster of worker processes.

    One single-threaded worker process per core by default (``n_workers``), each running numba with
    one thread (``NUMBA_NUM_THREADS=1``): blocks run in parallel across processes, not inside one.
    Close it with ``client.close()`` and ``client.cluster.close()`` (or use it as a context manager).
    """
    import logging

    from distributed import Client, LocalCluster

    n_workers = os.cpu_count() or 1 if n_workers is None else check.count("n_workers", n_workers)
    env = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    # no dashboard; the scheduler's own HTTP routes on a free port (its default, 8787, may be taken: a warning)
    with _deaf_children():
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": ":0"}, silence_logs=logging.ERROR, env=env)
    return Client(cluster)


class _deaf_children:
    """Start the worker processes ignoring SIGINT, SIGTERM and SIGHUP (they inherit the disposition).

    A terminal's Ctrl-C or a batch system's SIGTERM goes to the whole process group: the workers must
    outlive it so that the driver (which gets it too) finishes its chunk, writes its checkpoint and
    closes the cluster, which ends them (a worker whose driver is gone exits too). While the workers
    start (a few seconds) the driver ignores these signals as well. Only in the main thread
    (elsewhere signals cannot be changed).
    """

    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")

    def __enter__(self):
        import signal
        import threading

        self.saved, self.caught = {}, []
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in self.SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                self.saved[sig] = signal.signal(sig, signal.SIG_IGN)
        return self

    def __exit__(self, *exc):
        import signal

        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        return False
