"""``minireptile sweep COMMAND ...``: a grid of a command's runs, on a Dask cluster, with a durable ledger.

A sweep is seeds (``--seeds 0-9``) × flag values (``--grid inner-lr=0.01,0.02``, repeatable, or a TOML
file) of one command (``sine``, ``omniglot`` or ``compare``). Every other flag is passed to each run unchanged. Each
run is exactly ``minireptile COMMAND ... --seed S --out OUT/runs/NAME --json OUT/runs/NAME/result.json``,
started as its own process on a worker: its own folder, checkpoint, log and JSON.

Ledger: ``OUT/ledger.sqlite`` (SQLite, one transaction per change) records each run's flags, state
(pending, running, done, failed), exit status, attempts and result. Re-running the same sweep skips done
runs and resumes the others from their checkpoints; a run whose worker died is started again by Dask
and resumes from its last checkpoint, so its result is the uninterrupted run's (checkpoints resume bit
for bit). At the end: the mean ± 95% CI over seeds of each grid point's metrics, printed and written as
``summary.csv`` and ``summary.json``, and ``summary.png`` (metric against each grid value, CI bars).

Cluster: ``--workers N`` (default: one per core) single-threaded worker processes on this machine, or
``--scheduler ADDRESS`` for an existing Dask cluster whose workers share this file system.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from . import runs
from .cluster import add_cluster_flags, require_dask
from .common import FlagError
from .ledger import STATES, Ledger, LedgerError  # noqa: F401 (the sweep's API)
from .sweep_help import command_help, flags_help
from .sweep_summary import (format_table, metrics, plot_summary, summarise, sweep_title,  # noqa: F401 (the API)
                            write_summary)

SWEEPABLE = ("sine", "omniglot", "compare")
# flags the sweep sets for each run (a user value would make the runs collide or be lost)
OWNED = ("--seed", "--out", "--json", "--resume", "--overwrite", "--stop-after", "--quiet", "--workers", "--scheduler")
DEFAULT_OUT = "runs/sweep-{command}"
MAX_RUNS = 10_000       # runs in one sweep (seeds x grid points): larger plans are refused at once
MAX_SEED = 2**63 - 1    # the ledger stores seeds as SQLite integers


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="run a grid of seeds x flag values of a command, resumably, on a Dask cluster",
                       description="Run COMMAND once per seed and grid point, each run in its own folder with its "
                       "own checkpoint and JSON, on a Dask cluster; a SQLite ledger lets a re-run skip finished "
                       "runs and resume the others. Other flags are passed to every run.",
                       epilog=sweep_flags_help() + "\n`minireptile sweep COMMAND --help` also lists COMMAND's flags.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_command", metavar="COMMAND", choices=SWEEPABLE, help=f"one of {', '.join(SWEEPABLE)}")
    p.add_argument("run_args", nargs=argparse.REMAINDER, metavar="...",
                   help="sweep flags (--seeds, --grid, --grid-file, --out, --workers, --scheduler) and the "
                   "command's own flags, given to every run")
    p.set_defaults(run=run)


def sweep_flags() -> argparse.ArgumentParser:
    """The sweep's own flags (the rest of the command line goes to the runs)."""
    from .common import Parser

    p = Parser(prog="minireptile sweep", add_help=False, allow_abbrev=False)
    p.add_argument("--seeds", type=seed_list, default=None, metavar="LIST",
                   help="seeds: 0-9, 0,3,5 or 0-3,7 (default 0-4; a sweep has at most 10,000 runs)")
    p.add_argument("--grid", action="append", default=[], type=grid_axis, metavar="FLAG=V1,V2",
                   help="a flag of the command and its values, e.g. inner-lr=0.01,0.02 (repeat for more axes)")
    p.add_argument("--grid-file", type=Path, metavar="TOML",
                   help="a TOML file with `seeds = \"0-9\"` and a [grid] table: flag = [values]")
    p.add_argument("--out", type=Path, help="sweep folder (default runs/sweep-COMMAND)")
    add_cluster_flags(p, "run the runs")
    for action in p._actions:
        if action.dest == "workers":
            action.help += "; default: one worker per core"
    return p


def sweep_flags_help() -> str:
    """The sweep's own flags and their defaults, as a help section."""
    return flags_help(sweep_flags(), OWNED)


def print_sweep_help(command: str) -> None:
    """``minireptile sweep COMMAND --help``: the sweep's flags, then the flags of COMMAND's runs."""
    print(command_help(command, _command_module(command), sweep_flags_help()))


def seed_list(text: str) -> tuple[int, ...]:
    """``"0-3,7"`` → (0, 1, 2, 3, 7): ranges and single seeds >= 0, no repeats."""
    seeds = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d{1,30})\s*(?:-\s*(\d{1,30})\s*)?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise argparse.ArgumentTypeError(f"expected seeds like 0-9 or 0,3,5 (integers >= 0), got {text!r}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi > MAX_SEED:
            raise argparse.ArgumentTypeError(f"expected seeds up to {MAX_SEED}, got {text!r}")
        if len(seeds) + hi - lo + 1 > MAX_RUNS:
            raise argparse.ArgumentTypeError(f"expected at most {MAX_RUNS} seeds (a sweep has at most {MAX_RUNS} "
                                             f"runs), got {text!r}")
        seeds += range(lo, hi + 1)
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected each seed once, got {text!r}")
    return tuple(seeds)


def grid_axis(text: str) -> tuple[str, tuple[str, ...]]:
    """``"inner-lr=0.01,0.02"`` → ("--inner-lr", ("0.01", "0.02"))."""
    name, sep, values = str(text).partition("=")
    name = name.strip().lstrip("-")
    vals = tuple(v.strip() for v in values.split(","))
    if not sep or not re.fullmatch(r"[a-z][a-z0-9-]*", name) or not all(vals):
        raise argparse.ArgumentTypeError(f"expected FLAG=V1,V2,... such as inner-lr=0.01,0.02, got {text!r}")
    if len(set(vals)) != len(vals):
        raise argparse.ArgumentTypeError(f"expected each value once, got {text!r}")
    return f"--{name}", vals


def read_grid_file(path: Path):
    """(seeds or None, [(flag, values)]) from a TOML file: ``seeds`` and a ``[grid]`` table."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise FlagError("--grid-file", "needs Python 3.11 or later (tomllib)") from None
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise FlagError("--grid-file", f"cannot read {str(path)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise FlagError("--grid-file", f"{str(path)!r} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise FlagError("--grid-file", f"{str(path)!r} is not UTF-8 text (TOML files are UTF-8)") from None
    unknown = set(doc) - {"seeds", "grid"}
    if unknown:
        raise FlagError("--grid-file", f"{str(path)!r}: unknown keys {sorted(unknown)} (expected seeds and [grid])")
    seeds = None
    if "seeds" in doc:
        s = doc["seeds"]
        text = ",".join(map(str, s)) if isinstance(s, list) else str(s)
        try:
            seeds = seed_list(text)
        except argparse.ArgumentTypeError as exc:
            raise FlagError("--grid-file", f"seeds: {exc}") from None
    grid = doc.get("grid", {})
    if not isinstance(grid, dict):
        raise FlagError("--grid-file", "[grid] must be a table of flag = [values]")
    axes = []
    for name, values in grid.items():
        values = values if isinstance(values, list) else [values]
        if any(isinstance(v, (dict, list)) for v in values):
            raise FlagError("--grid-file", f"grid.{name}: expected a list of numbers or strings")
        try:
            axes.append(grid_axis(f"{name}=" + ",".join(runs.flag_text(v) for v in values)))
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise FlagError("--grid-file", f"grid.{name}: {exc} (expected numbers or strings)") from None
    return seeds, axes


def _command_module(command: str):
    from . import compare, omniglot, sine

    return {"sine": sine, "omniglot": omniglot, "compare": compare}[command]


def plan_runs(command: str, base: list, seeds, axes) -> list[dict]:
    """Every run of the sweep: name, seed, grid point and argv (after COMMAND), in a fixed order.

    Each run's flags are parsed by the command's own parser and configuration builder here, so a bad
    value is a flag error before any run starts.
    """
    from .common import Parser

    module = _command_module(command)
    root = Parser(prog="minireptile")
    module.add_parser(root.add_subparsers(dest="command", parser_class=Parser))
    for flag in base:
        name = flag.split("=")[0]
        if name.startswith("--") and any(owned.startswith(name) for owned in OWNED):  # argparse takes prefixes
            raise FlagError(name, "is set by the sweep for each run; leave it out")
    planned = []
    names = [flag for flag, _ in axes]
    size = len(seeds) * int(np.prod([len(vals) for _, vals in axes], dtype=object))
    if size > MAX_RUNS:
        raise FlagError("--grid", f"the sweep would have {size:,} runs ({len(seeds)} seeds x grid points); at most "
                        f"{MAX_RUNS:,} are allowed: split it into several sweeps")
    if len(set(names)) != len(names):
        raise FlagError("--grid", "each flag may be one axis of the grid only")
    known = _command_flags(root, command)
    sweep_own = set(sweep_flags()._option_string_actions)
    for flag in names:
        if flag in OWNED:
            raise FlagError("--grid", f"{flag} is set by the sweep for each run (use --seeds for seeds)")
        if flag in sweep_own:
            raise FlagError("--grid", f"{flag} is a flag of the sweep itself, not of its runs")
        if flag not in known:
            raise FlagError("--grid", f"{flag} is not a flag of `minireptile {command}` (give its full name, "
                            "as `minireptile " + command + " --help` lists it)")
        if any(b.split("=")[0] == flag for b in base):
            raise FlagError("--grid", f"{flag} is both a grid axis and a fixed flag")
    for values in itertools.product(*[vals for _, vals in axes]):
        point = dict(zip(names, values))
        for seed in seeds:
            argv = [*base, *[x for f, v in point.items() for x in (f, v)], "--seed", str(seed)]
            try:
                args = _parse(root, [command, *argv])
                module.build_config(args)
            except FlagError as exc:
                raise FlagError(exc.flag, f"{str(exc).split(': ', 1)[1]} (in the run {' '.join(argv)})") from None
            name = "_".join([f"{f.lstrip('-')}={v}" for f, v in point.items()] + [f"seed={seed}"])
            planned.append({"name": re.sub(r"[^A-Za-z0-9=._,+-]", "-", name), "seed": seed, "point": point,
                            "argv": argv})
    return planned


def _command_flags(root, command: str) -> set:
    """The full option strings of ``command``'s parser (a grid axis must be one of them, never a prefix)."""
    sub = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    return {o for o in sub.choices[command]._option_string_actions if o.startswith("--")}


def _parse(root, argv):
    """Parse a run's flags; argparse's exit becomes a FlagError (the sweep reports it as its own)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return root.parse_args(argv)
    except SystemExit:
        message = err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else "invalid flags"
        message = message.split("error: ", 1)[-1]
        flag = message.split()[1].rstrip(":") if message.startswith("argument ") else "COMMAND"
        raise FlagError(flag, message.split(": ", 1)[-1]) from None


# ---------------------------------------------------------------------------------------------
# one run, on a worker
# ---------------------------------------------------------------------------------------------
def run_one(command: str, argv: list, folder: str) -> dict:
    """Run ``minireptile COMMAND argv`` in ``folder`` as a child process (worker task); resumable.

    A readable checkpoint in the folder is resumed with the run's flags, so the command itself checks
    that it is this run's (same configuration; else it exits 2 naming the flag and the folder's log
    says why): a complete one is only evaluated again and its JSON rewritten, never trusted as it is.
    Returns {"status", "seconds", "summary" (the run's JSON or None), "log" (last lines)}.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ckpt, result = folder / "checkpoint.npz", folder / "result.json"
    _wait_for_folder(folder)
    t = time.perf_counter()
    extra = ["--out", str(folder), "--json", str(result), "--quiet"]
    status = _checkpoint_status(ckpt) if ckpt.exists() else None
    if status == "diverged":   # final: the same flags and seed diverge again (the log says where)
        with open(folder / "log.txt", "ab") as log:
            log.write(b"the run diverged earlier (exit 3); its last finite theta is in checkpoint.npz\n")
        return {"status": 3, "seconds": 0.0, "summary": None, "log": "the run diverged earlier (exit 3)"}
    if status is not None:
        extra = ["--resume", str(ckpt), *extra]
        with contextlib.suppress(FileNotFoundError):
            result.unlink()   # a result is only ever the one this invocation writes
    cmd = [sys.executable, "-m", "minireptile", command, *argv, *extra]
    with open(folder / "log.txt", "ab") as log:
        log.write(f"$ minireptile {' '.join(runs.quote(a) for a in cmd[3:])}\n".encode())
        log.flush()
        # its own session: a signal to the sweep's process group reaches the run only through the sweep
        # (_signal_runs), exactly once, so it stops cleanly with an interrupted checkpoint
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                              start_new_session=True)
    tail = (folder / "log.txt").read_text(errors="replace").splitlines()[-5:]
    summary = json.loads(result.read_text()) if proc.returncode == 0 and result.exists() else None
    return {"status": proc.returncode, "seconds": time.perf_counter() - t, "summary": summary, "log": "\n".join(tail)}


def _executing(dask_worker) -> list:
    """Keys of the tasks a worker is running now (not those queued on it); run on every worker."""
    return [ts.key for ts in dask_worker.state.executing]


def _wait_for_folder(folder: Path) -> None:
    """Wait until no process holds the run folder's lock: a run orphaned by a killed sweep ends first."""
    import fcntl

    fd = os.open(folder / runs.LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)


def _checkpoint_status(path: Path):
    """The checkpoint's status, or None if it cannot be read (the run then reports why)."""
    from ..checkpoint import load_checkpoint
    from ..errors import CheckpointError

    try:
        return load_checkpoint(path)["status"]
    except (CheckpointError, OSError):
        return None


def _signal_runs(signum: int, skip=()) -> list:
    """Send ``signum`` to the runs this worker process started (not those in ``skip``); their pids.

    Run on every worker by the sweep when it gets SIGINT/SIGTERM/SIGHUP: each run then writes an
    ``interrupted`` checkpoint and exits 130/143/129.
    """
    import psutil

    sent = []
    for child in psutil.Process().children():
        try:
            argv = child.cmdline()
            if child.pid not in skip and argv[1:3] == ["-m", "minireptile"]:
                child.send_signal(signum)
                sent.append(child.pid)
        except (psutil.Error, IndexError):
            pass
    return sent


def _die_with_parent() -> None:
    """In the child: on Linux, be killed when the worker that started it dies (no orphaned run holding its folder).

    The stop signals get their default action back (a local cluster's workers ignore them), so a
    signal that comes before the run installs its own handlers still stops it.
    """
    import signal

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------
class Report:
    """Progress lines: runs done / running / failed of the total, and the ETA from finished runs' times."""

    def __init__(self, total: int, slots: int, every: float = 10.0):
        self.total, self.slots, self.every = total, max(slots, 1), every
        self.t0, self.last, self.durations = time.perf_counter(), 0.0, []
        self.starts: dict = {}   # run name -> when it was seen running (see :meth:`started`)

    def started(self, name: str, now: float | None = None) -> None:
        self.starts[name] = time.perf_counter() if now is None else now

    def finished(self, name: str) -> None:
        self.starts.pop(name, None)

    def eta(self, left: int, now: float | None = None) -> float:
        """Seconds until the ``left`` unfinished runs are done: each running run takes the mean duration of
        the finished ones from its start, and each queued run goes to the slot that frees first."""
        now = time.perf_counter() if now is None else now
        mean = float(np.mean(self.durations))
        slots = sorted(max(mean - (now - t), 0.0) for t in self.starts.values())[:self.slots]
        slots += [0.0] * (self.slots - len(slots))
        for _ in range(max(left - len(self.starts), 0)):
            slots.sort()
            slots[0] += mean
        return max(slots)

    def __call__(self, done: int, running: int, failed: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < self.every:
            return
        self.last = now
        left = self.total - done - failed
        if self.durations:
            eta = f"ETA {self.eta(left, now):.0f}s"
        else:
            eta = "ETA after the first run"
        print(f"sweep: {done}/{self.total} done, {running} running, {failed} failed; {eta} "
              f"({now - self.t0:.0f}s elapsed)", flush=True)


def run(args) -> int:
    if any(a in ("-h", "--help") for a in args.run_args):
        print_sweep_help(args.sweep_command)
        return 0
    own, base = sweep_flags().parse_known_args(args.run_args)
    command = args.sweep_command
    require_dask(own)
    seeds, axes = own.seeds, list(own.grid)
    if own.grid_file is not None:
        file_seeds, file_axes = read_grid_file(own.grid_file)
        seeds = seeds if seeds is not None else file_seeds
        axes += file_axes
    seeds = seeds if seeds is not None else tuple(range(5))
    planned = plan_runs(command, list(base), seeds, axes)
    out = own.out if own.out is not None else Path(DEFAULT_OUT.format(command=command))
    with runs.claim_folder(out):
        ledger = Ledger(out / "ledger.sqlite")
        try:
            ledger.define(command, planned)
            return _sweep(own, command, planned, axes, out, ledger)
        finally:
            ledger.close()


def _sweep(own, command, planned, axes, out: Path, ledger: Ledger) -> int:
    names = {r["name"] for r in planned}
    todo = [r for r in ledger.rows(names) if r["state"] != "done"]
    n_seeds = len({r["seed"] for r in planned})
    n_points = len(planned) // n_seeds
    print(f"minireptile sweep: {command}, {len(planned)} runs ({n_seeds} seed{'s' * (n_seeds > 1)} x {n_points} grid "
          f"point{'s' * (n_points > 1)}) in {out}; {len(planned) - len(todo)} done, {len(todo)} to run", flush=True)
    if todo:
        stopped = _execute(own, command, todo, out, ledger, len(planned))
        if stopped is not None:
            rows = ledger.rows(names)
            kept = [r["name"] for r in rows if r["state"] == "interrupted"]
            print(f"minireptile sweep: interrupted; {len(kept)} run(s) wrote an interrupted checkpoint, "
                  f"{sum(r['state'] == 'done' for r in rows)} of {len(rows)} are done. Run the same command again "
                  "to resume.", file=sys.stderr, flush=True)
            return stopped
    rows = ledger.rows(names)
    failed = [{"name": r["name"], "exit_status": r["exit_status"], "log": str(out / "runs" / r["name"] / "log.txt")}
              for r in rows if r["state"] == "failed"]
    table = summarise(command, rows, axes)
    print("\nmean ± 95% CI over seeds:")
    print(format_table(table, axes))
    for path in write_summary(out, command, table, axes, failed):
        print(f"{path.suffix[1:]}: {path}")
    if plot_summary(out / "summary.png", table, axes, title=sweep_title(command, rows)):
        print(f"plot: {out / 'summary.png'}")
    if failed:
        print(f"minireptile sweep: {len(failed)} run(s) failed: " + "; ".join(
            f"{f['name']} (exit {f['exit_status']}, log {f['log']})" for f in failed), file=sys.stderr)
        return max(f["exit_status"] or 1 for f in failed) if all(f["exit_status"] for f in failed) else 1
    return 0


def _execute(own, command, todo, out: Path, ledger: Ledger, total: int):
    """Submit every unfinished run to the cluster and record each one's progress in the ledger.

    Returns None, or after SIGINT/SIGTERM/SIGHUP the exit status (130/143/129): the signal is passed
    to every running run (each writes an ``interrupted`` checkpoint, marked so in the ledger), runs
    not yet started are cancelled, and the sweep waits for the running ones to stop.
    """
    from .cluster import open_client

    if own.workers is None and own.scheduler is None:
        own.workers = os.cpu_count() or 1
    with contextlib.ExitStack() as stack:
        if own.scheduler is None:   # starting the workers takes seconds
            print(f"sweep: starting a local Dask cluster of {own.workers} workers ...", flush=True)
        client = open_client(own, stack)
        interrupt = stack.enter_context(runs.Interruptible("stopping every run at its next chunk; each writes "
                                                           "a checkpoint"))
        _run_all(client, command, todo, out, ledger, total, interrupt)
        return interrupt.exit_status() if interrupt.requested() else None


def _run_all(client, command, todo, out: Path, ledger: Ledger, total: int, interrupt) -> None:
    from .cluster import n_workers

    report = Report(total, n_workers(client))
    done = total - len(todo)
    futures = {}
    for r in todo:
        folder = str((out / "runs" / r["name"]).resolve())
        f = client.submit(run_one, command, r["argv"], folder, key=f"minireptile-run-{r['name']}-{time.time_ns()}",
                          pure=False, retries=1)
        futures[f] = r["name"]
    running: set = set()
    failed = 0
    signalled: set = set()
    while futures:
        if interrupt.requested():
            _stop_runs(client, futures, running, interrupt.signum, signalled)
        for f in [f for f in futures if f.done()]:
            name = futures.pop(f)
            running.discard(name)
            report.finished(name)
            if f.cancelled():
                continue   # never started: still pending
            try:
                res = f.result()
            except Exception as exc:  # noqa: BLE001 (a run lost beyond Dask's retries)
                ledger.set(name, "failed", result=json.dumps({"error": " ".join(str(exc).split())}))
                failed += 1
            else:
                if interrupt.requested() and res["status"] != 0:
                    ledger.set(name, "interrupted", exit_status=res["status"], seconds=res["seconds"])
                elif res["status"] == 0 and res["summary"] is not None:
                    ledger.set(name, "done", exit_status=0, result=json.dumps(res["summary"]),
                               seconds=res["seconds"])
                    report.durations.append(res["seconds"])
                    done += 1
                else:
                    ledger.set(name, "failed", exit_status=res["status"], seconds=res["seconds"])
                    failed += 1
            report(done, len(running), failed, force=True)
        try:  # a worker that just died is skipped (its runs are started again elsewhere)
            executing = {k for keys in client.run(_executing, on_error="ignore").values() for k in keys}
        except (OSError, TimeoutError):
            executing = set()
        for f, name in futures.items():
            if f.key in executing and name not in running:
                running.add(name)
                ledger.started(name)
                report.started(name)
        report(done, len(running), failed)
        time.sleep(0.5)


def _stop_runs(client, futures: dict, running: set, signum: int, signalled: set) -> None:
    """After a signal: cancel the runs not started yet and pass the signal to the others (once each)."""
    try:
        executing = {k for keys in client.run(_executing, on_error="ignore").values() for k in keys}
    except (OSError, TimeoutError):
        executing = set()
    waiting = [f for f, name in futures.items()
               if name not in running and f.key not in executing and not f.cancelled()]
    if waiting:
        client.cancel(waiting)
    try:
        sent = client.run(_signal_runs, int(signum), sorted(signalled), on_error="ignore")
    except (OSError, TimeoutError):
        return
    for pids in sent.values():
        signalled.update(pids)
