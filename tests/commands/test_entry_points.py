"""What a new user meets: the help of every entry point, sweep's help and ETA, tables and paths as printed."""

import importlib.util

import pytest

from minireptile.cli import build_parser, main
from minireptile.commands import sweep
from minireptile.commands.sine import results_table
from minireptile.evaluation import EvalResult
from minireptile.progress import format_number

import numpy as np

QUICK = ["--iters", "6", "--eval-tasks", "2", "--no-plot", "--backend", "numpy", "--seed", "2"]


def test_bare_help_says_which_commands_take_seed_and_quiet(capsys):
    assert main([]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "sine, omniglot and compare take --seed (default 1), --threads, --backend and --quiet" in text
    assert "Every command takes" not in text
    sub = build_parser()._subparsers._group_actions[0].choices
    for command in ("sine", "omniglot", "compare"):
        flags = {s for a in sub[command]._actions for s in a.option_strings}
        assert {"--seed", "--threads", "--backend", "--quiet"} <= flags, command
    flags = {s for a in sweep.sweep_flags()._actions for s in a.option_strings}
    assert not {"--seed", "--quiet"} & flags


@pytest.mark.parametrize("help_flag", ["--help", "-h"])
def test_sweep_command_help_lists_the_sweep_flags_and_the_commands(capsys, help_flag):
    assert main(["sweep", "sine", "--seeds", "0-1", help_flag]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--seeds LIST" in out and "(default 0-4" in out and "default: one worker per core" in out
    assert "flags of each run (minireptile sine)" in out and "--inner-lr" in out and "--preset" in out


def test_sweep_help_lists_its_own_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--seeds LIST" in out and "(default 0-4" in out and "--grid FLAG=V1,V2" in out


def test_a_sweep_without_dask_says_so_before_creating_anything(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name, *a))
    assert main(["sweep", "sine", "--seeds", "0", "--out", str(tmp_path / "sw"), *QUICK]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['minireptile sweep: error: runs its runs on a Dask cluster, and Dask is not installed: '
                   'pip install "minireptile[distributed]"']
    assert not (tmp_path / "sw").exists()
    assert main(["sweep", "sine", "--workers", "2", "--out", str(tmp_path / "sw"), *QUICK]) == 2
    assert "argument --workers: needs Dask" in capsys.readouterr().err


def test_sweep_eta_counts_what_running_runs_have_done():
    report = sweep.Report(total=6, slots=2)
    report.durations = [30.0, 30.0]
    report.started("a", now=100.0)
    report.started("b", now=110.0)
    # at t=128: a needs 2 s more, b 12 s; the 2 queued runs go to the slot freed first: a's (2 + 30 = 32 s)
    # and then b's (12 + 30 = 42 s)
    assert report.eta(left=4, now=128.0) == pytest.approx(42.0)
    assert report.eta(left=2, now=128.0) == pytest.approx(12.0)     # only the running ones are left
    report.finished("a")
    report.finished("b")
    assert report.eta(left=1, now=200.0) == pytest.approx(30.0)     # one queued run, nothing running


def test_numbers_switch_to_scientific_notation_past_their_width():
    assert format_number(0.12345) == "0.1235"
    assert format_number(35604487149143220.0) == "3.560e+16"
    assert format_number(12345.6789) == "12345.6789"
    assert format_number(123456.0, 3, 6) == "1.23e+05"


def test_the_sine_table_has_no_trailing_spaces_and_huge_losses_stay_in_columns():
    big = np.array([1.0, 3.5604487149143220e16])
    meta = EvalResult(steps=(0, 1), losses=np.zeros((2, 2)), mean=big, ci95=big / 10)
    random = EvalResult(steps=(0, 1), losses=np.zeros((2, 2)), mean=np.array([1.0, 2.0]), ci95=np.array([0.1, 0.2]))
    lines = results_table((0, 1), meta, random).splitlines()
    assert all(line == line.rstrip() for line in lines)
    assert "3.560e+16 ± 3.560e+15" in lines[2] and len(lines[2]) <= len(lines[1]) + 2


def test_quiet_prints_no_leading_blank_line_and_a_resume_prints_the_path_as_given(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sine", *QUICK, "--out", "run", "--quiet", "--stop-after", "3"]) == 0
    first = capsys.readouterr().out
    assert "checkpoint: run/checkpoint.npz" in first
    assert main(["sine", "--resume", "run/checkpoint.npz", "--no-plot", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("MSE on the 50-point grid") and "checkpoint: run/checkpoint.npz\n" in out
    assert all(line == line.rstrip() for line in out.splitlines())
