"""Command line: ``minireptile <command>`` (also ``python -m minireptile``).

Each command lives in its own module under :mod:`minireptile.commands` and registers its flags
with ``add_parser(subparsers)``; this file only builds the parser, dispatches, and turns errors into
exit statuses (defined in :mod:`minireptile.commands.common`), each with one line on stderr and no
traceback (docs/errors.md):

    0    success (also a run ended by --stop-after)
    1    the output could not be written (OSError: disk full, permissions)
    2    user error: a bad flag value or combination, an unusable checkpoint, a missing backend
    3    training diverged (DivergenceError): the last finite θ was checkpointed
    130  interrupted by Ctrl-C (SIGINT), 143 by SIGTERM: a checkpoint was written to resume from

BLAS threads: a command runs numpy's BLAS (OpenBLAS, MKL) on one thread unless
``OPENBLAS_NUM_THREADS`` / ``MKL_NUM_THREADS`` say otherwise (:func:`single_threaded_blas`). Its matrix
products are small (scoring a few query images per episode, the NumPy backend's minibatches): a second
BLAS thread gains little there, and on a machine busy with other jobs each product waits for a
descheduled BLAS thread, which made few-shot evaluation several times slower.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from ._version import __version__

EXIT_OK, EXIT_INTERRUPTED = 0, 130


def build_parser() -> argparse.ArgumentParser:
    """The ``minireptile`` parser with every command's subparser (imports the commands)."""
    from .commands import compare, conformance, info, omniglot, sine, sweep
    from .commands.common import Parser
    from .tasks.streams import DEFAULT_SEED

    parser = Parser(prog="minireptile", description="Reptile meta-learning for MLPs in NumPy and Numba.",
                    epilog="Run `minireptile COMMAND --help` for a command's flags. sine, omniglot and compare take "
                    f"--seed (default {DEFAULT_SEED}), --threads, --backend and --quiet; sweep sets --seed and --quiet "
                    "for each of its runs (its --seeds chooses the seeds).")
    parser.add_argument("--version", action="version", version=f"minireptile {__version__}")
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND", parser_class=Parser)
    sine.add_parser(sub)
    omniglot.add_parser(sub)
    compare.add_parser(sub)
    sweep.add_parser(sub)
    info.add_parser(sub)
    conformance.add_parser(sub)
    return parser


BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def single_threaded_blas() -> bool:
    """Default numpy's BLAS to one thread for this process and its children (where not set already).

    BLAS reads these variables once, when numpy is first imported: with numpy already imported (a
    ``main()`` call from Python), nothing is changed. Returns whether the defaults were set.
    """
    if "numpy" in sys.modules:
        return False
    for name in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    return True


def main(argv=None) -> int:
    """Entry point of the ``minireptile`` console script. Returns the exit status (see the module doc).

    A Ctrl-C that escapes everything else (a second one while the first is being reported, during
    startup) is still one line and status 130, never a traceback.
    """
    try:
        return _main(argv)
    except KeyboardInterrupt:
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None  # not cut short again
        try:
            print("minireptile: interrupted", file=sys.stderr)
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, previous)
        return EXIT_INTERRUPTED


def _main(argv=None) -> int:
    """:func:`main` without the last guard against a Ctrl-C.

    Bad flag values make argparse exit via SystemExit(2) after one line on stderr. The commands are
    imported here, not when this module is, so a Ctrl-C while they load is one line and status 130.
    BLAS runs on one thread unless the environment says otherwise (see the module doc).
    """
    single_threaded_blas()
    try:
        parser = build_parser()
        from .commands.common import EXIT_SIGNAL
    except KeyboardInterrupt:
        print("minireptile: interrupted while starting", file=sys.stderr)
        return EXIT_INTERRUPTED
    args = parser.parse_args(argv)
    if args.command is None:  # bare `minireptile`: usage and the list of commands
        parser.print_help()
        return EXIT_OK
    prog = f"minireptile {args.command}"
    handlers = {sig: signal.getsignal(sig) for sig in EXIT_SIGNAL}
    status = _run(prog, args)
    # a run that stopped on a signal leaves later signals quiet while the process exits with its status
    # (a second Ctrl-C then must not end it by the signal instead); any other run restores the handlers
    if status not in EXIT_SIGNAL.values() and threading.current_thread() is threading.main_thread():
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return status


def _run(prog: str, args) -> int:
    from .commands.common import EXIT_DIVERGED, EXIT_IO, EXIT_SIGNAL, EXIT_USAGE, FlagError
    from .errors import BackendUnavailableError, CheckpointError, DivergenceError

    from .commands.outputs import json_on_stdout

    try:
        with json_on_stdout(args):   # --json -: the JSON on stdout, every other line on stderr
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
