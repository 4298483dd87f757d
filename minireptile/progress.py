"""Progress reporting for training and long evaluations: a tqdm bar, plain lines, or nothing.

Contract
--------
:class:`Progress` is a :func:`minireptile.meta_train` callback. It shows the outer iteration, ε, a
running (exponential moving average) inner training loss, iterations per second and the ETA:

    "bar"    a tqdm bar on stderr (needs tqdm: ``pip install "minireptile[progress]"``)
    "lines"  one plain line on stdout every ``every`` seconds and at the end (logs, CI)
    "off"    nothing (``--quiet``)
    "auto"   "bar" when tqdm is installed and stderr is a terminal, else "lines"

:class:`Counter` does the same for evaluations that take a while (a bar or a line every
``every`` seconds). Neither touches θ or any random stream: reporting never changes a result.
tqdm is imported only when a bar is shown.
"""

from __future__ import annotations

import importlib.util
import sys
import time


MODES = ("auto", "bar", "lines", "off")


def resolve_mode(mode) -> str:
    """``True`` → "auto", ``False``/``None`` → "off"; "auto" → "bar" or "lines" (see the module doc)."""
    if mode is True:
        mode = "auto"
    elif mode is False or mode is None:
        mode = "off"
    if mode not in MODES:
        raise ValueError(f"progress: expected True, False or one of {MODES}, got {mode!r}")
    if mode == "auto":
        tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        mode = "bar" if tty and importlib.util.find_spec("tqdm") is not None else "lines"
    return mode


def format_number(x, digits: int = 4, width: int = 10) -> str:
    """``x`` with ``digits`` decimals, or in scientific notation where that would be wider than ``width``.

    So a huge finite loss reads ``3.560e+16``, not 30 digits that break a table's columns.
    """
    text = f"{x:.{digits}f}"
    return text if len(text) <= width else f"{x:.{max(digits - 1, 1)}e}"


def _bar(total: int, initial: int, desc: str, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                smoothing=0.1)


class Progress:
    """Training progress: ``callback(it, theta, losses, state)`` after each chunk of :func:`meta_train`.

    Parameters
    ----------
    total : int
        Iteration at which the run stops.
    start : int
        Iteration it starts from (a resumed run).
    config : ReptileConfig
        For ε (the schedule over ``config.iters``).
    mode : {"auto", "bar", "lines", "off"} or bool
    every : float
        Seconds between plain lines.

    Attributes
    ----------
    running : float or None
        Exponential moving average (weight 0.02) of the per-iteration mean inner training loss.
    """

    def __init__(self, total: int, start: int, config, mode="auto", every: float = 2.0, desc: str = "train"):
        self.total, self.start, self.config, self.every = total, start, config, every
        self.mode = resolve_mode(mode)
        self.t0 = self.last = time.perf_counter()
        self.running = None
        self.bar = _bar(total, start, desc, "it") if self.mode == "bar" else None
        self.done = start

    def eps(self, it: int) -> float:
        c = self.config
        return c.eps0 + (c.eps_final - c.eps0) * it / c.iters

    def __call__(self, it, theta, losses, state) -> None:
        for value in losses:
            self.running = value if self.running is None else 0.98 * self.running + 0.02 * value
        if self.mode == "off":
            self.done = it
            return
        if self.bar is not None:
            self.bar.update(it - self.done)
            self.done = it
            self.bar.set_postfix_str(f"eps {self.eps(it):.4f}  loss {self.running:.4f}", refresh=False)
            if it >= self.total:
                self.close()
            return
        self.done = it
        now = time.perf_counter()
        if now - self.last < self.every and it < self.total:
            return
        self.last = now
        rate = (it - self.start) / max(now - self.t0, 1e-9)
        eta = (self.total - it) / rate if rate > 0 else float("inf")
        print(f"iter {it:>7d}/{self.total}  eps {self.eps(it):.4f}  train loss {self.running:.4f}  "
              f"{rate:,.0f} it/s  ETA {eta:.0f}s", flush=True)

    def close(self) -> None:
        """End the bar (a no-op for lines); safe to call twice."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Counter:
    """Progress of a long evaluation: ``update(n)`` after each n items (episodes, tasks).

    Parameters
    ----------
    total : int
    desc : str
        What is counted, e.g. "eval meta-learned".
    mode : {"auto", "bar", "lines", "off"} or bool
    every : float
        Seconds between plain lines (none is printed for an evaluation that ends sooner).
    """

    def __init__(self, total: int, desc: str, mode="auto", every: float = 5.0, unit: str = "episode"):
        self.total, self.desc, self.every, self.unit = total, desc, every, unit
        self.mode = resolve_mode(mode)
        self.t0 = self.last = time.perf_counter()
        self.n = 0
        self.bar = _bar(total, 0, desc, unit) if self.mode == "bar" else None

    def update(self, n: int) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
            if self.n >= self.total:
                self.close()
            return
        now = time.perf_counter()
        if self.mode == "lines" and now - self.last >= self.every and self.n < self.total:
            self.last = now
            rate = self.n / max(now - self.t0, 1e-9)
            print(f"{self.desc}: {self.n}/{self.total} {self.unit}s  ETA {(self.total - self.n) / rate:.0f}s",
                  flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
