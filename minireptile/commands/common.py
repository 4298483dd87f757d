"""Helpers every command shares: exit statuses, flag types, progress, threads, the visible compile, versions.

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
import glob
import os
import platform
import signal
import time
from pathlib import Path

import numpy as np

from .._version import __version__
from ..progress import Counter, Progress as _Progress  # noqa: F401 (Counter: re-exported for the commands)

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


class Progress(_Progress):
    """Training progress of a command: a tqdm bar on a terminal (with tqdm installed), plain lines
    otherwise, nothing with ``--quiet`` (see :mod:`minireptile.progress`)."""

    def __init__(self, total: int, start: int, config, quiet: bool, every: float = 2.0):
        super().__init__(total, start, config, "off" if quiet else "auto", every)


def progress_mode(args) -> str:
    """"off" with --quiet, else "auto" (a bar on a terminal, lines in logs)."""
    return "off" if getattr(args, "quiet", False) else "auto"


def add_threads_flag(p) -> None:
    """``--threads N`` (every command): threads of the numba backend's parallel loops over tasks."""
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="at most N threads for the numba backend's loop over tasks (default: numba's, one per core; "
                   "fewer while other jobs keep the cores busy); results do not depend on it")


def apply_threads(args) -> None:
    """Apply ``--threads`` (if given) before any parallel work."""
    if getattr(args, "threads", None) is not None:
        set_threads("--threads", args.threads)


def numba_cache_dir() -> tuple[Path, bool]:
    """Where numba caches minireptile's compiled kernels, and whether compiled kernels are there already.

    Found without importing numba (so it can be printed at once): ``NUMBA_CACHE_DIR`` if set, else the
    ``__pycache__`` folder beside the kernels (numba's default when it is writable).
    """
    import hashlib

    pattern = "numba_kernels.*.nbi"
    source_dir = Path(__file__).resolve().parents[1] / "backends"
    if os.environ.get("NUMBA_CACHE_DIR"):  # numba's layout: <dir>/<parent folder>_<sha1 of the source folder>
        sub = f"{source_dir.name}_{hashlib.sha1(str(source_dir).encode()).hexdigest()}"
        where = Path(os.environ["NUMBA_CACHE_DIR"]) / sub
    elif os.access(source_dir, os.W_OK):
        where = source_dir / "__pycache__"
    else:
        where = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "numba"
        return where, bool(glob.glob(str(where / "**" / pattern), recursive=True))
    return where, bool(glob.glob(str(where / pattern)))


def prepare_backend(prog: str, name: str, spec, dtype, opt, quiet: bool):
    """The backend ``name``, compiled for this run: a line before compiling, and one after.

    ``name`` may also be a distributed backend (:mod:`minireptile.backends.distributed`): the numba
    kernels are then compiled here and loaded on its workers.

    The first line says what is compiled, that it happens once, and where the cache lives; it is
    printed before numba is even imported, so a first run never looks hung. Returns
    ``(backend, seconds)``.
    """
    from ..backends import get_backend

    distributed = None if isinstance(name, str) else name   # the distributed meta-batch: numba on workers
    name = "numba" if distributed is not None else name
    say = (lambda text: None) if quiet else (lambda text: print(text, flush=True))
    backend = get_backend(name) if name != "numba" else None  # an unavailable backend fails before any line
    if name == "numba":
        numba_notice(say, prog, spec, dtype, opt)
    elif name == "cuda":
        say(f"{prog}: compiling the CUDA kernels (once per process) ...")
    backend = backend or get_backend(name)
    t = time.perf_counter()
    try:
        backend.warmup(spec, np.dtype(dtype), opt)
    except OSError as exc:
        raise _cache_error(name, exc) from None
    seconds = time.perf_counter() - t
    if name in ("numba", "cuda"):
        say(f"{prog}: kernels ready in {seconds:.1f} s")
    if distributed is not None:
        say(f"{prog}: loading the kernels on the Dask workers ...")
        on_workers = distributed.warmup(spec, np.dtype(dtype), opt)
        say(f"{prog}: kernels ready on the workers in {on_workers:.1f} s")
        seconds += on_workers
        backend = distributed
    return backend, seconds


def numba_notice(say, prog: str, spec, dtype, opt) -> None:
    """The line(s) before the numba kernels are prepared: "compiling" whenever the kernel this run needs
    is not in numba's cache (for this network type, optimizer, dtype and CPU), else "loading".

    With no cache at all the line comes at once; otherwise a first line comes before numba is imported
    (which takes a second or more on a busy machine) and a second one says which of the two it is.
    """
    where, any_cached = numba_cache_dir()
    dt = np.dtype(dtype).name
    what = f"the numba kernels for {spec.activation}/{spec.loss} with {opt.name}, {dt}"
    if not any_cached:
        say(f"{prog}: compiling {what} (once: later runs load them from the cache in {where}) ...")
        return
    say(f"{prog}: looking for {what} in the cache in {where} ...")
    from ..backends.numba_cpu import kernel_cached

    if kernel_cached(spec, dtype, opt) is False:
        say(f"{prog}: compiling them (not in the cache yet for this network type, optimizer, dtype and CPU; "
            "once, then cached) ...")
    else:
        say(f"{prog}: loading them from the cache ...")


def _cache_error(name: str, exc: OSError) -> OSError:
    """An OSError while compiling: numba writes its cache then, so name the cache folder and NUMBA_CACHE_DIR."""
    if name != "numba":
        return exc
    where, _ = numba_cache_dir()
    return OSError(exc.errno, f"cannot write the numba kernel cache in {where} ({exc.strerror or exc}); free space "
                   "there or set NUMBA_CACHE_DIR to a writable folder with room")


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
