"""Command line: ``minireptile <command>`` (also ``python -m minireptile``).

Each command lives in its own module under :mod:`minireptile.commands` and registers its flags
with ``add_parser(subparsers)``; this file only dispatches and turns errors into exit statuses,
each with one line on stderr and no traceback (docs/errors.md):

    0    success (also a run ended by --stop-after)
    1    the output could not be written (OSError: disk full, permissions)
    2    user error: a bad flag value or combination, an unusable checkpoint, a missing backend
    3    training diverged (DivergenceError): the last finite θ was checkpointed
    130  interrupted by Ctrl-C (SIGINT), 143 by SIGTERM: a checkpoint was written to resume from

:class:`Interruptible` is the safe-interruption guard commands wrap their training loop in.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .errors import BackendUnavailableError, CheckpointError, DivergenceError

EXIT_OK, EXIT_IO, EXIT_USAGE, EXIT_DIVERGED = 0, 1, 2, 3
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}

COMMANDS = ("sine", "omniglot", "compare")


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line: ``minireptile: error: argument --x: ...``."""

    def error(self, message):  # noqa: D401 (argparse API)
        self.exit(2, f"{self.prog}: error: {message}\n")


class FlagError(Exception):
    """A flag value that parsed but cannot be used (e.g. conflicts with a checkpoint): exit status 2."""

    def __init__(self, flag: str, message: str):
        super().__init__(f"argument {flag}: {message}")
        self.flag = flag


class Interruptible:
    """Context manager that turns the first SIGINT/SIGTERM into a request to stop cleanly.

    Inside the ``with`` block the first Ctrl-C (or SIGTERM) only sets :attr:`signum`; the training
    loop polls :meth:`requested` between chunks, writes a checkpoint and returns
    :meth:`exit_status` (130 for SIGINT, 143 for SIGTERM). A second signal raises
    KeyboardInterrupt at once; checkpoints are written atomically, so the file on disk is then the
    old or the new one, never half of one. Outside the main thread (where Python cannot install
    signal handlers) this does nothing.
    """

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _handler(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        try:
            print(f"\n{signal.Signals(signum).name}: stopping after the current chunk and writing a checkpoint "
                  "(press Ctrl-C again to stop at once)", file=sys.stderr, flush=True)
        except RuntimeError:  # stderr was in the middle of a write (a reentrant call): the flag is what counts
            pass

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in EXIT_SIGNAL:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False

    def requested(self) -> bool:
        return self.signum is not None

    def exit_status(self) -> int:
        return EXIT_SIGNAL.get(self.signum, 130)


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


def build_parser() -> argparse.ArgumentParser:
    from .commands import compare, omniglot, sine

    parser = _Parser(prog="minireptile", description="Reptile meta-learning for MLPs in NumPy and Numba.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sine.add_parser(sub)
    omniglot.add_parser(sub)
    compare.add_parser(sub)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``minireptile`` console script. Returns the exit status (see the module doc).

    Bad flag values make argparse exit via SystemExit(2) after one line on stderr.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"minireptile {args.command}"
    try:
        return int(args.run(args) or 0)
    except FlagError as exc:
        return _fail(prog, exc, EXIT_USAGE)
    except (BackendUnavailableError, CheckpointError) as exc:
        return _fail(prog, exc, EXIT_USAGE)
    except DivergenceError as exc:
        return _fail(prog, exc, EXIT_DIVERGED)
    except OSError as exc:
        return _fail(prog, exc, EXIT_IO)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_SIGNAL[signal.SIGINT]


def _fail(prog: str, exc: BaseException, status: int) -> int:
    print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
