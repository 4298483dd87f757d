"""Data safety of the commands: run-owned folders, distinct outputs, strict checkpoints, signals, files.

Each test is named after the defect it pins (test_itemNN_..., numbered as in the list of defects the
data-safety work fixed). Tiny runs on the NumPy backend: the backend does not matter here.
"""

import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from minireptile import CheckpointError, MLPSpec, ReptileConfig, meta_train
from minireptile.backends import Backend
from minireptile.checkpoint import atomic_write, load_checkpoint, save_checkpoint
from minireptile.cli import main
from minireptile.commands import runs
from helpers import one_error_line, start_long_run, tiny_sine as sine, wait_for_progress

def rewrite(path, **changes):
    """A copy of a checkpoint with some fields replaced (None: removed)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    with open(path, "wb") as f:
        np.savez(f, **arrays)


# ---------------------------------------------------------------------------------------------------
# data loss
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--json"])
def test_item01_an_output_path_that_is_the_checkpoint_is_refused_before_any_work(tmp_path, capsys, flag):
    d = tmp_path / "d"
    assert sine("--out", d) == 0
    before = (d / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    assert sine("--out", d, "--overwrite", flag, d / "checkpoint.npz") == 2
    line = one_error_line(capsys)
    assert f"argument {flag}: " in line and "also the output of --out" in line
    assert (d / "checkpoint.npz").read_bytes() == before


def test_item02_a_second_run_on_a_held_folder_exits_2_naming_the_pid(tmp_path, capsys):
    with runs.claim_folder(tmp_path / "d"):                  # another run holds the folder
        t = time.monotonic()
        assert sine("--out", tmp_path / "d") == 2
        assert time.monotonic() - t < 60                      # at once: no waiting for the lock (loose bound)
    line = one_error_line(capsys)
    assert "argument --out: " in line and f"in use by another minireptile run (pid {os.getpid()})" in line
    assert not (tmp_path / "d" / "checkpoint.npz").exists()
    assert sine("--out", tmp_path / "d") == 0                 # released: the folder is usable again


def test_item02_two_processes_on_one_folder(tmp_path):
    """The lock is an OS lock between processes: the second exits 2 while the first trains."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "minireptile", "sine", "--iters", "10000000", "--backend", "numpy", "--out",
           str(tmp_path / "d"), "--quiet", "--no-plot"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "d" / "checkpoint.npz").exists() and time.monotonic() < deadline:
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert second.returncode == 2
        assert f"in use by another minireptile run (pid {first.pid})" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 143 and load_checkpoint(tmp_path / "d" / "checkpoint.npz")["status"] == "interrupted"


def test_item03_resume_never_replaces_another_runs_checkpoint_or_writes_outside(tmp_path, capsys):
    d = tmp_path / "d"
    assert sine("--out", d, "--stop-after", 5) == 0
    os.replace(d / "checkpoint.npz", d / "x.npz")
    assert sine("--out", d, "--seed", 7, "--stop-after", 5) == 0       # another run's checkpoint in d
    other = (d / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    assert sine("--resume", d / "x.npz") == 2
    line = one_error_line(capsys)
    assert "argument --out: " in line and "holds the checkpoint of another run" in line and "--resume" in line
    assert (d / "checkpoint.npz").read_bytes() == other
    assert sine("--resume", d / "x.npz", "--out", tmp_path / "e") == 0   # elsewhere: fine
    # a device or pipe is not a checkpoint folder: nothing is written beside it
    r = subprocess.run([sys.executable, "-m", "minireptile", "sine", "--resume", "/dev/stdin"], input=b"",
                       capture_output=True, timeout=120)
    assert r.returncode == 2 and b"argument --resume: checkpoint: " in r.stderr


def test_item04_a_new_run_over_an_unfinished_checkpoint_is_refused(tmp_path, capsys):
    d = tmp_path / "d"
    assert sine("--out", d, "--stop-after", 5) == 0
    before = (d / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    assert sine("--out", d) == 2
    line = one_error_line(capsys)
    assert f"continue it with --resume {d / 'checkpoint.npz'}" in line and "--overwrite" in line
    assert (d / "checkpoint.npz").read_bytes() == before
    assert sine("--out", d, "--overwrite") == 0
    assert load_checkpoint(d / "checkpoint.npz")["status"] == "complete"




def test_item06_sighup_writes_a_checkpoint_and_exits_129(tmp_path):
    ckpt = tmp_path / "run" / "checkpoint.npz"
    proc = start_long_run(tmp_path / "run")
    wait_for_progress(proc, ckpt)
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 129, err
    ck = load_checkpoint(ckpt)
    assert ck["status"] == "interrupted" and f"interrupted at iteration {ck['iteration']}/" in out


# ---------------------------------------------------------------------------------------------------
# strict checkpoints
# ---------------------------------------------------------------------------------------------------
@pytest.fixture
def adam_ckpt(tmp_path):
    d = tmp_path / "a"
    assert sine("--out", d, "--optimizer", "adam", "--adam-state", "carry", "--stop-after", 7) == 0
    return d / "checkpoint.npz"


@pytest.mark.parametrize("change", [
    {"adam_m": None, "adam_v": None, "adam_t": None},      # Adam state missing: would resume from zero moments
    {"adam_m": None},
    {"status": None},                                      # missing status: once read as complete
    {"iteration": np.array(True)}, {"iteration": np.array("7")}, {"iteration": np.array(20.7)},
    {"format_version": np.array("1")}, {"format_version": np.array(1.9)},
    {"adam_t": np.array(3, dtype=np.int64)},               # a step count that is not iteration x inner steps
    {"iteration": np.array(21, dtype=np.int64)},           # beyond --iters
    {"extra": np.zeros(3)},
])
def test_item08_checkpoints_are_strict(adam_ckpt, capsys, change):
    rewrite(adam_ckpt, **change)
    capsys.readouterr()
    assert sine("--resume", adam_ckpt) == 2
    assert "argument --resume: checkpoint: " in one_error_line(capsys)


def test_item08_a_checkpoint_without_carried_state_is_refused_when_the_config_carries_it(adam_ckpt):
    rewrite(adam_ckpt, adam_m=None, adam_v=None, adam_t=None)
    with pytest.raises(CheckpointError):
        ck = load_checkpoint(adam_ckpt)
        from minireptile.commands.sine import resumed_config

        class A:
            resume = adam_ckpt
        resumed_config(A, ck)


def config_with(path, edit):
    import json

    with np.load(path, allow_pickle=False) as z:
        cfg = json.loads(str(z["config"]))
    edit(cfg)
    return np.array(json.dumps(cfg))


@pytest.mark.parametrize("name,change", [
    ("inf iteration", lambda p: {"iteration": np.array(np.inf)}),
    ("inf format_version", lambda p: {"format_version": np.array(np.inf)}),
    ("inf adam_t", lambda p: {"adam_t": np.array(np.inf)}),
    ("deep config", lambda p: {"config": np.array("[" * 100000 + "]" * 100000)}),
    ("deep value", lambda p: {"config": np.array(str(config_with(p, lambda c: c.update(seed="X"))).replace(
        '"X"', "[" * 50000 + "]" * 50000))}),
    ("backend gpu", lambda p: {"config": config_with(p, lambda c: c.update(backend="gpu"))}),
    ("huge block_iters", lambda p: {"config": config_with(p, lambda c: c.update(block_iters=10**15))}),
    ("huge meta_batch", lambda p: {"config": config_with(p, lambda c: c["reptile"].update(meta_batch=10**12))}),
    ("eval_tasks 2.5", lambda p: {"config": config_with(p, lambda c: c.update(eval_tasks=2.5))}),
    ("seed True", lambda p: {"config": config_with(p, lambda c: c.update(seed=True))}),
    ("unknown key", lambda p: {"config": config_with(p, lambda c: c.update(colour="red"))}),
])
def test_item13_crafted_checkpoints_give_one_line_and_exit_2(adam_ckpt, capsys, name, change):
    rewrite(adam_ckpt, **change(adam_ckpt))
    capsys.readouterr()
    assert sine("--resume", adam_ckpt) == 2
    assert "argument --resume: " in one_error_line(capsys)


# ---------------------------------------------------------------------------------------------------
# signals
# ---------------------------------------------------------------------------------------------------
def test_item15_compiled_calls_are_bounded_in_wall_time_and_results_do_not_change(monkeypatch):
    """chunk_seconds cuts a block into calls of about that length (on a fake clock), bitwise alike."""
    import minireptile.reptile as reptile_mod

    clock = [0.0]

    class FakeTime:
        @staticmethod
        def perf_counter():
            return clock[0]

    def train_chunk(spec, theta, X, Y, plans, eps, opt, state=None):
        calls.append(len(eps))
        clock[0] += 0.1 * len(eps)                   # each iteration takes 0.1 s
        theta = theta + eps.sum()
        return theta, np.zeros(len(eps)), None

    backend = Backend("slow", None, train_chunk, None)
    spec, cfg = MLPSpec((1, 1)), ReptileConfig(iters=200, inner_steps=1, inner_batch=1)
    sample = lambda b: (np.zeros((100, 1, 1, 1)), np.zeros((100, 1, 1, 1)), np.zeros((100, 1, 1, 1), np.int64))  # noqa
    monkeypatch.setattr(reptile_mod, "time", FakeTime)
    calls = []
    whole, _ = meta_train(spec, np.zeros(2), sample, 100, cfg, backend)
    assert calls == [100, 100]
    calls = []
    seen = []
    bounded, _ = meta_train(spec, np.zeros(2), sample, 100, cfg, backend, chunk_seconds=0.25,
                            callback=lambda it, *_: seen.append(it))
    assert max(calls) * 0.1 <= 0.25 + 1e-9 and sum(calls) == 200      # no call longer than the bound
    assert len(seen) == len(calls)                                    # the callback (signals) runs after each
    np.testing.assert_allclose(bounded, whole)


def test_item17_a_second_signal_during_a_checkpoint_write_waits_for_the_write(tmp_path):
    interrupt = runs.Interruptible()
    interrupt._handler(signal.SIGINT, None)                  # the first Ctrl-C: a request
    assert interrupt.requested() and interrupt.exit_status() == 130
    with pytest.raises(KeyboardInterrupt):
        with interrupt.critical():
            interrupt._handler(signal.SIGINT, None)          # the second arrives mid-write: deferred
            save_checkpoint(tmp_path / "c.npz", np.zeros(3), {}, 4, status="running")
    assert load_checkpoint(tmp_path / "c.npz")["iteration"] == 4   # the write completed first
    assert runs._describe(tmp_path / "c.npz") == "the checkpoint of iteration 4 (status running)"


def test_item17_the_double_ctrl_c_message_names_the_iteration_in_the_file(tmp_path):
    ckpt = tmp_path / "run" / "checkpoint.npz"
    proc = start_long_run(tmp_path / "run")
    wait_for_progress(proc, ckpt)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    ck = load_checkpoint(ckpt)
    m = re.search(r"holds the checkpoint of iteration (\d+)", err) or re.search(r"interrupted at iteration (\d+)", out)
    assert m and int(m.group(1)) == ck["iteration"], (out, err)


# ---------------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------------
def test_item20_files_honour_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        save_checkpoint(tmp_path / "c.npz", np.zeros(3), {}, 0)
        atomic_write(tmp_path / "j.json", lambda f: f.write(b"{}"))
    finally:
        os.umask(old)
    for name in ("c.npz", "j.json"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o640


def test_item20_stale_temporaries_of_dead_runs_are_removed(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / ".checkpoint.npz.2147483647.abc12345.tmp").write_bytes(b"PK half")   # our name, of a pid that is gone
    assert sine("--out", d) == 0
    assert sorted(p.name for p in d.iterdir()) == [".minireptile.lock", "checkpoint.npz"]


def test_item20_a_full_disk_message_names_the_path(tmp_path):
    def full(f):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match=re.escape(str(tmp_path / "x.npz")) + ".*No space left"):
        atomic_write(tmp_path / "x.npz", full)


def test_item20_printed_commands_are_shell_quoted(tmp_path, capsys):
    d = tmp_path / "a dir; rm -rf x"
    assert sine("--out", d, "--stop-after", 3) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("resume with: "))
    assert shlex.split(line[len("resume with: "):]) == ["minireptile", "sine", "--resume", str(d / "checkpoint.npz")]


# ---------------------------------------------------------------------------------------------------
# inconsistencies
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag,value", [("--beta1", "0.5"), ("--beta2", "0.9"), ("--adam-state", "carry")])
def test_item21_adam_only_flags_with_sgd_are_refused(tmp_path, capsys, flag, value):
    assert sine("--out", tmp_path, flag, value) == 2
    assert f"argument {flag}: applies to --optimizer adam only" in one_error_line(capsys)


def test_item21_a_folder_where_the_plot_goes_is_a_flag_error(tmp_path, capsys):
    (tmp_path / "sine.png").mkdir()
    assert main(["sine", "--iters", "20", "--backend", "numpy", "--eval-tasks", "2", "--quiet", "--out",
                 str(tmp_path)]) == 2
    assert "is a folder; expected a file path" in one_error_line(capsys)


@pytest.mark.parametrize("flag", ["--meta-batch", "--eval-tasks", "--inner-steps"])
def test_item11_sizes_that_cannot_be_allocated_are_refused_with_the_estimate(tmp_path, capsys, flag):
    assert sine("--out", tmp_path, flag, 10**9) == 2
    line = one_error_line(capsys)
    assert f"argument {flag}: the run would need about" in line and "GiB" in line
    assert not (tmp_path / "checkpoint.npz").exists()


@pytest.mark.parametrize("argv,flag,says", [
    (["--inner-lr", "1e-46"], "--inner-lr", "is 0 in float32"),
    (["--outer-lr", "1e39"], "--outer-lr", "overflows float32"),
])
def test_item18_flags_meaningless_in_the_dtype_are_refused(tmp_path, capsys, argv, flag, says):
    assert sine("--out", tmp_path, *argv) == 2
    line = one_error_line(capsys)
    assert f"argument {flag}: " in line and says in line
    assert sine("--out", tmp_path / "f64", *argv, "--dtype", "float64", "--stop-after", 2) == 0
