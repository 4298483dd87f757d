"""The sweep's ledger: ``OUT/ledger.sqlite``, one row per run, one transaction per change.

Anything wrong with the file (not SQLite, truncated, a folder, rows or columns that a sweep never
writes, locked by another process for longer than the timeout) is a :class:`LedgerError`: one line
naming the file and what to do, exit 2. A disk that is full or failing is an OSError (exit 1).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import time
from pathlib import Path

from .common import FlagError

STATES = ("pending", "running", "done", "failed", "interrupted")
LOCK_TIMEOUT = 30.0   # seconds to wait for another process's transaction on the ledger


class LedgerError(FlagError):
    """The ledger file cannot be used (reported as ``argument --out: ...``, exit 2)."""

    def __init__(self, path: Path, detail: str):
        super().__init__("--out", f"the sweep ledger {str(path)!r} {detail}")


def _guarded(method):
    """Turn what a damaged, foreign or locked ledger raises into LedgerError (a full disk: OSError)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except FlagError:
            raise
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "locked" in text or "busy" in text:
                raise LedgerError(self.path, f"is locked by another process (waited {LOCK_TIMEOUT:.0f} s); end that "
                                  "process and run the sweep again") from None
            if "disk" in text or "full" in text:
                raise OSError(f"cannot write the sweep ledger {str(self.path)!r} ({text}); free some space and run "
                              "the same sweep again to resume") from None
            raise LedgerError(self.path, f"cannot be used ({text}); move it away to start the sweep afresh") from None
        except (sqlite3.Error, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise LedgerError(self.path, f"is damaged or not a minireptile ledger ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())}); move it away to start the sweep afresh") from None

    return wrapper


class Ledger:
    """The sweep's SQLite ledger: one row per run; every change is one transaction."""

    @_guarded
    def __init__(self, path: Path):
        self.path = path
        self.db = sqlite3.connect(path, timeout=LOCK_TIMEOUT, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        with self.tx():
            self.db.execute("CREATE TABLE IF NOT EXISTS sweep (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.db.execute("CREATE TABLE IF NOT EXISTS runs (name TEXT PRIMARY KEY, seed INTEGER NOT NULL, "
                            "point TEXT NOT NULL, argv TEXT NOT NULL, state TEXT NOT NULL, exit_status INTEGER, "
                            "attempts INTEGER NOT NULL DEFAULT 0, result TEXT, seconds REAL, updated REAL NOT NULL)")

    @contextlib.contextmanager
    def tx(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self):
        self.db.close()

    @_guarded
    def define(self, command: str, planned: list) -> None:
        """Record the sweep's runs; FlagError if the folder holds a sweep of another command or other flags."""
        with self.tx():
            row = self.db.execute("SELECT value FROM sweep WHERE key = 'command'").fetchone()
            if row is None:
                self.db.execute("INSERT INTO sweep VALUES ('command', ?)", (command,))
            elif row[0] != command:
                raise FlagError("--out", f"{str(self.path.parent)!r} holds a sweep of `{row[0]}`; use another --out")
            for r in planned:
                old = self.db.execute("SELECT argv FROM runs WHERE name = ?", (r["name"],)).fetchone()
                if old is None:
                    self.db.execute("INSERT INTO runs (name, seed, point, argv, state, updated) VALUES "
                                    "(?, ?, ?, ?, 'pending', ?)", (r["name"], r["seed"], json.dumps(r["point"]),
                                                                   json.dumps(r["argv"]), time.time()))
                elif json.loads(old[0]) != r["argv"]:
                    raise FlagError("--out", f"{str(self.path.parent)!r} holds the run {r['name']} with other flags "
                                    f"({' '.join(json.loads(old[0]))}); use another --out for a different sweep")

    @_guarded
    def set(self, name: str, state: str, **fields) -> None:
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self.tx():
            self.db.execute(f"UPDATE runs SET state = ?, updated = ?{', ' + cols if cols else ''} WHERE name = ?",
                            (state, time.time(), *fields.values(), name))

    @_guarded
    def started(self, name: str) -> None:
        with self.tx():
            self.db.execute("UPDATE runs SET state = 'running', attempts = attempts + 1, updated = ? WHERE name = ?",
                            (time.time(), name))

    @_guarded
    def rows(self, names=None) -> list[dict]:
        cur = self.db.execute("SELECT name, seed, point, argv, state, exit_status, attempts, result, seconds FROM runs "
                              "ORDER BY rowid")
        out = []
        for name, seed, point, argv, state, status, attempts, result, seconds in cur.fetchall():
            if names is None or name in names:
                row = {"name": name, "seed": seed, "point": json.loads(point), "argv": json.loads(argv),
                       "state": state, "exit_status": status, "attempts": attempts,
                       "result": json.loads(result) if result else None, "seconds": seconds}
                _check_row(row)
                out.append(row)
        return out


def _check_row(row: dict) -> None:
    """ValueError unless ``row`` is one that a sweep writes (types and states)."""
    def strings(x):
        return all(isinstance(v, str) for v in x)

    checks = {
        "name": isinstance(row["name"], str),
        "seed": isinstance(row["seed"], int) and row["seed"] >= 0,
        "point": isinstance(row["point"], dict) and strings(row["point"]) and strings(row["point"].values()),
        "argv": isinstance(row["argv"], list) and strings(row["argv"]),
        "state": row["state"] in STATES,
        "exit_status": row["exit_status"] is None or isinstance(row["exit_status"], int),
        "attempts": isinstance(row["attempts"], int),
        "result": row["result"] is None or isinstance(row["result"], dict),
        "seconds": row["seconds"] is None or isinstance(row["seconds"], (int, float)),
    }
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"the run {row['name']!r} has an invalid {', '.join(bad)}")
