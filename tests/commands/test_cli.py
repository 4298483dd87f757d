"""The `minireptile sine` command end to end with a tiny run, and its user errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from minireptile.checkpoint import load_checkpoint
from minireptile.cli import main


def test_sine_cli_writes_json_and_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    status = main(["sine", "--iters", "40", "--eval-tasks", "8", "--out", str(out), "--json", str(tmp_path / "r.json"),
                   "--no-plot", "--dtype", "float64", "--seed", "3"])
    assert status == 0
    text = capsys.readouterr().out
    assert "meta-learned MSE" in text and "random-init MSE" in text
    summary = json.loads((tmp_path / "r.json").read_text())
    for key in ("config", "compile_seconds", "train_seconds", "seconds_per_iteration", "eval", "versions"):
        assert key in summary
    for key in ("steps", "meta_mse", "meta_ci95", "random_mse", "random_ci95"):
        assert len(summary["eval"][key]) == 7
    assert summary["eval"]["steps"] == [0, 1, 2, 4, 8, 16, 32]
    assert {"python", "numpy", "numba"} <= set(summary["versions"])
    assert summary["config"]["reptile"]["iters"] == 40 and summary["config"]["seed"] == 3
    ck = load_checkpoint(out / "checkpoint.npz")
    assert ck["iteration"] == 40 and ck["theta"].dtype == np.float64
    assert ck["theta"].shape == (1 * 64 + 64 + 64 * 64 + 64 + 64 + 1,)
    assert np.isfinite(ck["theta"]).all()
    assert ck["config"] == summary["config"]


def test_sine_cli_is_deterministic_for_a_seed(tmp_path):
    thetas = []
    for name in ("a", "b"):
        main(["sine", "--iters", "20", "--eval-tasks", "4", "--out", str(tmp_path / name), "--no-plot", "--quiet"])
        thetas.append(load_checkpoint(tmp_path / name / "checkpoint.npz")["theta"])
    np.testing.assert_array_equal(*thetas)


@pytest.mark.parametrize("flag,value", [("--inner-lr", "-1"), ("--iters", "0"), ("--meta-batch", "x"),
                                        ("--outer-lr", "nan"), ("--beta2", "1.5")])
def test_bad_flag_values_exit_2_with_one_line_naming_the_flag(flag, value):
    proc = subprocess.run([sys.executable, "-m", "minireptile", "sine", flag, value], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and "Traceback" not in proc.stderr


INTERRUPT_WHILE_LOADING = r"""
import sys


class Interrupt:  # a Ctrl-C that arrives while the command line imports its commands
    def find_spec(self, name, path=None, target=None):
        if name == "minireptile.commands.sine":
            raise KeyboardInterrupt
        return None


sys.meta_path.insert(0, Interrupt())
from minireptile.cli import main

sys.exit(main(["sine", "--iters", "1"]))
"""


def test_ctrl_c_while_the_command_line_starts_is_one_line_and_status_130(tmp_path):
    """Importing minireptile.cli imports no command; a Ctrl-C while they load is handled by main()."""
    proc = subprocess.run([sys.executable, "-c", INTERRUPT_WHILE_LOADING], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines() == ["minireptile: interrupted while starting"]
    assert not list(tmp_path.iterdir())  # nothing was written


def test_importing_the_package_or_the_command_line_is_lazy():
    code = ("import sys, minireptile, minireptile.cli\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('minireptile'))\n"
            "assert loaded == ['minireptile', 'minireptile._version', 'minireptile.cli'], loaded\n"
            "assert 'numpy' not in sys.modules\n"
            "from minireptile import meta_train, Reptile\n"
            "assert meta_train.__module__ == 'minireptile.reptile' and minireptile.tasks.stream_rng\n"
            "assert set(minireptile.__all__) <= set(dir(minireptile))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


BLAS_THREADS = """
import os, sys
from minireptile.cli import single_threaded_blas
set_here = single_threaded_blas()
import numpy
print(set_here, os.environ["OPENBLAS_NUM_THREADS"], os.environ["MKL_NUM_THREADS"], single_threaded_blas())
"""


@pytest.mark.parametrize("preset,expected", [(None, "True 1 1 False"), ("2", "True 2 1 False")])
def test_commands_default_blas_to_one_thread_unless_the_environment_says_otherwise(preset, expected):
    """Set before numpy loads BLAS (which reads them once), never over the user's value; a no-op after numpy."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    proc = subprocess.run([sys.executable, "-c", BLAS_THREADS], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == expected.split()
