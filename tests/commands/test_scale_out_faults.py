"""Scale-out under faults: signals to a ``--workers`` run and to a sweep, a sweep that finds a run
folder it did not make, and the sweep's input limits.

The signal chains start the command in its own session and signal the whole process group, as a
terminal's Ctrl-C or a batch system's SIGTERM does. They wait on conditions (a checkpoint past
iteration 0), never on time, and use tiny NumPy-backend runs.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from minireptile.checkpoint import load_checkpoint  # noqa: E402
from minireptile.cli import main  # noqa: E402
from minireptile.commands import runs  # noqa: E402
from minireptile.commands.common import FlagError  # noqa: E402
from minireptile.commands.sweep import MAX_RUNS, plan_runs, read_grid_file, seed_list  # noqa: E402
from minireptile.config import InnerOptimizer, ReptileConfig  # noqa: E402
from minireptile.errors import CheckpointError  # noqa: E402

RUN = ["--iters", "30", "--meta-batch", "2", "--eval-tasks", "4", "--checkpoint-every", "10", "--no-plot"]
LIMIT = 300.0   # generous: the machine may be busy


def iteration(ckpt: Path) -> int:
    try:
        return load_checkpoint(ckpt)["iteration"]
    except CheckpointError:
        return 0


def wait_until(proc, done, what: str):
    deadline = time.monotonic() + LIMIT
    while not done():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"{what} never happened: {proc.communicate()}")
        time.sleep(0.1)


def start(*argv) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "minireptile", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


# ---------------------------------------------------------------------------------------------------
# --workers: a signal to the process group
# ---------------------------------------------------------------------------------------------------
def test_local_workers_ignore_the_groups_stop_signals():
    from minireptile.backends.distributed import local_client

    before = signal.getsignal(signal.SIGINT)
    client = local_client(1)
    try:
        def dispositions():
            return [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]

        assert list(client.run(dispositions).values()) == [[signal.SIG_IGN] * 3]
    finally:
        client.close()
        client.cluster.close()
    assert signal.getsignal(signal.SIGINT) is before   # the driver's own are back



def test_a_chunk_lost_after_a_signal_still_saves_the_last_finished_iteration(tmp_path, capsys, own_signals):
    """The workers died with the group's signal before the chunk returned: the driver saves what it has."""
    theta0 = np.zeros(5)

    def train(theta, state, start, stop, callback, chunk_iters, chunk_seconds):
        callback(7, theta0 + 1, np.zeros(7), None)
        os.kill(os.getpid(), signal.SIGINT)                # the group's Ctrl-C
        raise RuntimeError("No valid workers found")       # ... and the chunk in flight is lost with the workers

    ckpt = tmp_path / "checkpoint.npz"
    with runs.claim_folder(tmp_path):
        status, it, theta, _, _ = runs.train_with_checkpoints(
            prog="minireptile sine", command="sine", ckpt_path=ckpt, cfg={}, spec=None, theta=theta0, state=None,
            start=0, stop=100, sample_block=None, block_iters=1,
            rcfg=ReptileConfig(iters=100, inner=InnerOptimizer(lr=0.1)), backend=None, every=0,
            progress=lambda *a: None, train=train)
    assert status == 130 and it == 7
    ck = load_checkpoint(ckpt)
    assert ck["status"] == "interrupted" and ck["iteration"] == 7 and (ck["theta"] == 1).all()
    assert "interrupted at iteration 7/100" in capsys.readouterr().out


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130)])   # SIGTERM/SIGHUP take the same path
def test_a_workers_run_signalled_as_a_group_writes_an_interrupted_checkpoint(tmp_path, sig, status):
    ckpt = tmp_path / "gw2" / "checkpoint.npz"
    proc = start("sine", "--iters", 100000, "--meta-batch", 4, "--workers", 2, "--checkpoint-every", 10,
                 "--out", tmp_path / "gw2", "--no-plot", "--quiet")
    wait_until(proc, lambda: iteration(ckpt) > 0, "a checkpoint past iteration 0")
    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=LIMIT)
    assert proc.returncode == status, err
    assert "Traceback" not in err and "No valid workers" not in err
    ck = load_checkpoint(ckpt)
    assert ck["status"] == "interrupted" and ck["iteration"] >= 10
    assert f"interrupted at iteration {ck['iteration']}/100000" in out
    if sig != signal.SIGINT:
        return
    # the chain goes on: resumed on the workers, it is bitwise the run that was never interrupted
    k = ck["iteration"] + 3
    assert main(["sine", "--resume", str(ckpt), "--workers", "2", "--stop-after", str(k), "--quiet"]) == 0
    assert main(["sine", "--iters", "100000", "--meta-batch", "4", "--out", str(tmp_path / "straight"),
                 "--stop-after", str(k), "--no-plot", "--quiet"]) == 0
    np.testing.assert_array_equal(load_checkpoint(ckpt)["theta"],
                                  load_checkpoint(tmp_path / "straight" / "checkpoint.npz")["theta"])


# ---------------------------------------------------------------------------------------------------
# sweeps
# ---------------------------------------------------------------------------------------------------
def ledger(out: Path) -> dict:
    with sqlite3.connect(out / "ledger.sqlite") as db:
        return {name: (state, status) for name, state, status in
                db.execute("SELECT name, state, exit_status FROM runs")}


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_a_sweeps_group_interrupts_every_run_with_a_checkpoint(tmp_path, sig, status):
    out = tmp_path / "sw"
    proc = start("sweep", "sine", "--seeds", "0-1", "--workers", 2, "--out", out, "--iters", 1000000, "--backend",
                 "numpy", "--checkpoint-every", 10, "--no-plot")
    ckpts = [out / "runs" / f"seed={s}" / "checkpoint.npz" for s in (0, 1)]
    wait_until(proc, lambda: all(iteration(c) > 0 for c in ckpts), "both runs past iteration 0")
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=LIMIT)
    assert proc.returncode == status, err
    assert "Traceback" not in err and "interrupted; 2 run(s) wrote an interrupted checkpoint" in err
    for c in ckpts:
        assert load_checkpoint(c)["status"] == "interrupted"
        assert "interrupted at iteration" in (c.parent / "log.txt").read_text()
    assert ledger(out) == {"seed=0": ("interrupted", status), "seed=1": ("interrupted", status)}


@pytest.fixture(scope="module")
def client():
    from minireptile.backends.distributed import local_client

    c = local_client(2)
    c.wait_for_workers(2)
    yield c
    c.close()
    c.cluster.close()


def test_a_run_folder_from_other_flags_is_never_taken_as_this_sweeps_result(client, tmp_path, capsys):
    out = tmp_path / "st"
    argv = ["sweep", "sine", "--seeds", "0", *RUN, "--out", str(out), "--scheduler", client.scheduler.address]
    assert main(argv) == 0
    for p in out.glob("ledger.sqlite*"):
        p.unlink()                                      # the ledger is lost
    capsys.readouterr()
    longer = [a if a != "30" else "60" for a in argv]   # --iters 60 now
    assert main(longer) == 2
    err = capsys.readouterr().err
    assert "seed=0 (exit 2" in err
    log = (out / "runs" / "seed=0" / "log.txt").read_text()
    assert "argument --iters: cannot change a resumed run (the checkpoint has 30, got 60)" in log
    assert not (out / "runs" / "seed=0" / "result.json").exists()   # the old result is not reported
    assert ledger(out)["seed=0"] == ("failed", 2)


# ---------------------------------------------------------------------------------------------------
# sweep inputs
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["se", "stop", "js", "res", "work", "seeds", "grid-file"])
def test_a_grid_key_must_be_a_full_flag_of_the_command(key):
    with pytest.raises(FlagError, match=f"--{key} is (not a flag of `minireptile sine`|a flag of the sweep)"):
        plan_runs("sine", RUN, (0,), [(f"--{key}", ("1", "2"))])


def test_huge_plans_and_seeds_are_refused_at_once(tmp_path, capsys):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match=f"at most {MAX_RUNS} seeds"):
        seed_list("0-10000000")
    with pytest.raises(argparse.ArgumentTypeError, match="expected seeds up to"):
        seed_list("99999999999999999999999")
    with pytest.raises(FlagError, match="300,000 runs"):
        plan_runs("sine", RUN, tuple(range(100)), [("--inner-lr", tuple(str(i) for i in range(1, 3001)))])
    with pytest.raises(SystemExit) as stop:
        main(["sweep", "sine", "--seeds", "0-10000000", "--out", str(tmp_path / "s")])
    assert stop.value.code == 2
    assert "argument --seeds" in capsys.readouterr().err and not (tmp_path / "s").exists()


@pytest.mark.parametrize("body,match", [(b"[grid]\nno-plot = [true]\n", "True is not a flag value"),
                                        (b"[grid]\niters = [1979-05-27]\n", "is not a flag value"),
                                        (b"\xff\xfe[grid]\n", "is not UTF-8 text")])
def test_grid_file_values_no_flag_can_take_are_flag_errors(tmp_path, body, match):
    (tmp_path / "g.toml").write_bytes(body)
    with pytest.raises(FlagError, match=match):
        read_grid_file(tmp_path / "g.toml")


# ---------------------------------------------------------------------------------------------------
# --scheduler that is not a (working) Dask scheduler
# ---------------------------------------------------------------------------------------------------
@pytest.fixture
def server():
    """A TCP server on localhost that sends ``reply`` (None: nothing) to each connection; its address."""
    import socket
    import threading

    socks = []

    def serve(reply):
        s = socket.create_server(("127.0.0.1", 0))
        socks.append(s)

        def loop():
            while True:
                try:
                    conn, _ = s.accept()
                except OSError:
                    return
                socks.append(conn)
                if reply is not None:
                    conn.sendall(reply)

        threading.Thread(target=loop, daemon=True).start()
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"

    yield serve
    for s in socks:
        s.close()


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


SCHED_RUN = ["sine", "--iters", "5", "--meta-batch", "2", "--no-plot", "--quiet"]


@pytest.mark.parametrize("reply,match", [(None, "no Dask handshake within 1 s"),
                                         (b"HTTP/1.0 200 OK\r\n\r\nhello", "is not a Dask scheduler")])
def test_a_scheduler_address_that_is_not_dask_is_refused_in_seconds(server, tmp_path, capsys, monkeypatch, reply,
                                                                     match):
    from minireptile.commands import cluster

    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 1.0)
    address = server(reply)
    assert main([*SCHED_RUN, "--scheduler", address, "--out", str(tmp_path / "r")]) == 2
    line = one_error_line(capsys)
    assert "argument --scheduler: " in line and match in line and address in line


def test_a_scheduler_without_workers_is_one_error_after_a_stated_wait(tmp_path, capsys, monkeypatch):
    from minireptile.commands import cluster

    monkeypatch.setattr(cluster, "WORKER_WAIT_SECONDS", 1.0)
    with distributed.LocalCluster(n_workers=0, processes=False, protocol="tcp://", dashboard_address=":0") as c:
        capsys.readouterr()
        assert main([*SCHED_RUN, "--scheduler", c.scheduler_address, "--out", str(tmp_path / "r")]) == 2
        line = one_error_line(capsys)
        assert f"the Dask cluster at {c.scheduler_address!r} has no workers (waited 1 s)" in line
        assert main(["sweep", "sine", "--seeds", "0", "--iters", "5", "--scheduler", c.scheduler_address, "--out",
                     str(tmp_path / "s")]) == 2
        assert "has no workers" in capsys.readouterr().err


def test_a_diverged_run_is_final_in_a_sweep_not_a_request_for_overwrite(tmp_path):
    from minireptile.commands.sweep import run_one

    argv = ["--iters", "50", "--inner-lr", "50", "--backend", "numpy", "--no-plot", "--seed", "0"]
    assert main(["sine", *argv, "--out", str(tmp_path / "r"), "--quiet"]) == 3
    res = run_one("sine", argv, str(tmp_path / "r"))
    assert res["status"] == 3 and "diverged earlier" in res["log"]
    assert "--overwrite" not in (tmp_path / "r" / "log.txt").read_text()
    assert load_checkpoint(tmp_path / "r" / "checkpoint.npz")["status"] == "diverged"
