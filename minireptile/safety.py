"""Touch nothing but a run's own files: the folder lock, temporary files, output paths.

- **The lock** ``FOLDER/.minireptile.lock`` is opened without following a symlink and must be a
  regular file; it holds the owner's pid and host. :func:`check_lock` reads it back
  before every checkpoint write: a run whose lock was removed, replaced by another run's (also where
  ``flock`` does nothing, as on some NFS mounts) or whose folder was moved away stops with
  :class:`LockLostError` instead of writing.
- **Temporary files** of atomic writes are named ``.NAME.PID.XXXXXXXX.tmp`` (:func:`temp_prefix`);
  :func:`remove_stale_temps` deletes only files of that form whose process is gone on this host.
- **Output paths** (:func:`check_output_file`): a path that exists must be a regular file, and is
  never a lock or a minireptile checkpoint (so ``--json``, a plot or ``Reptile.save`` cannot replace a
  run's checkpoint, a device or a FIFO).
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import zipfile
from pathlib import Path

LOCK_NAME = ".minireptile.lock"
CHECKPOINT_FORMAT = "minireptile-checkpoint"   # the ``format`` field of every checkpoint (:mod:`minireptile.checkpoint`)
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]{8}\.tmp$")


class LockLostError(OSError):
    """The run's folder lock is gone or belongs to another process: the run stops without writing."""


# ---------------------------------------------------------------------------------------------------------
# temporary files
# ---------------------------------------------------------------------------------------------------------
def temp_prefix(name: str) -> str:
    """Prefix of this process's temporary files for the target ``name`` (for ``tempfile.mkstemp``)."""
    return f".{name}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True   # exists (another user's) or cannot be told: keep its files
    return True


def remove_stale_temps(folder) -> list[Path]:
    """Delete the temporary files minireptile left in ``folder`` whose process is gone; return them.

    Only names of the form :func:`temp_prefix` + 8 characters + ``.tmp`` are considered: a user's
    ``.notes.tmp`` is never touched, nor the file of a live process.
    """
    removed = []
    for path in Path(folder).glob(".*.tmp"):
        m = _TEMP.match(path.name)
        if m is None or _alive(int(m.group("pid"))) or not path.is_file() or path.is_symlink():
            continue
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


# ---------------------------------------------------------------------------------------------------------
# the folder lock
# ---------------------------------------------------------------------------------------------------------
def _owner_text() -> str:
    return f"{os.getpid()}\n{socket.gethostname()}\n"


def open_lock(folder: Path) -> int:
    """Open (create) ``folder/.minireptile.lock`` for reading and writing, never through a symlink.

    Raises OSError with a message naming the lock when it is a symlink, a FIFO or anything but a
    regular file.
    """
    path = Path(folder) / LOCK_NAME
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        if os.path.islink(path):
            raise OSError(exc.errno, f"the lock {str(path)!r} is a symbolic link; remove it (minireptile never "
                          "follows a link to its lock)") from None
        raise OSError(exc.errno, f"cannot open the lock {str(path)!r} ({exc.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"the lock {str(path)!r} is not a regular file (a FIFO, a device or a folder); remove it")
    return fd


def write_owner(fd: int) -> None:
    """Write this process's pid and host into the lock ``fd`` (what :func:`check_lock` expects)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, _owner_text().encode(), 0)


def lock_owner(fd: int) -> str:
    """The pid written in a lock (``"unknown"`` if none)."""
    try:
        text = os.pread(fd, 256, 0).decode(errors="replace")
    except OSError:
        return "unknown"
    return (text.splitlines() or ["unknown"])[0].strip() or "unknown"


def lock_identity(folder) -> tuple[int, int] | None:
    """(device, inode) of ``folder/.minireptile.lock`` (not following a link), or None if there is none."""
    try:
        st = os.stat(Path(folder) / LOCK_NAME, follow_symlinks=False)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_lock(folder, fd: int | None = None, identity: tuple[int, int] | None = None) -> None:
    """LockLostError unless ``folder/.minireptile.lock`` is still this process's (its pid and host; with
    ``fd``, the lock's descriptor, or ``identity``, its :func:`lock_identity`, also the same file).

    Called before every checkpoint write: a lock removed, replaced, or left behind with a folder that
    was moved away means another run may own the folder now, so nothing more is written.
    """
    path = Path(folder) / LOCK_NAME
    problem = None
    try:
        st = os.stat(path, follow_symlinks=False)
        if fd is not None:
            mine = os.fstat(fd)
            identity = mine.st_dev, mine.st_ino
        if identity is not None and (st.st_dev, st.st_ino) != tuple(identity):
            problem = "was replaced by another file"
        if problem is None:
            with open(path, "rb") as f:
                text = f.read(256).decode(errors="replace")
            if text != _owner_text():
                owner = (text.splitlines() or ["unknown"])[0].strip() or "unknown"
                problem = f"now belongs to another run (pid {owner})"
    except FileNotFoundError:
        problem = "is gone (removed, or the folder was moved)"
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror})"
    if problem:
        raise LockLostError(f"the lock of the output folder {str(folder)!r} {problem}: this run stopped without "
                            "writing more, so it cannot overwrite another run's files; start it again (with "
                            "--resume if a checkpoint is left)")


# ---------------------------------------------------------------------------------------------------------
# output paths
# ---------------------------------------------------------------------------------------------------------
def is_checkpoint(path) -> bool:
    """Whether ``path`` is a minireptile checkpoint (a .npz whose ``format`` says so); never raises."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as z:
            if "format.npy" not in z.namelist() or z.getinfo("format.npy").file_size > 4096:
                return False
            return CHECKPOINT_FORMAT.encode("utf-32-le") in z.read("format.npy")
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, RuntimeError):
        return False


def _saved_model(path) -> bool:
    """Whether the checkpoint at ``path`` holds a model ``Reptile.save`` wrote (its config's command is
    "Reptile"), not a command-line run's; never raises."""
    import numpy as np

    try:
        with zipfile.ZipFile(path) as z:
            if z.getinfo("config.npy").file_size > 1 << 20:
                return False
            with z.open("config.npy") as f:
                config = json.loads(str(np.lib.format.read_array(f, allow_pickle=False)))
        return isinstance(config, dict) and config.get("command") == "Reptile"
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, RuntimeError, TypeError):
        return False


def output_problem(path, *, checkpoints: str = "refuse") -> str | None:
    """Why ``path`` must not be replaced by an output, or None: not a regular file, a lock, a checkpoint.

    ``checkpoints``: ``"refuse"`` any checkpoint; ``"saved"``: refuse a command-line run's checkpoint
    (wherever it lies) and any checkpoint beside a run's lock, so only a model ``Reptile.save`` wrote
    may be replaced; ``"any"``: allow (a run's own checkpoint slot, which other checks guard).
    """
    path = Path(path)
    if path.name == LOCK_NAME:
        return f"{str(path)!r} is a minireptile lock file, not an output"
    if os.path.lexists(path) and not os.path.exists(path):
        return None   # a dangling symlink: os.replace replaces the link itself
    if path.is_dir():
        return f"{str(path)!r} is a folder; expected a file path"
    if path.exists() and not path.is_file():
        return f"{str(path)!r} is not a regular file (a device or a pipe); expected a file path"
    if checkpoints != "any" and path.is_file() and is_checkpoint(path):
        real = Path(os.path.realpath(path))
        if checkpoints == "refuse" or (real.parent / LOCK_NAME).exists() or not _saved_model(path):
            return f"{str(path)!r} is a minireptile checkpoint; writing there would destroy it (pick another path)"
    return None


def check_output_file(name: str, path, *, checkpoints: str = "refuse") -> None:
    """ValueError ``"NAME: ..."`` if ``path`` is a lock, a checkpoint or not a regular file (see :func:`output_problem`)."""
    problem = output_problem(path, checkpoints=checkpoints)
    if problem:
        raise ValueError(f"{name}: {problem}")
