"""`minireptile omniglot` checkpoints, resumes bit for bit, stops cleanly on signals, never prints NaN."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from minireptile.checkpoint import load_checkpoint
from minireptile.cli import main

from fake_omniglot import write_small_splits

TINY = ["--ways", "3", "--shots", "1", "--train-shots", "2", "--queries", "2", "--meta-batch", "2",
        "--inner-iters", "2", "--inner-batch", "3", "--hidden", "16", "--size", "12", "--eval-episodes", "12",
        "--eval-inner-iters", "6", "--backend", "numpy", "--seed", "5", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_small_splits(tmp_path_factory.mktemp("omniglot"), drawings=4)


def omniglot(data, *argv):
    try:
        return main(["omniglot", "--data", str(data), *TINY, *map(str, argv)])
    except SystemExit as exc:  # argparse rejected a value
        return exc.code


def test_stop_after_then_resume_is_bitwise_the_uninterrupted_run(data, tmp_path, capsys):
    assert omniglot(data, "--iters", 30, "--out", tmp_path / "full") == 0
    assert omniglot(data, "--iters", 30, "--out", tmp_path / "half", "--stop-after", 11, "--checkpoint-every", 4) == 0
    half = load_checkpoint(tmp_path / "half" / "checkpoint.npz")
    assert (half["iteration"], half["status"]) == (11, "stopped")
    assert "resume with: minireptile omniglot --resume" in capsys.readouterr().out
    assert main(["omniglot", "--resume", str(tmp_path / "half" / "checkpoint.npz"), "--quiet"]) == 0
    a, b = (load_checkpoint(tmp_path / d / "checkpoint.npz") for d in ("full", "half"))
    np.testing.assert_array_equal(a["theta"], b["theta"])
    np.testing.assert_array_equal(a["state"].m, b["state"].m)
    assert b["status"] == "complete" and a["state"].t == b["state"].t == 30 * 2


def test_resume_refuses_a_changed_run_flag(data, tmp_path, capsys):
    assert omniglot(data, "--iters", 30, "--out", tmp_path, "--stop-after", 5) == 0
    capsys.readouterr()
    assert main(["omniglot", "--resume", str(tmp_path / "checkpoint.npz"), "--inner-lr", "0.5"]) == 2
    assert "argument --inner-lr: cannot change a resumed run" in capsys.readouterr().err


def test_item01_omniglot_json_over_the_checkpoint_is_refused(data, tmp_path, capsys):
    assert omniglot(data, "--iters", 4, "--out", tmp_path, "--json", tmp_path / "checkpoint.npz") == 2
    assert "argument --json: " in capsys.readouterr().err
    assert not (tmp_path / "checkpoint.npz").exists()


def test_item05_an_unusable_out_is_refused_before_training(data, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert omniglot(data, "--iters", 4, "--out", tmp_path / "file" / "run") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument --out: cannot create" in err[0]


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_item05_a_signal_writes_a_checkpoint_that_resumes_exactly(data, tmp_path, sig, status):
    ckpt = tmp_path / "run" / "checkpoint.npz"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "minireptile", "omniglot", "--data", str(data), *TINY, "--iters",
                             "10000000", "--out", str(tmp_path / "run"), "--checkpoint-every", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if load_checkpoint(ckpt)["iteration"] > 0:
                break
        except Exception:  # noqa: BLE001 (not written yet)
            pass
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    ck = load_checkpoint(ckpt)
    assert ck["status"] == "interrupted" and f"interrupted at iteration {ck['iteration']}/10000000" in out
    if sig == signal.SIGINT:
        k = ck["iteration"] + 3
        assert main(["omniglot", "--resume", str(ckpt), "--stop-after", str(k), "--quiet"]) == 0
        assert omniglot(data, "--iters", 10000000, "--out", tmp_path / "straight", "--stop-after", k) == 0
        np.testing.assert_array_equal(load_checkpoint(ckpt)["theta"],
                                      load_checkpoint(tmp_path / "straight" / "checkpoint.npz")["theta"])


def test_item07_item12_evaluation_that_diverges_exits_3_without_nan_rows(data, tmp_path, capsys):
    """Training stays finite (a tiny outer step), adapting with the huge inner lr does not."""
    status = omniglot(data, "--iters", 4, "--optimizer", "sgd", "--inner-lr", "1e20", "--outer-lr", "1e-30",
                      "--inner-iters", 1, "--eval-inner-iters", 20, "--out", tmp_path, "--json", tmp_path / "r.json")
    assert status == 3
    cap = capsys.readouterr()
    assert "nan" not in cap.out.lower() and "evaluation diverged" in cap.err and "--inner-lr" in cap.err
    assert len(cap.err.strip().splitlines()) == 1 and not (tmp_path / "r.json").exists()
    assert load_checkpoint(tmp_path / "checkpoint.npz")["status"] == "complete"


def test_item07_json_is_strict(data, tmp_path):
    assert omniglot(data, "--iters", 4, "--out", tmp_path, "--json", tmp_path / "r.json") == 0
    json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-standard {c}"))


@pytest.mark.parametrize("argv,flag", [
    (["--ways", "1"], "--ways"),
    (["--eval-episodes", "1000000000"], "--eval-episodes"),
    (["--meta-batch", "1000000000"], "--meta-batch"),
    (["--optimizer", "sgd", "--beta1", "0.5"], "--beta1"),
])
def test_item11_item21_user_errors_are_one_line_exit_2_before_any_work(data, tmp_path, capsys, argv, flag):
    assert omniglot(data, "--iters", 4, "--out", tmp_path / "o", *argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"argument {flag}: " in err[0], err
    assert not (tmp_path / "o" / "checkpoint.npz").exists()
