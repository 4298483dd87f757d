"""Checkpoints: atomic .npz files that load without pickle.

A checkpoint holds ``format`` (the string ``"minireptile-checkpoint"``), ``format_version``,
``theta`` (P,), ``config`` (the run's full configuration as a JSON string), ``iteration`` (outer
iterations done) and, when Adam state is carried across tasks, ``adam_m``, ``adam_v`` (P,) and
``adam_t``. Randomness needs no saved state: every block of tasks is regenerated from the run's
seed and the block number (:func:`minireptile.tasks.stream_rng`).

Writes go to a temporary file in the target's directory, are flushed and fsynced, then renamed
over the target with ``os.replace``: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import CheckpointError
from .optim import AdamState

FORMAT = "minireptile-checkpoint"
FORMAT_VERSION = 1


def atomic_write(path, write) -> None:
    """Call ``write(fileobj)`` on a temp file beside ``path``, fsync it, then rename it to ``path``."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save_checkpoint(path, theta: np.ndarray, config: dict, iteration: int,
                    state: AdamState | None = None) -> None:
    """Write a checkpoint atomically.

    Parameters
    ----------
    path : str or Path
    theta : ndarray, shape (P,)
    config : dict
        JSON-serialisable run configuration.
    iteration : int
        Outer iterations completed.
    state : AdamState or None
        Carried Adam moments (shape (P,)), if any.
    """
    arrays = {
        "format": np.array(FORMAT),
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "theta": np.ascontiguousarray(theta),
        "config": np.array(json.dumps(config, sort_keys=True)),
        "iteration": np.array(int(iteration), dtype=np.int64),
    }
    if state is not None:
        arrays.update(adam_m=np.asarray(state.m), adam_v=np.asarray(state.v),
                      adam_t=np.array(int(state.t), dtype=np.int64))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns
    -------
    dict
        ``theta`` (P,), ``config`` (dict), ``iteration`` (int), ``state`` (AdamState or None).

    Raises
    ------
    CheckpointError
        Missing, truncated, corrupted, foreign or wrong-version file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint: no file at {str(path)!r}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"checkpoint: {str(path)!r} is truncated or not a minireptile checkpoint ({exc})") from None
    if "format" not in data or str(data["format"]) != FORMAT:
        raise CheckpointError(f"checkpoint: {str(path)!r} is not a minireptile checkpoint")
    version = int(data.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint: {str(path)!r} has format version {version}; this minireptile reads version {FORMAT_VERSION}"
        )
    try:
        config = json.loads(str(data["config"]))
        theta = data["theta"]
        iteration = int(data["iteration"])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint: {str(path)!r} is corrupted ({exc})") from None
    if theta.ndim != 1 or theta.dtype not in (np.float32, np.float64):
        raise CheckpointError(f"checkpoint: {str(path)!r} has a malformed theta ({theta.dtype}, {theta.shape})")
    state = None
    if "adam_m" in data:
        state = AdamState(data["adam_m"], data["adam_v"], int(data["adam_t"]))
    return {"theta": theta, "config": config, "iteration": iteration, "state": state}
