"""Checkpoints: atomic .npz files that load without pickle.

A checkpoint holds

    format               "minireptile-checkpoint"
    format_version       1
    minireptile_version  the version that wrote it (informational)
    theta                (P,) float32 or float64, always finite
    config               the run's full configuration as a JSON string
    iteration            outer iterations completed (θ is the parameters after that many)
    status               "running" (periodic), "stopped" (--stop-after), "interrupted" (Ctrl-C,
                         SIGTERM), "diverged" (θ is the last finite one) or "complete"
    adam_m, adam_v, adam_t   the carried Adam moments (P,) and step count, only when Adam state
                         is carried across tasks (``state_policy="carry"``)
    loss_history, loss_history_at   optional: the training loss so far, as float64 sums over windows
                         of ``every`` iterations from iteration ``start`` (``loss_history_at`` =
                         [start, every]; the last window may be partial), so a resumed run draws and
                         reports its whole history. Checkpoints without it load as before.

Random state: none needs saving. Every block of training tasks is regenerated from the run's seed
and the block number (``tasks.stream_rng(seed, TRAIN, block)``), θ0 from ``(seed, INIT)`` and the
evaluation tasks from ``(seed, EVAL)``; the seed is in ``config``. So θ, the iteration, the config
and the optimizer state are the whole state of a run, and a resumed run is bitwise the run that
was never stopped.

Writes go to a temporary file in the target's directory, are flushed and fsynced, then renamed
over the target with ``os.replace``: a reader (or a crash, a full disk, a second Ctrl-C) sees the
old file or the new one, never half of one. Loading uses ``allow_pickle=False`` and checks every
field; anything unexpected raises :class:`~minireptile.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import CheckpointError
from .optim import AdamState
from .safety import CHECKPOINT_FORMAT, temp_prefix

FORMAT = CHECKPOINT_FORMAT
FORMAT_VERSION = 1
STATUSES = ("running", "stopped", "interrupted", "diverged", "complete")


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc/self/status)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, write) -> None:
    """Call ``write(fileobj)`` on a temp file beside ``path``, fsync it, then rename it to ``path``.

    The file gets the permissions ``open`` would give it (0o666 less the umask). An OSError names
    ``path``; on any error the previous file at ``path`` is untouched and the temp file removed.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=directory)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {str(path)!r}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and str(path) not in str(exc):
            raise OSError(exc.errno, f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
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
                    state: AdamState | None = None, *, status: str = "complete", extra: dict | None = None,
                    loss_history: tuple | None = None) -> None:
    """Write a checkpoint atomically.

    Parameters
    ----------
    path : str or Path
    theta : ndarray, shape (P,), float32 or float64, finite
    config : dict
        JSON-serialisable run configuration.
    iteration : int
        Outer iterations completed (>= 0).
    state : AdamState or None
        Carried Adam moments (shape (P,)), if any.
    status : {"running", "stopped", "interrupted", "diverged", "complete"}
    extra : dict of str to ndarray, optional
        More parameter vectors of θ's shape and dtype (finite), stored as ``extra_NAME`` (e.g. the
        models a ``compare`` run has finished).
    loss_history : (start, every, sums), optional
        The training loss of iterations ``start`` … ``iteration - 1`` as float64 sums over windows of
        ``every`` iterations, shape (ceil((iteration - start) / every),).

    Raises
    ------
    ValueError, TypeError
        A bad argument (nothing is written).
    OSError
        The file cannot be written (the previous checkpoint at ``path``, if any, is untouched).
    """
    from ._version import __version__

    theta = np.asarray(theta)
    if theta.ndim != 1 or theta.dtype not in (np.float32, np.float64):
        raise TypeError(f"theta: expected a float32 or float64 array of shape (P,), got {theta.dtype} {theta.shape}")
    if not np.isfinite(theta).all():
        raise ValueError("theta: expected finite values (a checkpoint never holds NaN or inf)")
    if status not in STATUSES:
        raise ValueError(f"status: expected one of {STATUSES}, got {status!r}")
    arrays = {
        "format": np.array(FORMAT),
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "minireptile_version": np.array(__version__),
        "theta": np.ascontiguousarray(theta),
        "config": np.array(json.dumps(config, sort_keys=True)),
        "iteration": np.array(int(iteration), dtype=np.int64),
        "status": np.array(status),
    }
    for name, value in (extra or {}).items():
        value = np.ascontiguousarray(value)
        if not (name.isidentifier() and value.shape == theta.shape and value.dtype == theta.dtype
                and np.isfinite(value).all()):
            raise ValueError(f"extra: {name!r} must be a finite array like theta, got {value.dtype} {value.shape}")
        arrays[f"extra_{name}"] = value
    if loss_history is not None:
        start, every, sums = loss_history
        arrays.update(loss_history=np.ascontiguousarray(sums, dtype=np.float64),
                      loss_history_at=np.array([start, every], dtype=np.int64))
        problem = _history_problem(arrays["loss_history"], arrays["loss_history_at"], int(iteration))
        if problem:
            raise ValueError(f"loss_history: {problem}")
    if state is not None:
        arrays.update(adam_m=np.ascontiguousarray(state.m, dtype=theta.dtype),
                      adam_v=np.ascontiguousarray(state.v, dtype=theta.dtype),
                      adam_t=np.array(int(state.t), dtype=np.int64))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path, *, check_finite: bool = True) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (never unpickles anything).

    Returns
    -------
    dict
        ``theta`` (P,), ``config`` (dict), ``iteration`` (int), ``state`` (AdamState or None),
        ``status`` (str), ``format_version`` (int), ``extra`` (dict), ``loss_history``
        ((start, every, sums) or None, see :func:`save_checkpoint`).

    Raises
    ------
    CheckpointError
        Missing, unreadable, truncated, corrupted, foreign or wrong-version file; the message
        names the file and says what is wrong.
    """
    path = Path(path)
    where = repr(str(path))
    try:
        return _load(path, where, check_finite)
    except CheckpointError:
        raise
    except PermissionError as exc:
        raise CheckpointError(f"checkpoint: cannot read {where} ({exc.strerror})") from None
    except Exception as exc:  # zipfile, zlib, the .npy parser, json: many types on damaged bytes
        raise CheckpointError(f"checkpoint: {where} is truncated, corrupted or not a minireptile checkpoint "
                              f"({type(exc).__name__}: {exc})") from None


REQUIRED = ("format", "format_version", "minireptile_version", "theta", "config", "iteration", "status")
ADAM = ("adam_m", "adam_v", "adam_t")
HISTORY = ("loss_history", "loss_history_at")


def _history_problem(sums: np.ndarray, at: np.ndarray, iteration: int) -> str | None:
    """What is wrong with a loss history (sums, [start, every]) of a checkpoint at ``iteration``, or None."""
    if sums.ndim != 1 or sums.dtype != np.float64 or at.shape != (2,) or at.dtype.kind not in "iu":
        return f"expected float64 sums (n,) and two integers, got {sums.dtype} {sums.shape} and {at.dtype} {at.shape}"
    start, every = int(at[0]), int(at[1])
    if every < 1 or not 0 <= start <= iteration or len(sums) != -(-(iteration - start) // every):
        return (f"{len(sums)} windows of {every} iterations from iteration {start} do not end at iteration "
                f"{iteration}")
    return None


def _scalar_int(data, key, where) -> int:
    a = data[key]
    if a.shape != () or a.dtype.kind not in "iu":
        raise CheckpointError(f"checkpoint: {where} is corrupted: {key} is not an integer ({a.dtype}, shape {a.shape})")
    return int(a)


def _scalar_str(data, key, where) -> str:
    a = data[key]
    if a.shape != () or a.dtype.kind != "U":
        raise CheckpointError(f"checkpoint: {where} is corrupted: {key} is not a text field ({a.dtype}, shape {a.shape})")
    return str(a)


def _load(path: Path, where: str, check_finite: bool) -> dict:
    if not path.is_file():
        raise CheckpointError(f"checkpoint: no file at {where}")
    with open(path, "rb") as f:
        magic = f.read(6)
    if not (magic.startswith(b"PK") or magic == b"\x93NUMPY"):   # else numpy would call it pickled data
        start = f"it starts with {magic!r}" if magic else "it is empty"
        raise CheckpointError(f"checkpoint: {where} is truncated, corrupted or not a minireptile checkpoint (not an "
                              f".npz archive: {start})")
    z = np.load(path, allow_pickle=False)
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise CheckpointError(f"checkpoint: {where} is a single .npy array, not a minireptile checkpoint")
    with z:
        data = {k: z[k] for k in z.files}
    if "format" not in data or data["format"].shape != () or str(data["format"]) != FORMAT:
        raise CheckpointError(f"checkpoint: {where} is not a minireptile checkpoint (no 'format' field "
                              f"saying {FORMAT!r}; it holds {sorted(data)})")
    if "format_version" not in data:
        raise CheckpointError(f"checkpoint: {where} has no readable format version")
    version = _scalar_int(data, "format_version", where)
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint: {where} has format version {version}; this minireptile reads "
                              f"version {FORMAT_VERSION} (use the minireptile version that wrote it)")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint: {where} is corrupted (missing or unreadable field: {', '.join(repr(k) for k in missing)})")
    has_adam = [k in data for k in ADAM]
    if any(has_adam) and not all(has_adam):
        raise CheckpointError(f"checkpoint: {where} is corrupted: the Adam state is incomplete "
                              f"(it has {[k for k in ADAM if k in data]})")
    has_history = [k in data for k in HISTORY]
    if any(has_history) and not all(has_history):
        raise CheckpointError(f"checkpoint: {where} is corrupted: the loss history is incomplete "
                              f"(it has {[k for k in HISTORY if k in data]})")
    unknown = sorted(k for k in set(data) - set(REQUIRED) - set(ADAM) - set(HISTORY) if not k.startswith("extra_"))
    if unknown:
        raise CheckpointError(f"checkpoint: {where} is corrupted: unexpected fields {unknown}")
    _scalar_str(data, "minireptile_version", where)
    try:
        config = json.loads(_scalar_str(data, "config", where))
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"checkpoint: {where} is corrupted (missing or unreadable field: config: "
                              f"{type(exc).__name__})") from None
    iteration = _scalar_int(data, "iteration", where)
    status = _scalar_str(data, "status", where)
    theta = data["theta"]
    state = None
    if all(has_adam):
        state = AdamState(data["adam_m"], data["adam_v"], _scalar_int(data, "adam_t", where))
    problem = None
    if not isinstance(config, dict):
        problem = "its config is not a JSON object"
    elif theta.ndim != 1 or theta.dtype not in (np.float32, np.float64) or theta.size == 0:
        problem = f"theta is not a float32/float64 vector ({theta.dtype}, shape {theta.shape})"
    elif check_finite and not np.isfinite(theta).all():
        problem = "theta holds NaN or inf"
    elif iteration < 0:
        problem = f"iteration is negative ({iteration})"
    elif status not in STATUSES:
        problem = f"status {status!r} is not one of {STATUSES}"
    elif state is not None and not (state.m.shape == state.v.shape == theta.shape and state.t >= 0
                                    and state.m.dtype == state.v.dtype == theta.dtype):
        problem = "the Adam state does not match theta"
    elif state is not None and check_finite and not (np.isfinite(state.m).all() and np.isfinite(state.v).all()):
        problem = "the Adam state holds NaN or inf"
    elif state is not None and (state.v < 0).any():
        problem = "the Adam second moment adam_v holds negative values (a mean of squares never is)"
    extra = {k[len("extra_"):]: data[k] for k in sorted(data) if k.startswith("extra_")}
    for name, value in extra.items():
        if problem is None and not (value.shape == theta.shape and value.dtype == theta.dtype
                                    and (not check_finite or np.isfinite(value).all())):
            problem = f"extra_{name} is not a finite vector like theta ({value.dtype}, shape {value.shape})"
    history = None
    if problem is None and all(has_history):
        problem = _history_problem(data["loss_history"], data["loss_history_at"], iteration)
        if problem is None:
            history = (int(data["loss_history_at"][0]), int(data["loss_history_at"][1]), data["loss_history"])
        else:
            problem = f"loss history: {problem}"
    if problem:
        raise CheckpointError(f"checkpoint: {where} is corrupted: {problem}")
    return {"extra": extra, "theta": theta, "config": config, "iteration": iteration, "state": state, "status": status,
            "format_version": version, "loss_history": history}
