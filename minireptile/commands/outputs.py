"""Output paths of a command: checked before any work, and ``--json -`` for standard output.

:func:`check_output_path` is the one check every output path gets (``--json``, the plot, the
checkpoint, ``compare --save``) before a run trains: a folder, a device, a pipe or a file under
``/proc``, ``/sys`` or ``/dev`` is refused, and the folder it goes in must be one this process can
create a file in (tried with a short-lived empty file, as root passes every permission test). Each
problem is a :class:`~minireptile.commands.common.FlagError` naming the flag (exit 2).

``--json -`` writes the JSON summary to standard output and everything else (tables, lines) to
standard error, so ``minireptile sine --json - | jq .eval`` works (:func:`json_on_stdout`,
:func:`write_json`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

from .common import FlagError

STDOUT = "-"
SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")


def is_stdout(path) -> bool:
    """Whether an output flag's value means standard output (``-``)."""
    return path is not None and str(path) == STDOUT


def check_output_path(flag: str, path, *, stdout_ok: bool = False) -> None:
    """FlagError naming ``flag`` unless a regular file can be written at ``path``.

    Refused: a folder, an existing file that is not a regular file (device, pipe, socket), a path
    under /proc, /sys or /dev, a folder that cannot be created, and a folder in which this process
    cannot create a file. ``stdout_ok``: ``-`` means standard output and passes.
    """
    if is_stdout(path):
        if stdout_ok:
            return
        raise FlagError(flag, "'-' (standard output) is not supported here; expected a file path")
    p = Path(path)
    if p.is_dir():
        raise FlagError(flag, f"{str(p)!r} is a folder; expected a file path")
    if p.exists() and not p.is_file():
        raise FlagError(flag, f"{str(p)!r} is not a regular file (a device or a pipe); expected a file path")
    real = os.path.realpath(p)
    for system in SYSTEM_FOLDERS:
        if real == system or real.startswith(system + os.sep):
            raise FlagError(flag, f"{str(p)!r} is under {system}, a system folder; expected a file path in a "
                            "folder of your own")
    folder = p.parent if str(p.parent) else Path(".")
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise FlagError(flag, f"cannot create {str(folder)!r}: {str(probe)!r} is a file, not a folder")
    _try_create(flag, folder, probe)


def _try_create(flag: str, folder: Path, probe: Path) -> None:
    """Create and remove an empty file in ``probe`` (the nearest existing folder of ``folder``)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".minireptile-probe.", suffix=".tmp", dir=probe)
    except OSError as exc:
        where = "" if probe == folder else f" (in {str(probe)!r})"
        raise FlagError(flag, f"cannot write to {str(folder)!r}{where}: {exc.strerror}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def folder_as_given(folder: Path, given) -> Path:
    """``folder`` spelt as the user spelt ``given``'s folder when both are the same folder (so a resumed run
    prints ``runs/sine/checkpoint.npz`` as a first run does, not an absolute path); else ``folder``."""
    parent = Path(given).parent
    try:
        return parent if os.path.samefile(parent, folder) else folder
    except OSError:
        return folder


def check_file_flags(args, out=None, flags=("--json", "--save")) -> None:
    """:func:`check_output_path` for the checkpoint in the output folder ``out`` (named ``--out``, or
    ``--resume`` when the folder is the resumed checkpoint's) and for each of ``flags`` that ``args`` has
    and the user gave (``--json`` may be ``-``): called before a run claims its folder, so a bad path
    leaves nothing behind."""
    if out is not None:
        by = "--resume" if getattr(args, "out", None) is None and getattr(args, "resume", None) is not None else "--out"
        check_output_path(by, Path(out) / "checkpoint.npz")
    for flag in flags:
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is not None:
            check_output_path(flag, value, stdout_ok=flag == "--json")


@contextlib.contextmanager
def json_on_stdout(args):
    """While a command runs with ``--json -``: its prints go to standard error, and ``args.json_stream``
    is the real standard output (for :func:`write_json`). Otherwise nothing changes."""
    if not is_stdout(getattr(args, "json", None)):
        yield
        return
    args.json_stream = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        yield


def write_json(args, summary: dict, file=None) -> None:
    """Write a command's JSON summary to ``--json``: atomically to a file, or to standard output for ``-``.

    Strict JSON (``allow_nan=False``). Prints ``json: PATH`` for a file (to ``file``, default stdout).
    """
    from ..checkpoint import atomic_write

    text = json.dumps(summary, indent=2, allow_nan=False)
    if is_stdout(args.json):
        stream = getattr(args, "json_stream", None) or sys.stdout
        stream.write(text + "\n")
        stream.flush()
        return
    atomic_write(args.json, lambda f: f.write(text.encode()))
    print(f"json: {args.json}", file=file)
