"""One clear line for what used to be a traceback or a misleading message."""

import io

import pytest

from minireptile import cli
from minireptile.cli import main

TINY = ["--iters", "20", "--backend", "numpy", "--eval-tasks", "2", "--no-plot", "--quiet"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_compare_refuses_eval_steps_that_cannot_fit_before_training(tmp_path, capsys):
    assert main(["compare", "--quick", "--iters", "10", "--eval-steps", "1000000000000", "--out", str(tmp_path / "c"),
                 "--no-plot"]) == 2
    line = one_error_line(capsys)
    assert "argument --eval-steps: the run would need about" in line
    assert not (tmp_path / "c" / "checkpoint.npz").exists()


def test_a_text_file_given_to_resume_is_not_called_pickled_data(tmp_path, capsys):
    (tmp_path / "t.txt").write_text("hello\n")
    assert main(["sine", "--resume", str(tmp_path / "t.txt")]) == 2
    line = one_error_line(capsys)
    assert "not an .npz archive" in line and "pickle" not in line


def test_a_dangling_out_symlink_is_named(tmp_path, capsys):
    (tmp_path / "out").symlink_to(tmp_path / "nowhere")
    assert main(["sine", *TINY, "--out", str(tmp_path / "out")]) == 2
    line = one_error_line(capsys)
    assert "is a symbolic link to" in line and "does not exist" in line and "File exists" not in line


def test_a_ctrl_c_while_the_first_is_reported_is_still_one_line_and_130(monkeypatch, capsys):
    class Stderr(io.StringIO):
        hits = 0

        def write(self, text):
            Stderr.hits += 1
            if Stderr.hits == 1:
                raise KeyboardInterrupt   # the second Ctrl-C arrives while the first is being printed
            return super().write(text)

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    err = Stderr()
    monkeypatch.setattr("sys.stderr", err)
    assert main(["sine"]) == 130
    assert err.getvalue() == "minireptile: interrupted\n"



def test_a_plot_that_cannot_be_written_does_not_stop_the_json_summary(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    from minireptile.commands import plots

    def full(path, write):
        raise OSError(28, f"cannot write {str(path)!r}: No space left on device")

    monkeypatch.setattr(plots, "atomic_write", full)
    argv = ["sine", "--iters", "5", "--backend", "numpy", "--eval-tasks", "2", "--quiet", "--out", str(tmp_path / "r"),
            "--json", str(tmp_path / "r.json")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: plot not written: ") and "cannot write" in err and "No space left" in err
    assert len(err.strip().splitlines()) == 1
    assert (tmp_path / "r.json").exists() and not (tmp_path / "r" / "sine.png").exists()


def test_a_full_numba_cache_names_the_folder_and_numba_cache_dir(tmp_path, capsys, monkeypatch):
    from minireptile.backends import get_backend

    backend = get_backend("numba")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(backend), "warmup", full)
    assert main(["sine", *TINY[:2], "--out", str(tmp_path / "r"), "--no-plot", "--quiet"]) == 1
    line = one_error_line(capsys)
    assert "cannot write the numba kernel cache in " in line and "No space left on device" in line
    assert "NUMBA_CACHE_DIR" in line
