"""The training-loss history of a run, kept in its checkpoint so a resumed run draws and reports all of it.

:class:`LossHistory` sums the mean inner training loss of each outer iteration into windows of
``every`` iterations (1 up to ``MAX_WINDOWS`` iterations, so the history is bounded: at most
``MAX_WINDOWS`` float64 numbers). Values are added one at a time in iteration order, so the sums do
not depend on how training was cut into chunks or invocations: a run interrupted and resumed has
bitwise the history, figure and JSON ``train_loss`` of the run that was never stopped. A checkpoint
written before histories were kept starts the history at its iteration.
"""

from __future__ import annotations

import numpy as np

MAX_WINDOWS = 65536


class LossHistory:
    """Training loss of iterations ``start`` … ``end - 1`` as float64 sums over windows of ``every`` iterations."""

    def __init__(self, start: int, every: int, sums=()):
        self.start, self.every = int(start), int(every)
        self.sums = [float(v) for v in sums]
        self.end = self.start

    @classmethod
    def for_run(cls, ck: dict | None, iters: int) -> "LossHistory":
        """The history of a run of ``iters`` iterations: the checkpoint's ``ck`` (if resumed), else empty."""
        saved = ck.get("loss_history") if ck is not None else None
        if saved is not None:
            start, every, sums = saved
            history = cls(start, every, sums)
            history.end = ck["iteration"]
            return history
        start = ck["iteration"] if ck is not None else 0
        return cls(start, max(1, -(-iters // MAX_WINDOWS)))

    def add(self, losses) -> None:
        """Append the losses of the next iterations (in order)."""
        for value in np.asarray(losses, dtype=np.float64).tolist():
            w = (self.end - self.start) // self.every
            if w == len(self.sums):
                self.sums.append(0.0)
            self.sums[w] += value
            self.end += 1

    def state(self, iteration: int):
        """``(start, every, sums)`` for :func:`minireptile.checkpoint.save_checkpoint` at ``iteration``, or None
        when the history does not end there (then the checkpoint is written without one)."""
        if iteration != self.end:
            return None
        return self.start, self.every, np.array(self.sums, dtype=np.float64)

    def curve(self, points: int = 300):
        """The loss curve over about ``points`` windows of whole ``every``-windows (see ``Progress.curve``).

        Returns
        -------
        iteration : ndarray of int64, (n,)
            Last iteration (1-based count) of each window.
        loss : ndarray of float64, (n,)
            Mean per-iteration training loss over the window.
        every : int
            Iterations per window.
        """
        full = (self.end - self.start) // self.every
        means = np.array(self.sums[:full], dtype=np.float64) / self.every
        group = max(1, full // points)
        n = full // group
        loss = means[: n * group].reshape(n, group).mean(axis=1)
        every = group * self.every
        return self.start + every * np.arange(1, n + 1, dtype=np.int64), loss, every
