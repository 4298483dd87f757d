"""Nothing but a run's own files is touched: the lock, temporary files, output paths, a lost lock.

Tiny runs on the NumPy backend; the long runs are waited on by condition (a checkpoint reached),
never by time.
"""

import os
import signal
import subprocess
import sys

import pytest

from minireptile import Reptile
from minireptile.checkpoint import atomic_write, load_checkpoint
from minireptile.safety import LockLostError, check_lock, lock_identity, remove_stale_temps, temp_prefix
from helpers import one_error_line, start_long_run, tiny_sine as sine, wait_for_progress

def test_a_lock_symlinked_elsewhere_is_never_followed(tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / ".minireptile.lock").symlink_to(victim)
    assert sine("--out", tmp_path / "s") == 2
    line = one_error_line(capsys)
    assert "argument --out: " in line and "symbolic link" in line
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "s" / "checkpoint.npz").exists()


def test_a_fifo_lock_is_named_clearly(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    os.mkfifo(tmp_path / "s" / ".minireptile.lock")
    assert sine("--out", tmp_path / "s") == 2
    line = one_error_line(capsys)
    assert "not a regular file" in line and ".minireptile.lock" in line and "Invalid argument" not in line


def test_only_our_own_temporary_files_of_dead_processes_are_removed(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    user = d / ".notes.tmp"
    user.write_text("mine")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = d / f".checkpoint.npz.{int(dead.stdout)}.abcd1234.tmp"
    live = d / f"{temp_prefix('checkpoint.npz')}abcd1234.tmp"
    for p in (stale, live):
        p.write_text("x")
    assert sine("--out", d) == 0
    assert user.read_text() == "mine" and live.exists() and not stale.exists()
    assert remove_stale_temps(d) == []


def test_atomic_writes_use_names_the_cleanup_recognises(tmp_path):
    seen = []
    atomic_write(tmp_path / "a.json", lambda f: seen.extend(os.listdir(tmp_path)))
    assert len(seen) == 1 and seen[0].startswith(temp_prefix("a.json")) and seen[0].endswith(".tmp")


def test_json_over_another_runs_checkpoint_or_a_lock_is_refused(tmp_path, capsys):
    assert sine("--out", tmp_path / "a") == 0
    ckpt = tmp_path / "a" / "checkpoint.npz"
    before = ckpt.read_bytes()
    capsys.readouterr()
    assert sine("--out", tmp_path / "b", "--json", ckpt) == 2
    line = one_error_line(capsys)
    assert "argument --json: " in line and "is a minireptile checkpoint" in line
    assert ckpt.read_bytes() == before and not (tmp_path / "b" / "checkpoint.npz").exists()
    assert sine("--out", tmp_path / "b", "--json", tmp_path / "b" / ".minireptile.lock") == 2
    assert "is a minireptile lock file" in one_error_line(capsys)


def test_save_refuses_fifos_devices_folders_and_a_runs_checkpoint(tmp_path):
    model = Reptile((1, 8, 1))
    os.mkfifo(tmp_path / "f")
    for path in (tmp_path / "f", "/dev/null", tmp_path):
        with pytest.raises(ValueError, match=r"^path: .*(not a regular file|is a folder)"):
            model.save(path)
    assert (tmp_path / "f").is_fifo()
    assert sine("--out", tmp_path / "run") == 0
    before = (tmp_path / "run" / "checkpoint.npz").read_bytes()
    with pytest.raises(ValueError, match="path: .* is a minireptile checkpoint"):
        model.save(tmp_path / "run" / "checkpoint.npz")
    assert (tmp_path / "run" / "checkpoint.npz").read_bytes() == before
    copied = tmp_path / "copied.npz"   # a run's checkpoint away from its folder and lock: still not a model's
    copied.write_bytes(before)
    with pytest.raises(ValueError, match="path: .* is a minireptile checkpoint"):
        model.save(copied)
    assert copied.read_bytes() == before
    model.save(tmp_path / "m.npz")
    model.save(tmp_path / "m.npz")   # replacing one's own saved model is fine
    assert Reptile.load(tmp_path / "m.npz").theta.shape == model.theta.shape


def test_check_lock_stops_a_run_whose_lock_is_gone_or_not_its_own(tmp_path):
    from minireptile.commands import runs

    with runs.claim_folder(tmp_path / "d"):
        check_lock(tmp_path / "d")
        lock = tmp_path / "d" / ".minireptile.lock"
        identity = lock_identity(tmp_path / "d")
        copy = lock.read_bytes()
        lock.unlink()
        lock.write_bytes(copy)                               # the same words in another file: not our lock
        with pytest.raises(LockLostError, match="was replaced by another file"):
            check_lock(tmp_path / "d", identity=identity)
        (tmp_path / "d" / ".minireptile.lock").write_text("12345\nelsewhere\n")
        with pytest.raises(LockLostError, match="belongs to another run"):
            check_lock(tmp_path / "d")
        (tmp_path / "d" / ".minireptile.lock").unlink()
        with pytest.raises(LockLostError, match="is gone"):
            check_lock(tmp_path / "d")




def test_a_run_whose_lock_was_removed_stops_and_never_writes_over_the_new_owner(tmp_path):
    d = tmp_path / "d"
    a = start_long_run(d, every=20)
    try:
        wait_for_progress(a, d / "checkpoint.npz")
        (d / ".minireptile.lock").unlink()                # the lock is bypassed by hand
        assert sine("--out", d, "--overwrite", "--seed", "7", "--stop-after", "5") == 0
        out, err = a.communicate(timeout=300)
    finally:
        if a.poll() is None:
            a.kill()
    assert a.returncode == 1 and "Traceback" not in err, err
    assert "lock of the output folder" in err and "stopped without writing" in err
    ck = load_checkpoint(d / "checkpoint.npz")
    assert ck["config"]["seed"] == 7 and ck["iteration"] == 5   # B's checkpoint, untouched by A


def test_a_run_whose_folder_was_moved_does_not_recreate_it(tmp_path):
    d = tmp_path / "d"
    a = start_long_run(d, every=20)
    try:
        wait_for_progress(a, d / "checkpoint.npz")
        os.rename(d, tmp_path / "moved")
        out, err = a.communicate(timeout=300)
    finally:
        if a.poll() is None:
            a.send_signal(signal.SIGKILL)
    assert a.returncode == 1 and "is gone" in err and "Traceback" not in err, err
    assert not d.exists()


def test_a_full_disk_when_taking_the_lock_names_the_lock(tmp_path, capsys, monkeypatch):
    from minireptile import safety

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safety, "write_owner", full)
    assert sine("--out", tmp_path / "s") == 2
    line = one_error_line(capsys)
    assert "cannot write the lock" in line and ".minireptile.lock" in line and "disk full" in line
