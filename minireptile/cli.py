"""Command line: ``minireptile <command>`` (also ``python -m minireptile``).

Each command lives in its own module under :mod:`minireptile.commands` and registers its flags
with ``add_parser(subparsers)``; this file only dispatches. User errors (bad flag values, a
missing optional dependency or device) exit with status 2 and one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import sys

from .errors import BackendUnavailableError

COMMANDS = ("sine", "omniglot")


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line: ``minireptile: error: argument --x: ...``."""

    def error(self, message):  # noqa: D401 (argparse API)
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


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
    from .commands import omniglot, sine

    parser = _Parser(prog="minireptile", description="Reptile meta-learning for MLPs in NumPy and Numba.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sine.add_parser(sub)
    omniglot.add_parser(sub)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``minireptile`` console script. Returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except BackendUnavailableError as exc:
        print(f"minireptile: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
