"""What a command does once training is complete: evaluation with progress, and signals while it runs.

:class:`EvaluationGuard` covers everything after the final checkpoint (evaluation, tables, plots,
JSON). The checkpoint is then complete, so a first Ctrl-C, SIGTERM or SIGHUP stops at once with one
line saying what is saved and that ``--resume`` goes straight to the results (exit 130, 143, 129);
files being written are atomic, so none is left half-written.

:func:`evaluate_in_chunks` evaluates held-out regression tasks a chunk at a time, reporting each chunk
to a :class:`~minireptile.progress.Counter`: per-task results do not depend on the chunks, so the
result is bitwise :func:`~minireptile.evaluation.adapt_and_score` on all tasks at once.
"""

from __future__ import annotations

import signal
import sys
import threading

import numpy as np

from ..evaluation.regression import EvalResult, adapt_and_score, mean_ci95
from .common import EXIT_SIGNAL
from .runs import quote

EVAL_CHUNK = 250   # held-out tasks per backend call (results do not depend on it)


class _Stop(KeyboardInterrupt):
    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class EvaluationGuard:
    """Context manager: a signal during evaluation ends the command with a line naming the saved checkpoint.

    Armed on entry when given ``ckpt_path`` and ``iteration``, else by :meth:`arm` once training is
    complete (before that, signals and KeyboardInterrupt pass through untouched). After the block,
    :attr:`status` is None (it ran to the end) or the exit status of the signal.
    """

    def __init__(self, prog: str, command: str, ckpt_path=None, iteration: int | None = None):
        self.prog, self.command, self.ckpt_path, self.iteration = prog, command, ckpt_path, iteration
        self.status = None
        self.armed = False
        self._previous = {}

    def _handler(self, signum, frame):
        raise _Stop(signum)

    def arm(self, ckpt_path, iteration: int) -> None:
        """From now on a signal stops the command with the message (training is complete in ``ckpt_path``)."""
        self.ckpt_path, self.iteration, self.armed = ckpt_path, iteration, True
        if threading.current_thread() is threading.main_thread():
            for sig in EXIT_SIGNAL:
                self._previous[sig] = signal.signal(sig, self._handler)

    def __enter__(self):
        if self.ckpt_path is not None:
            self.arm(self.ckpt_path, self.iteration)
        return self

    def __exit__(self, kind, exc, tb):
        if not self.armed:
            return False
        stopped = isinstance(exc, KeyboardInterrupt)
        for sig, handler in self._previous.items():   # after a stop a late signal is ignored, as in training
            signal.signal(sig, signal.SIG_IGN if stopped else handler)
        self._previous.clear()
        if not stopped:
            return False
        signum = exc.signum if isinstance(exc, _Stop) else signal.SIGINT
        self.status = EXIT_SIGNAL[signum]
        print(f"\n{self.prog}: {signal.Signals(signum).name} during the evaluation: stopped. Training is complete "
              f"and saved in {self.ckpt_path} (iteration {self.iteration}); `minireptile {self.command} --resume "
              f"{quote(self.ckpt_path)}` goes straight to the evaluation and the results.", file=sys.stderr, flush=True)
        return True


def evaluate_in_chunks(spec, theta, X, Y, X_eval, Y_eval, opt, backend, steps, counter,
                       chunk: int = EVAL_CHUNK) -> EvalResult:
    """:func:`~minireptile.evaluation.adapt_and_score` a chunk of tasks at a time, ``counter.update(n)`` after each.

    X, Y (n_tasks, shots, ·) and X_eval, Y_eval (n_tasks, n_eval, ·) as there; the result is the same, bit for bit.
    """
    n = X.shape[0]
    parts, done_steps = [], tuple(steps)
    for i in range(0, n, chunk):
        j = min(i + chunk, n)
        sl = slice(i, j) if j - i >= 2 else slice(i - 1, j)   # a call needs two tasks; the extra one is dropped
        r = adapt_and_score(spec, theta, X[sl], Y[sl], X_eval[sl], Y_eval[sl], opt, backend, steps)
        parts.append(r.losses[-(j - i):])
        done_steps = r.steps
        counter.update(j - i)
    losses = np.concatenate(parts)
    mean, ci = mean_ci95(losses, axis=0)
    return EvalResult(done_steps, losses, mean, ci)
