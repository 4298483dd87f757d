"""Output paths checked before any work (exit 2 naming the flag), and ``--json -`` on standard output."""

import json
import os
import shutil
import tempfile

import pytest

from minireptile.checkpoint import load_checkpoint
from minireptile.cli import main
from minireptile.commands.common import FlagError
from minireptile.commands.outputs import check_output_path

QUICK = ["--iters", "4", "--eval-tasks", "2", "--no-plot", "--backend", "numpy", "--seed", "2"]


@pytest.mark.parametrize("path, needle", [
    ("/sys/x.json", "'/sys/x.json' is under /sys, a system folder"),
    ("/proc/x.json", "'/proc/x.json' is under /proc, a system folder"),
    ("/proc/self/x.json", "'/proc/self/x.json' is under /proc, a system folder"),
    ("/dev/null", "'/dev/null' is not a regular file"),
    ("/dev/x.json", "'/dev/x.json' is under /dev, a system folder"),
])
def test_system_paths_are_refused(path, needle):
    with pytest.raises(FlagError, match=f"^argument --json: {needle}"):
        check_output_path("--json", path)


def test_folders_files_in_the_way_and_unwritable_folders_are_refused(tmp_path, monkeypatch):
    with pytest.raises(FlagError, match="is a folder; expected a file path"):
        check_output_path("--json", tmp_path)
    (tmp_path / "f").write_text("")
    with pytest.raises(FlagError, match="/f' is a file, not a folder"):
        check_output_path("--json", tmp_path / "f" / "sub" / "x.json")

    def denied(**kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)   # what root sees in a folder it may not create files in
    with pytest.raises(FlagError, match=r"^argument --plot: cannot write to '.*new' \(in '.*'\): Permission denied"):
        check_output_path("--plot", tmp_path / "new" / "x.png")


def test_a_good_path_passes_and_leaves_nothing_behind(tmp_path):
    check_output_path("--json", tmp_path / "a" / "b" / "x.json")
    check_output_path("--json", "-", stdout_ok=True)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FlagError, match="standard output"):
        check_output_path("--save", "-")


@pytest.mark.parametrize("command", [["sine"], ["compare", "--quick"]])
def test_a_json_path_under_sys_exits_2_before_the_output_folder_exists(tmp_path, capsys, command):
    status = main([*command, *(QUICK if command == ["sine"] else ["--no-plot"]), "--out", str(tmp_path / "run"),
                   "--json", "/sys/x.json"])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"minireptile {command[0]}: error: argument --json: '/sys/x.json' is under /sys, a system folder; "
                   "expected a file path in a folder of your own"]
    assert not (tmp_path / "run").exists()


def test_json_dash_writes_the_json_to_stdout_and_everything_else_to_stderr(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sine", *QUICK, "--out", "run", "--json", "-"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)   # stdout is the JSON and nothing else
    assert summary["config"] == load_checkpoint(tmp_path / "run" / "checkpoint.npz")["config"]
    assert "meta-learned MSE" in err and "checkpoint:" in err
    assert not (tmp_path / "-").exists()


def test_a_missing_data_folder_is_named_before_a_checkpoint_in_the_way(tmp_path, capsys):
    main(["sine", *QUICK, "--out", str(tmp_path), "--quiet"])      # a checkpoint of another run in --out
    status = main(["omniglot", "--data", str(tmp_path / "nonexistent"), "--out", str(tmp_path)])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument --data: no such file or folder" in err[0], err


def test_an_output_folder_under_dev_is_refused_before_it_is_created(capsys):
    out = "/dev/minireptile-test-out"
    try:
        assert main(["sine", *QUICK, "--out", out]) == 2
        assert capsys.readouterr().err.strip() == (f"minireptile sine: error: argument --out: '{out}/checkpoint.npz' "
                                                   "is under /dev, a system folder; expected a file path in a folder "
                                                   "of your own")
        assert not os.path.exists(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
