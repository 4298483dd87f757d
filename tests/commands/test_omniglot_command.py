"""`minireptile omniglot` end to end on a fake Omniglot folder with tiny sizes, and its user errors."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from minireptile.checkpoint import load_checkpoint
from minireptile.cli import main

from fake_omniglot import write_small_splits

TINY = ["--ways", "3", "--shots", "1", "--train-shots", "2", "--queries", "2", "--iters", "6", "--meta-batch", "2",
        "--inner-iters", "2", "--inner-batch", "3", "--hidden", "16", "--size", "12", "--eval-episodes", "12",
        "--eval-inner-iters", "6", "--backend", "numpy", "--seed", "5"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_small_splits(tmp_path_factory.mktemp("omniglot"), drawings=4)


def test_omniglot_cli_writes_json_and_checkpoint(data, tmp_path, capsys):
    out = tmp_path / "run"
    status = main(["omniglot", "--data", str(data), *TINY, "--out", str(out), "--json", str(tmp_path / "r.json")])
    assert status == 0
    text = capsys.readouterr().out
    assert "meta-learned acc" in text and "random-init acc" in text and "pixel nearest neighbour" in text
    assert "Sanskrit, Tagalog" in text                          # the small-split protocol was chosen
    summary = json.loads((tmp_path / "r.json").read_text())
    for key in ("config", "protocol", "classes", "train_seconds", "seconds_per_iteration", "train_gflops", "eval",
                "versions"):
        assert key in summary
    ev = summary["eval"]
    assert ev["episodes"] == 12 and ev["steps"] == [0, 1, 2, 3, 5, 6]     # the sparse default schedule
    for name in ("meta", "random_init", "nearest_neighbour"):
        assert 0 <= ev[name]["accuracy"] <= 1 and ev[name]["ci95"] >= 0
    for name in ("meta", "random_init"):
        for key in ("accuracy_per_step", "accuracy_ci95_per_step", "loss_per_step", "loss_ci95_per_step"):
            assert len(ev[name][key]) == 6
        assert ev[name]["accuracy_per_step"][-1] == ev[name]["accuracy"]
    # fake small1: 8 characters x 4 rotations; meta-test: Sanskrit 4 + Tagalog 3 characters
    assert summary["classes"] == {"meta_train": 32, "meta_train_characters": 8, "meta_test": 7}
    ck = load_checkpoint(out / "checkpoint.npz")
    assert ck["iteration"] == 6 and ck["theta"].dtype == np.float32
    assert ck["theta"].shape == (144 * 16 + 16 + 16 * 3 + 3,) and np.isfinite(ck["theta"]).all()
    assert ck["config"] == summary["config"] and ck["config"]["model"]["loss"] == "ce"


def test_omniglot_cli_is_deterministic_for_a_seed(data, tmp_path):
    summaries = []
    for name in ("a", "b"):
        main(["omniglot", "--data", str(data), *TINY, "--out", str(tmp_path / name), "--json",
              str(tmp_path / f"{name}.json"), "--quiet", "--every-step"])
        summaries.append(json.loads((tmp_path / f"{name}.json").read_text())["eval"])
    assert summaries[0] == summaries[1] and summaries[0]["steps"] == list(range(7))
    np.testing.assert_array_equal(load_checkpoint(tmp_path / "a" / "checkpoint.npz")["theta"],
                                  load_checkpoint(tmp_path / "b" / "checkpoint.npz")["theta"])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_exits_3_and_checkpoints_the_last_finite_theta(data, tmp_path, capsys):
    status = main(["omniglot", "--data", str(data), *TINY, "--inner-lr", "1e30", "--out", str(tmp_path), "--quiet"])
    assert status == 3
    assert "diverged" in capsys.readouterr().err
    ck = load_checkpoint(tmp_path / "checkpoint.npz")
    assert np.isfinite(ck["theta"]).all() and ck["iteration"] < 6


@pytest.mark.parametrize("args,needle", [
    (["--data", "/nonexistent/omniglot"], "argument --data: no such file or folder"),
    (["--ways", "9"], "ways: 9 classes"),                   # meta-test has 7 characters
    (["--train-shots", "5"], "shots: shots \\+ queries = 5"),
    (["--hidden", "8,x"], "argument --hidden"),
    (["--eval-episodes", "1"], "argument --eval-episodes"),          # a CI needs 2 episodes
    (["--seed", "-1"], "argument --seed"),
])
def test_user_errors_exit_2_with_one_line(data, tmp_path, args, needle):
    argv = [sys.executable, "-m", "minireptile", "omniglot", "--data", str(data), *TINY, "--out", str(tmp_path), *args]
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert re.search(needle, lines[0]), lines[0]
