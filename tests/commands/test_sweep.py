"""`minireptile sweep` on a local Dask cluster of 2 worker processes (one per module).

A sweep of 2 seeds x 2 grid values finishes; its ledger and table are right (the table's numbers are
recomputed from the runs' own JSON); the same sweep run again does no work; a worker killed mid-sweep
changes no result; a driver killed mid-sweep is resumed by running the same command again.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from minireptile.cli import main  # noqa: E402
from minireptile.commands.common import FlagError  # noqa: E402
from minireptile.commands.sweep import grid_axis, plan_runs, read_grid_file, seed_list  # noqa: E402
from minireptile.evaluation import mean_ci95  # noqa: E402

# a tiny sine run (1-8-1 would need a preset; the gist net with few iterations is fast enough)
RUN = ["--iters", "30", "--meta-batch", "2", "--eval-tasks", "4", "--checkpoint-every", "10", "--no-plot"]
GRID = ["--seeds", "0-1", "--grid", "inner-lr=0.01,0.02"]
METRIC = "meta-learned MSE @32"


def sweep(client, out, *extra):
    return main(["sweep", "sine", *GRID, *RUN, "--out", str(out), "--scheduler", client.scheduler.address, *extra])


def ledger_rows(out):
    with sqlite3.connect(out / "ledger.sqlite") as db:
        return db.execute("SELECT name, seed, point, state, exit_status, attempts, result FROM runs ORDER BY name").fetchall()


def metrics_of(out):
    return {e["point"]["--inner-lr"]: e["metrics"][METRIC] for e in json.loads((out / "summary.json").read_text())["points"]}


@pytest.fixture(scope="module")
def finished(client, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "s"
    assert sweep(client, out) == 0
    return out


def test_a_sweep_runs_every_seed_and_value_and_its_ledger_and_table_are_right(finished, capsys):
    rows = ledger_rows(finished)
    assert [r[0] for r in rows] == ["inner-lr=0.01_seed=0", "inner-lr=0.01_seed=1", "inner-lr=0.02_seed=0",
                                    "inner-lr=0.02_seed=1"]
    assert all(state == "done" and status == 0 and attempts >= 1 for _, _, _, state, status, attempts, _ in rows)
    for name, seed, point, _, _, _, result in rows:
        run_json = json.loads((finished / "runs" / name / "result.json").read_text())
        assert json.loads(result) == run_json                      # the ledger holds the run's own JSON
        assert run_json["config"]["seed"] == seed
        assert run_json["config"]["reptile"]["inner"]["lr"] == float(json.loads(point)["--inner-lr"])
        ck = np.load(finished / "runs" / name / "checkpoint.npz")
        assert str(ck["status"]) == "complete"
    table = metrics_of(finished)
    for lr in ("0.01", "0.02"):
        values = [json.loads(r[6])["eval"]["meta_mse"][-1] for r in rows if json.loads(r[2])["--inner-lr"] == lr]
        mean, ci = mean_ci95(np.array(values))
        assert table[lr]["values"] == values and table[lr]["mean"] == pytest.approx(float(mean))
        assert table[lr]["ci95"] == pytest.approx(float(ci))
    csv = (finished / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("inner-lr,seeds,") and len(csv) == 3
    assert (finished / "summary.png").exists() or "matplotlib is not installed" in capsys.readouterr().err


def test_the_same_sweep_again_does_no_work(client, finished, capsys):
    before = {r[0]: r for r in ledger_rows(finished)}
    mtimes = {p: p.stat().st_mtime_ns for p in (finished / "runs").rglob("checkpoint.npz")}
    capsys.readouterr()
    assert sweep(client, finished) == 0
    out = capsys.readouterr().out
    assert "4 done, 0 to run" in out and "± " in out
    assert {r[0]: r for r in ledger_rows(finished)} == before
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_sweep_flag_errors_exit_2_before_any_run(tmp_path, capsys):
    assert main(["sweep", "sine", "--seeds", "0-1", "--grid", "inner-lr=0.01,-1", *RUN, "--out", str(tmp_path)]) == 2
    assert "--inner-lr" in capsys.readouterr().err
    assert main(["sweep", "sine", "--seeds", "0-1", "--out", str(tmp_path), "--seed", "3"]) == 2
    assert "set by the sweep" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    assert seed_list("0-3,7") == (0, 1, 2, 3, 7) and grid_axis("inner-lr=0.01,0.02") == ("--inner-lr", ("0.01", "0.02"))


def test_a_grid_file_in_toml_plans_the_same_runs_as_the_flags(tmp_path):
    toml = tmp_path / "grid.toml"
    toml.write_text('seeds = "0-1"\n[grid]\ninner-lr = [0.01, 0.02]\ninner-steps = [5]\n')
    seeds, axes = read_grid_file(toml)
    from_file = plan_runs("sine", RUN, seeds, axes)
    from_flags = plan_runs("sine", RUN, seed_list("0-1"), [grid_axis("inner-lr=0.01,0.02"), grid_axis("inner-steps=5")])
    assert from_file == from_flags and len(from_file) == 4
    assert from_file[0]["name"] == "inner-lr=0.01_inner-steps=5_seed=0"
    toml.write_text("[grid]\ninner-lr = [0.01, -1]\n")
    with pytest.raises(FlagError, match="--inner-lr"):
        plan_runs("sine", RUN, (0,), read_grid_file(toml)[1])


def test_a_worker_killed_mid_sweep_changes_no_result(client, finished, tmp_path):
    out = tmp_path / "s"
    pids = list(client.run(os.getpid).values())
    statuses = []
    t = threading.Thread(target=lambda: statuses.append(sweep(client, out)))
    t.start()
    deadline = time.monotonic() + 120
    while not list((out / "runs").glob("*/checkpoint.npz")):     # a run has started training
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(pids[0], signal.SIGKILL)
    t.join(300)
    assert statuses == [0]
    assert metrics_of(out) == metrics_of(finished)


def test_a_killed_driver_is_resumed_by_the_same_command(client, finished, tmp_path):
    out = tmp_path / "s"
    argv = [sys.executable, "-m", "minireptile", "sweep", "sine", *GRID, *RUN, "--out", str(out), "--scheduler",
            client.scheduler.address]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((out / "runs").glob("*/checkpoint.npz")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert main(["sweep", "sine", *GRID, *RUN, "--out", str(out), "--scheduler", client.scheduler.address]) == 0
    assert metrics_of(out) == metrics_of(finished)


def test_metrics_of_each_command_come_from_its_json():
    from minireptile.commands.sweep import metrics

    sine = {"eval": {"steps": [0, 32], "meta_mse": [3.0, 0.5], "random_mse": [3.0, 2.5]}}
    assert metrics("sine", sine) == {"meta-learned MSE @32": 0.5, "random-init MSE @32": 2.5}
    omniglot = {"eval": {"steps": [0, 50], "meta": {"accuracy": 0.9}, "random_init": {"accuracy": 0.4}}}
    assert metrics("omniglot", omniglot) == {"meta-learned acc @50": 0.9, "random-init acc @50": 0.4}
    compare = {"results": {"reptile": {"5": {"steps": [0, 10], "mean": [2.0, 1.0]},
                                       "10": {"steps": [0, 10], "mean": [2.0, 0.7]}}}}
    assert metrics("compare", compare) == {"reptile loss K=10 @10": 0.7}
