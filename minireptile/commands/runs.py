"""Runs that own their folder, checkpoint as they go, stop cleanly on a signal and resume bit for bit.

Every training command (``sine``, ``omniglot``, ``compare``) goes through this module, in this order,
before any expensive work (docs/errors.md):

1. :func:`claim_folder` takes an exclusive OS lock on the output folder (``OUT/.minireptile.lock``,
   ``flock``: it dies with the process, so ``kill -9`` leaves no stale lock; a second run on the same
   folder exits 2 at once naming the holder's pid) and removes the temporary files that dead runs
   left behind in it (only names minireptile made; :mod:`minireptile.safety`).
2. :func:`check_outputs` checks that every output path (the checkpoint, ``--json``, the plot, ...) is
   distinct, is not a folder, a device or under /proc, /sys or /dev, and lies in a folder this process
   can create a file in (:func:`minireptile.commands.outputs.check_output_path`).
3. :func:`check_checkpoint_slot` refuses to overwrite the checkpoint of another (or an unfinished)
   run unless it is the one being resumed or ``--overwrite`` was given.
4. :func:`train_with_checkpoints` runs ``meta_train`` writing ``OUT/checkpoint.npz`` at the start,
   every ``--checkpoint-every`` iterations, at ``--stop-after``, on SIGINT/SIGTERM/SIGHUP (exit
   130/143/129) and on a divergence (exit 3). Compiled calls are kept to about a quarter of a second
   (``meta_train(chunk_seconds=...)``), so a second signal stops the run within about a second;
   checkpoint writes are atomic and never cut by that second signal, and the message names the
   iteration actually in the file. Before each write the folder's lock must still be this run's
   (else :class:`~minireptile.safety.LockLostError`, exit 1), and a signal while a block of tasks is
   sampled abandons the sampling at once.

It writes nothing outside the folders the user named (``--out``, the checkpoint's own folder with
``--resume``, the folders of ``--json``/``--save``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .. import safety
from ..budget import available_memory
from ..checkpoint import load_checkpoint, save_checkpoint
from ..errors import CheckpointError, DivergenceError
from ..reptile import meta_train


# The run flags every Reptile command shares -> where a checkpoint's config keeps their value (each
# command adds its own: sine's --inner-steps, omniglot's --inner-iters, ...). With --resume each must be
# left out or equal the checkpoint's value (the run continues with the checkpoint's configuration).
REPTILE_RUN_FLAGS = {
    "iters": ("--iters", lambda c: c["reptile"]["iters"]),
    "meta_batch": ("--meta-batch", lambda c: c["reptile"]["meta_batch"]),
    "inner_batch": ("--inner-batch", lambda c: c["reptile"]["inner_batch"]),
    "inner_lr": ("--inner-lr", lambda c: c["reptile"]["inner"]["lr"]),
    "outer_lr": ("--outer-lr", lambda c: c["reptile"]["eps0"]),
    "outer_lr_final": ("--outer-lr-final", lambda c: c["reptile"]["eps_final"]),
    "optimizer": ("--optimizer", lambda c: c["reptile"]["inner"]["name"]),
    "beta1": ("--beta1", lambda c: c["reptile"]["inner"]["beta1"]),
    "beta2": ("--beta2", lambda c: c["reptile"]["inner"]["beta2"]),
    "adam_state": ("--adam-state", lambda c: c["reptile"]["inner"]["state_policy"]),
}
from .common import EXIT_DIVERGED, EXIT_SIGNAL, FlagError, Parser, nonnegative_int, positive_int
from .outputs import check_output_path, folder_as_given, is_stdout

LOCK_NAME = safety.LOCK_NAME
CHECKPOINT_NAME = "checkpoint.npz"
CHUNK_SECONDS = 0.25   # wall time of one compiled call: a second signal is honoured within about a second


def quote(path) -> str:
    """``path`` quoted for a POSIX shell (for the commands the runs print)."""
    return shlex.quote(str(path))


# ---------------------------------------------------------------------------------------------------------
# signals
# ---------------------------------------------------------------------------------------------------------
class SamplingAborted(BaseException):
    """Raised by :class:`Interruptible` inside :meth:`~Interruptible.abortable` work on the first signal."""


class Interruptible:
    """Context manager that turns the first SIGINT/SIGTERM/SIGHUP into a request to stop cleanly.

    Inside the ``with`` block the first signal only sets :attr:`signum`; the training loop polls
    :meth:`requested` between chunks, writes a checkpoint and returns :meth:`exit_status` (130 for
    SIGINT, 143 for SIGTERM, 129 for SIGHUP). A second signal raises KeyboardInterrupt at once,
    except inside :meth:`critical` (a checkpoint write), where it is deferred to the end of the
    write. Outside the main thread (where Python cannot install signal handlers) this does nothing.
    """

    def __init__(self, message: str = "stopping after the current chunk and writing a checkpoint"):
        self.message = message
        self.signum = None
        self._previous = {}
        self._depth = 0
        self._abortable = 0
        self._hard = False

    def _handler(self, signum, frame):
        if self.signum is not None:
            if self._depth:
                self._hard = True
                return
            raise KeyboardInterrupt
        self.signum = signum
        try:
            print(f"\n{signal.Signals(signum).name}: {self.message} (press Ctrl-C again to stop at once)",
                  file=sys.stderr, flush=True)
        except RuntimeError:  # stderr was in the middle of a write (a reentrant call): the flag is what counts
            pass
        if self._abortable and not self._depth:
            raise SamplingAborted

    def abortable(self):
        """Context manager around pure work (sampling tasks): the first signal abandons it at once by raising
        :class:`SamplingAborted` (the run then stops at its last finished chunk)."""
        outer = self

        class _Abortable:
            def __enter__(self):
                if outer.signum is not None:
                    raise SamplingAborted
                outer._abortable += 1

            def __exit__(self, *exc):
                outer._abortable -= 1
                return False

        return _Abortable()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in EXIT_SIGNAL:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            # after a requested stop the command is on its way out with its status and its message: a late
            # second signal is ignored (SIG_IGN, which Python keeps at exit, unlike its own handlers), so it
            # cannot end the process by the signal instead. The command line restores them for other runs.
            signal.signal(sig, signal.SIG_IGN if self.signum is not None else handler)
        self._previous.clear()
        return False

    def critical(self):
        """Context manager: a second signal inside it stops the run only when it ends."""
        outer = self

        class _Critical:
            def __enter__(self):
                outer._depth += 1

            def __exit__(self, *exc):
                outer._depth -= 1
                if outer._hard and not outer._depth and exc[0] is None:
                    raise KeyboardInterrupt
                return False

        return _Critical()

    def requested(self) -> bool:
        return self.signum is not None

    def exit_status(self) -> int:
        return EXIT_SIGNAL.get(self.signum, 130)


# ---------------------------------------------------------------------------------------------------------
# the output folder
# ---------------------------------------------------------------------------------------------------------
class FolderLock:
    """An exclusive ``flock`` on ``FOLDER/.minireptile.lock``, held until :meth:`release` or process exit."""

    def __init__(self, folder: Path, fd: int):
        self.folder, self._fd = folder, fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)   # closing the descriptor releases the lock
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False


def _writable_folder(flag: str, folder: Path) -> None:
    """FlagError unless ``folder`` exists (or can be created) and this process may write into it."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise FlagError(flag, f"cannot create {str(folder)!r}: {str(probe)!r} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise FlagError(flag, f"cannot write to {str(folder)!r}: permission denied on {str(probe)!r}")


def claim_folder(folder, flag: str = "--out") -> FolderLock:
    """Create ``folder`` if needed, take its lock and remove stale temporary files of dead runs.

    The lock is never opened through a symlink and must be a regular file; only temporary files that
    minireptile named, of processes that are gone, are removed (:mod:`minireptile.safety`).
    Raises FlagError (exit 2) naming ``flag`` when the folder cannot be written or another run holds it.
    """
    import fcntl

    folder = Path(folder)
    if folder.is_symlink() and not folder.exists():
        raise FlagError(flag, f"{str(folder)!r} is a symbolic link to {os.readlink(folder)!r}, which does not exist; "
                        "create that folder or pick another --out")
    _writable_folder(flag, folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = safety.open_lock(folder)
    except OSError as exc:
        detail = exc.strerror if exc.errno is not None else str(exc)
        raise FlagError(flag, f"cannot use {str(folder)!r} as the output folder ({detail})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = safety.lock_owner(fd)
        os.close(fd)
        raise FlagError(flag, f"{str(folder)!r} is in use by another minireptile run (pid {pid}); wait for it to "
                        "end or pick another --out") from None
    try:
        safety.write_owner(fd)
    except OSError as exc:
        os.close(fd)
        raise FlagError(flag, f"cannot write the lock {str(folder / LOCK_NAME)!r} ({exc.strerror}); is the disk "
                        "full?") from None
    safety.remove_stale_temps(folder)   # atomic writes of runs that were killed: no live run owns them
    return FolderLock(folder, fd)


def check_outputs(paths: dict, resume=None) -> None:
    """Every output path distinct, not a folder or device, in a writable folder; FlagError naming the flag.

    ``paths`` maps a label (the flag that chose the path, e.g. ``"--json"``) to a path or a list of
    paths; labels may repeat through lists (the checkpoint and the plot both belong to ``--out``).
    ``resume``: the checkpoint being resumed, which only the run's own checkpoint may replace.
    """
    seen = {}
    if resume is not None:
        seen[os.path.realpath(resume)] = "--resume (the checkpoint being resumed)"
    for flag, items in paths.items():
        for p in (items if isinstance(items, (list, tuple)) else [items]):
            if p is None:
                continue
            check_output_path(flag, p, stdout_ok=flag == "--json")
            if is_stdout(p) and flag == "--json":
                continue
            p = Path(p)
            key = os.path.join(os.path.realpath(p.parent if str(p.parent) else "."), p.name)
            if key in seen and not (flag == "--out" and Path(key).name == CHECKPOINT_NAME):
                other = seen[key]
                raise FlagError(flag, f"{str(p)!r} is also the output of {other}; give each output its own path")
            own = flag == "--out" and p.name == CHECKPOINT_NAME   # the run's own slot: check_checkpoint_slot
            problem = safety.output_problem(p, checkpoints="any" if own else "refuse")
            if problem:
                raise FlagError(flag, problem)
            _writable_folder(flag, p.parent if str(p.parent) else Path("."))
            seen[key] = flag


def add_run_flags(p, default_out: str, checkpoint_every: int, *, out_help: str | None = None,
                  every_help: str | None = None, stop_help: str | None = None) -> None:
    """The flags of a run's folder and checkpoints, the same in every command.

    ``--out``, ``--checkpoint-every``, ``--stop-after``, ``--resume``, ``--overwrite`` and ``--json``;
    the ``*_help`` arguments replace the default help where a command counts iterations differently.
    """
    p.add_argument("--out", type=Path, help=out_help or f"output folder (default {default_out}; with --resume: the "
                   "checkpoint's folder)")
    p.add_argument("--checkpoint-every", type=nonnegative_int, default=checkpoint_every, metavar="N",
                   help=every_help or f"write OUT/checkpoint.npz every N iterations (default {checkpoint_every}; "
                   "0: only at the start and the end)")
    p.add_argument("--stop-after", type=positive_int, metavar="K",
                   help=stop_help or "stop cleanly once K iterations of the run are done (counted from iteration 0, "
                   "also when resuming), write the checkpoint and skip evaluation")
    p.add_argument("--resume", type=Path, metavar="CKPT",
                   help="continue the run saved in CKPT with its configuration (run-defining flags may be "
                   "repeated only with the same values)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the checkpoint of another run in OUT (without it such a folder is refused)")
    p.add_argument("--json", type=Path, metavar="PATH",
                   help="also write a JSON summary to PATH (-: to standard output, with every other line on stderr)")


def check_checkpoint_slot(ckpt_path: Path, resume, overwrite: bool, command: str) -> None:
    """Refuse to replace the checkpoint of another or unfinished run (FlagError naming --out)."""
    ckpt_path = Path(ckpt_path)
    if overwrite or not ckpt_path.exists():
        return
    if resume is not None:
        try:
            if os.path.samefile(ckpt_path, resume):
                return
        except OSError:
            pass
    try:
        ck = load_checkpoint(ckpt_path)
        what = f"status {ck['status']}, iteration {ck['iteration']}"
        unfinished = ck["status"] in ("running", "stopped", "interrupted")
    except CheckpointError:
        what, unfinished = "unreadable", False
    hint = f"continue it with --resume {quote(ckpt_path)}, " if unfinished else ""
    raise FlagError("--out", f"{str(ckpt_path)!r} holds the checkpoint of another run ({what}); {hint}pick a new "
                    "--out, or pass --overwrite to replace it")


def iteration_range(args, ck: dict | None, total: int) -> tuple[int, int]:
    """(start, stop) of this invocation: from the resumed checkpoint's iteration (else 0) up to
    ``--stop-after`` (else ``total``); a FlagError if the checkpoint is already past ``--stop-after``."""
    start = ck["iteration"] if ck is not None else 0
    stop = total if args.stop_after is None else min(args.stop_after, total)
    if stop < start:
        raise FlagError("--stop-after", f"the checkpoint is already at iteration {start}; expected K >= {start}")
    return start, stop


def check_run_outputs(args, ckpt_path: Path, command: str, plot=None, **more) -> None:
    """Every output of a run distinct and writable, and no other run's checkpoint in the way.

    ``plot`` (or None) is written into OUT beside the checkpoint; ``more`` maps further flags
    (e.g. ``{"--save": path}``) to their paths.
    """
    check_outputs({"--out": [ckpt_path, plot], "--json": args.json, **more}, resume=args.resume)
    check_checkpoint_slot(ckpt_path, args.resume, args.overwrite, command)


def resume_folder(resume) -> Path:
    """The folder a resumed run writes to without --out: the checkpoint file's own (real) folder."""
    real = Path(os.path.realpath(resume))
    if not real.is_file():
        raise FlagError("--resume", f"checkpoint: {str(resume)!r} is not a regular file; pass the path of a "
                        "checkpoint (OUT/checkpoint.npz)")
    return real.parent


def load_resume(resume) -> dict:
    """load_checkpoint(resume) for ``--resume``: any problem is a FlagError naming the flag."""
    try:
        ck = load_checkpoint(resume)
    except CheckpointError as exc:
        raise FlagError("--resume", str(exc)) from None
    resume_folder(resume)
    return ck


def resolve_paths(args, default_out: Path) -> tuple[Path, Path]:
    """(output folder, checkpoint path) of a run: ``--out``, else the resumed checkpoint's folder, else the default."""
    if getattr(args, "out", None) is not None:
        out = Path(args.out)
    elif getattr(args, "resume", None) is not None:
        out = folder_as_given(resume_folder(args.resume), args.resume)
    else:
        out = Path(default_out)
    return out, out / CHECKPOINT_NAME


def check_in_dtype(dtype, values: dict) -> None:
    """FlagError naming the flag whose value underflows to 0 or overflows in ``dtype`` (``values``: flag → value)."""
    from .. import validation

    for flag, value in values.items():
        try:
            validation.in_dtype(flag, value, np.dtype(dtype))
        except ValueError as exc:
            raise FlagError(flag, str(exc).split(": ", 1)[1]) from None


def check_memory(terms: dict, limit: int | None = None, args=None) -> None:
    """Refuse a run whose largest arrays would not fit in memory (FlagError naming the biggest term's flag).

    ``terms`` maps a flag to the bytes the arrays it sizes would take. With ``args`` of a resumed run, a
    size the user did not give on the command line is the checkpoint's: the error then names --resume.
    """
    need = sum(terms.values())
    have = available_memory() if limit is None else limit
    if need > have:
        flag = max(terms, key=terms.get)
        message = (f"the run would need about {need / 2**30:,.1f} GiB of memory for its arrays, more than the "
                   f"{have / 2**30:,.1f} GiB available")
        if args is not None and getattr(args, "resume", None) is not None \
                and getattr(args, flag.lstrip("-").replace("-", "_"), None) is None:
            raise FlagError("--resume", f"checkpoint: {str(args.resume)!r}: {message} (its {flag} is too large)")
        raise FlagError(flag, f"{message}; use a smaller value")


# ---------------------------------------------------------------------------------------------------------
# the training loop with checkpoints
# ---------------------------------------------------------------------------------------------------------
def train_with_checkpoints(*, prog: str, command: str, ckpt_path: Path, cfg: dict, spec, theta, state, start: int,
                           stop: int, sample_block, block_iters: int, rcfg, backend, every: int, progress,
                           save=None, train=None, iters: int | None = None, hint: str | None = None,
                           offset: int = 0, total: int | None = None, history=None):
    """Train from ``start`` to ``stop`` with checkpoints, signals and the divergence exit.

    By default ``meta_train`` (Reptile) runs; ``train(theta, state, start, stop, callback,
    chunk_iters, chunk_seconds)`` replaces it (MAML in ``compare``) and must call
    ``callback(it, theta, losses, state)`` after each chunk, stopping when it returns True.

    Returns ``(status, it, theta, state, seconds)``: ``status`` None when the run reached ``iters``
    (default ``rcfg.iters``; go on to evaluate), else the exit status to return (0 after
    --stop-after, 3 on a divergence, 129/130/143 on a signal) after its message was printed.

    ``save(it, theta, state, status)`` writes the checkpoint (default: :func:`save_checkpoint` of
    ``theta`` with ``cfg`` to ``ckpt_path``). ``offset``/``total``: iterations shown in messages
    are ``offset + it`` of ``total`` (a command that trains several models in one run).
    ``history``: a :class:`~minireptile.commands.loss_history.LossHistory` that each chunk's losses
    are added to and that the default ``save`` keeps in the checkpoint.
    """
    if save is None:
        def save(it, theta, state, status):
            save_checkpoint(ckpt_path, theta, cfg, it, state, status=status,
                            loss_history=history.state(it) if history is not None else None)
    if train is None:
        def train(theta, state, start, stop, callback, chunk_iters, chunk_seconds):
            sample = sample_block
            if getattr(backend, "bind_tasks", None) is None:   # sampled here, not on workers: a signal
                def sample(b):                                  # abandons a long sampling at once
                    with interrupt.abortable():
                        return sample_block(b)
            meta_train(spec, theta, sample, block_iters, rcfg, backend, start=start, stop=stop, state=state,
                       callback=callback, chunk_iters=chunk_iters, chunk_seconds=chunk_seconds)
    iters = rcfg.iters if iters is None else iters
    total = iters if total is None else total
    if hint is None:
        hint = f"a smaller --inner-lr (now {rcfg.inner.lr:g}) or --outer-lr (now {rcfg.eps0:g})"

    resume_cmd = f"minireptile {command} --resume {quote(ckpt_path)}"
    last = {"it": start, "theta": theta, "state": state}

    with Interruptible() as interrupt:
        folder = Path(ckpt_path).parent
        folder_id, lock_id = os.stat(folder).st_ino, safety.lock_identity(folder)

        def checkpoint(it, theta, state, status):
            safety.check_lock(folder, identity=lock_id)   # still this run's lock: else stop, writing nothing
            with interrupt.critical():
                try:
                    save(it, theta, state, status)
                except OSError:
                    safety.check_lock(folder, identity=lock_id)   # the folder or lock went during the write
                    raise
                try:
                    same = os.stat(folder).st_ino == folder_id
                except OSError:
                    same = False
                if not same:   # moved away during the write
                    if not (folder / LOCK_NAME).exists():   # ... which made the folder anew: take back what we made
                        with contextlib.suppress(OSError):
                            Path(ckpt_path).unlink()
                            folder.rmdir()
                    safety.check_lock(folder, identity=lock_id)

        def on_chunk(it, theta, losses, state):
            if history is not None:
                history.add(losses)
            progress(it, theta, losses, state)
            last.update(it=it, theta=theta, state=state)
            if every and it % every == 0 and it < stop:
                checkpoint(it, theta, state, "running")
            return interrupt.requested()

        t = time.perf_counter()
        try:
            checkpoint(start, theta, state, "running")   # from here on a valid checkpoint is always on disk
            with np.errstate(over="ignore", invalid="ignore"):  # a divergence is reported below, not warned
                try:
                    train(theta, state, start, stop, on_chunk, every or None, CHUNK_SECONDS)
                except SamplingAborted:
                    pass   # stopped while sampling the next block: the last finished chunk is saved below
                except DivergenceError:
                    raise
                except Exception:
                    # after a signal to the whole process group, Dask workers may die before the chunk in
                    # flight returns: the run then stops at the last finished chunk, which is saved below
                    if not interrupt.requested():
                        raise
            it, theta, state = last["it"], last["theta"], last["state"]
            seconds = time.perf_counter() - t
            if interrupt.requested():
                checkpoint(it, theta, state, "complete" if it == iters else "interrupted")
                print(f"interrupted at iteration {offset + it}/{total} (evaluation skipped); checkpoint: {ckpt_path}\n"
                      f"resume with: {resume_cmd}", flush=True)
                return interrupt.exit_status(), it, theta, state, seconds
            checkpoint(it, theta, state, "complete" if it == iters else "stopped")
        except DivergenceError as exc:
            checkpoint(exc.iteration, exc.theta, exc.state, "diverged")
            i = offset + exc.iteration
            print(f"{prog}: error: training diverged at outer iteration {i}: the inner loss or θ became NaN or inf. "
                  f"The last finite θ (after {i} iterations) is in {ckpt_path}. Start a new run with {hint}.",
                  file=sys.stderr)
            return EXIT_DIVERGED, exc.iteration, exc.theta, exc.state, time.perf_counter() - t
        except KeyboardInterrupt:
            print(f"{prog}: interrupted again, stopped at once; {ckpt_path} holds {_describe(ckpt_path)}; resume "
                  f"with: {resume_cmd}", file=sys.stderr, flush=True)
            return 130, None, None, None, time.perf_counter() - t
    if it < iters:
        print(f"stopped after iteration {offset + it}/{total} (--stop-after); checkpoint: {ckpt_path}\n"
              f"resume with: {resume_cmd}", flush=True)
        return 0, it, theta, state, seconds
    return None, it, theta, state, seconds


def _describe(ckpt_path) -> str:
    """What the checkpoint on disk holds, read back from the file itself."""
    try:
        ck = load_checkpoint(ckpt_path)
    except CheckpointError:
        return "no readable checkpoint"
    return f"the checkpoint of iteration {ck['iteration']} (status {ck['status']})"



# ---------------------------------------------------------------------------------------------------------
# checking a resumed run's configuration by the rules of the command line
# ---------------------------------------------------------------------------------------------------------
class _StrictParser(Parser):
    def error(self, message):  # noqa: D401 (argparse API)
        raise ValueError(message)


def flag_text(value) -> str:
    """A config value as the command line would spell it (ValueError for what no flag could give)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{value!r} is not a flag value")
    return value if isinstance(value, str) else repr(value)


def checked_config(command: str, add_parser, build_config, cfg: dict, argv, where: str) -> None:
    """CheckpointError unless ``cfg`` is exactly what ``build_config`` makes of the flags ``argv``.

    ``argv(cfg)`` spells the stored configuration as command-line flags; parsing them with the
    command's own parser applies every flag rule (types, ranges, choices, combinations), and the
    configuration rebuilt from them must equal the stored one, types included (``True`` is not 1,
    ``2.0`` is not 2, no unknown keys). So a checkpoint can only hold a run the command line could
    have started.
    """
    try:
        root = _StrictParser(prog="minireptile")
        add_parser(root.add_subparsers(dest="command", parser_class=_StrictParser))
        args = root.parse_args([command, *[flag_text(v) for v in argv(cfg)]])
        rebuilt = build_config(args)
        same = json.dumps(rebuilt, sort_keys=True) == json.dumps(cfg, sort_keys=True)
        detail = "" if same else _first_difference(rebuilt, cfg)
    except FlagError as exc:
        same, detail = False, str(exc)
    except Exception as exc:  # noqa: BLE001 (anything a hostile config provokes is a corrupt checkpoint)
        same, detail = False, f"{type(exc).__name__}: {exc}"
    if not same:
        raise CheckpointError(f"checkpoint: {where} has an invalid {command} configuration ({detail})")


def _first_difference(expected, got, at="config") -> str:
    if isinstance(expected, dict) and isinstance(got, dict):
        for k in sorted(set(expected) | set(got), key=str):
            if k not in got:
                return f"{at}.{k} is missing"
            if k not in expected:
                return f"{at}.{k} is not a known field"
            if json.dumps(expected[k], sort_keys=True) != json.dumps(got[k], sort_keys=True):
                return _first_difference(expected[k], got[k], f"{at}.{k}")
    return f"{at} is {json.dumps(got)[:80]}, expected {json.dumps(expected)[:80]}"


def check_resumable(ck: dict, cfg: dict, n_params: int, iters: int, carry_steps: int | None, where: str) -> None:
    """CheckpointError unless θ, the iteration, the status and the Adam state fit the configuration.

    ``carry_steps``: inner steps per outer iteration when the config carries Adam state, else None.
    """
    theta, it, status, state = ck["theta"], ck["iteration"], ck["status"], ck["state"]
    problem = None
    if theta.dtype != np.dtype(cfg["dtype"]) or theta.shape != (n_params,):
        problem = f"theta ({theta.dtype}, {theta.shape}) does not fit its configuration ({cfg['dtype']}, {n_params})"
    elif not 0 <= it <= iters:
        problem = f"iteration {it} is outside [0, {iters}]"
    elif (status == "complete") != (it == iters):
        problem = f"status {status!r} does not go with iteration {it} of {iters}"
    elif carry_steps is None and state is not None:
        problem = "it holds an Adam state that its configuration does not carry"
    elif carry_steps is not None and state is None and it > 0:
        problem = "its Adam state is missing (the configuration carries Adam moments across tasks)"
    elif carry_steps is not None and state is not None and state.t != it * carry_steps:
        problem = f"the Adam step count {state.t} does not match iteration {it} x {carry_steps} inner steps"
    if problem:
        raise CheckpointError(f"checkpoint: {where} is corrupted: {problem}")
