"""Helpers every command shares: exit statuses, flag types, progress, versions.

Run folders, checkpoints, signals and resuming live in :mod:`minireptile.commands.runs`.

Each command module (:mod:`~minireptile.commands.sine`, ``omniglot``, ``compare``) imports what it
needs from here; :mod:`minireptile.cli` only builds the parser and dispatches. Exit statuses
(docs/errors.md):

    0    success (also a run ended by --stop-after)
    1    the output could not be written (OSError: disk full, permissions)
    2    user error: a bad flag value or combination, an unusable checkpoint, a missing backend
    3    training diverged (DivergenceError): the last finite θ was checkpointed
    130  interrupted by Ctrl-C (SIGINT), 143 by SIGTERM, 129 by SIGHUP: a checkpoint was written to resume from
"""

from __future__ import annotations

import argparse
import platform
import signal
import time

import numpy as np

from .._version import __version__
from ..config import ReptileConfig

EXIT_OK, EXIT_IO, EXIT_USAGE, EXIT_DIVERGED = 0, 1, 2, 3
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}

COMMANDS = ("sine", "omniglot", "compare")


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line: ``minireptile: error: argument --x: ...``."""

    def error(self, message):  # noqa: D401 (argparse API)
        self.exit(2, f"{self.prog}: error: {message}\n")


class FlagError(Exception):
    """A flag value that parsed but cannot be used (e.g. conflicts with a checkpoint): exit status 2."""

    def __init__(self, flag: str, message: str):
        super().__init__(f"argument {flag}: {message}")
        self.flag = flag


def int_at_least(minimum: int):
    """Flag type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (value >= 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not (0 <= value < 1):
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


class Progress:
    """Prints a progress line every ``every`` seconds: iteration, ε, running loss, it/s, ETA."""

    def __init__(self, total: int, start: int, config: ReptileConfig, quiet: bool, every: float = 2.0):
        self.total, self.start, self.config, self.quiet, self.every = total, start, config, quiet, every
        self.t0 = self.last = time.perf_counter()
        self.running = None

    def __call__(self, it, theta, losses, state) -> None:
        for value in losses:  # exponential moving average of the inner training loss
            self.running = value if self.running is None else 0.98 * self.running + 0.02 * value
        now = time.perf_counter()
        if self.quiet or (now - self.last < self.every and it < self.total):
            return
        self.last = now
        rate = (it - self.start) / max(now - self.t0, 1e-9)
        eps = self.config.eps0 + (self.config.eps_final - self.config.eps0) * it / self.config.iters
        eta = (self.total - it) / rate if rate > 0 else float("inf")
        print(f"iter {it:>7d}/{self.total}  eps {eps:.4f}  train loss {self.running:.4f}  "
              f"{rate:,.0f} it/s  ETA {eta:.0f}s", flush=True)


def set_threads(flag: str, n: int) -> None:
    """numba.set_num_threads(n), or a FlagError naming ``flag`` if n exceeds numba's thread pool."""
    import numba

    if n > numba.config.NUMBA_NUM_THREADS:
        raise FlagError(flag, f"expected at most {numba.config.NUMBA_NUM_THREADS} threads (NUMBA_NUM_THREADS), got {n}")
    numba.set_num_threads(n)


def versions() -> dict:
    import numba
    import scipy

    return {"minireptile": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "scipy": scipy.__version__, "machine": platform.machine(),
            "processor": platform.processor() or platform.machine()}
