"""A damaged, foreign or locked sweep ledger is one line naming it (exit 2), never a traceback.

Every case fails before a cluster starts, so no Dask workers are needed.
"""

import sqlite3

import pytest

pytest.importorskip("distributed")

from minireptile.cli import main  # noqa: E402
from minireptile.commands import ledger as ledger_module  # noqa: E402
from minireptile.commands.ledger import Ledger  # noqa: E402
from minireptile.commands.sweep import plan_runs, seed_list  # noqa: E402

RUN = ["--iters", "30", "--meta-batch", "2", "--eval-tasks", "4", "--no-plot"]


def sweep(out):
    return main(["sweep", "sine", "--seeds", "0-1", *RUN, "--out", str(out), "--workers", "1"])


def make_ledger(out):
    out.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(out / "ledger.sqlite")
    ledger.define("sine", plan_runs("sine", RUN, seed_list("0-1"), []))
    ledger.close()
    return out / "ledger.sqlite"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def scribble(path):
    data = bytearray(path.read_bytes())
    data[:100] = b"x" * 100
    path.write_bytes(bytes(data))


def sql(statement):
    def damage(path):
        with sqlite3.connect(path) as db:
            db.execute(statement)
    return damage


@pytest.mark.parametrize("damage", [
    truncate, scribble,
    sql("UPDATE runs SET point = '{not json' WHERE name = 'seed=0'"),
    sql("UPDATE runs SET point = '[1, 2]' WHERE name = 'seed=0'"),
    sql("UPDATE runs SET state = 'weird' WHERE name = 'seed=1'"),
    sql("UPDATE runs SET argv = '3' WHERE name = 'seed=1'"),
    sql("ALTER TABLE runs DROP COLUMN result"),
], ids=["truncated", "scribbled", "bad-json", "point-not-a-table", "unknown-state", "argv-not-a-list",
        "dropped-column"])
def test_a_damaged_ledger_is_one_line_and_exit_2(tmp_path, capsys, damage):
    path = make_ledger(tmp_path / "s")
    with sqlite3.connect(path) as db:   # fold the WAL into the file, as after a finished sweep
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damage(path)
    capsys.readouterr()
    assert sweep(tmp_path / "s") == 2
    line = one_error_line(capsys)
    assert "argument --out: the sweep ledger " in line and "ledger.sqlite" in line
    assert not (tmp_path / "s" / "runs").exists()


def test_a_ledger_that_is_a_folder(tmp_path, capsys):
    (tmp_path / "s" / "ledger.sqlite").mkdir(parents=True)
    assert sweep(tmp_path / "s") == 2
    assert "the sweep ledger" in one_error_line(capsys)


def test_a_ledger_locked_by_another_process_is_named(tmp_path, capsys, monkeypatch):
    path = make_ledger(tmp_path / "s")
    monkeypatch.setattr(ledger_module, "LOCK_TIMEOUT", 0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        capsys.readouterr()
        assert sweep(tmp_path / "s") == 2
        line = one_error_line(capsys)
        assert "is locked by another process" in line
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_full_disk_while_writing_the_ledger_is_an_os_error_naming_it(tmp_path):
    path = make_ledger(tmp_path / "s")
    ledger = Ledger(path)

    class FullDisk:
        def execute(self, *args):
            raise sqlite3.OperationalError("disk I/O error")

    real, ledger.db = ledger.db, FullDisk()
    try:
        with pytest.raises(OSError, match=r"cannot write the sweep ledger .*ledger.sqlite.* \(disk I/O error\)"):
            ledger.set("seed=0", "done")
    finally:
        real.close()
