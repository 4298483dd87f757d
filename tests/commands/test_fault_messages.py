"""One clear line for what used to be a traceback or a misleading message."""

import io

import pytest

from minireptile import cli
from minireptile.cli import main
from helpers import TINY_SINE as TINY, one_error_line



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



def test_a_signal_while_a_long_block_is_sampled_stops_at_once_at_the_last_chunk(tmp_path, capsys, own_signals):
    import os
    import signal
    import time

    import numpy as np

    from minireptile import InnerOptimizer, MLPSpec, ReptileConfig, get_backend, get_preset, init_params, stream_rng
    from minireptile.checkpoint import load_checkpoint
    from minireptile.commands import runs
    from minireptile.tasks import sine_block

    spec = MLPSpec((1, 8, 1))
    rcfg = ReptileConfig(iters=100, meta_batch=2, inner_steps=2, inner_batch=5, inner=InnerOptimizer(lr=0.01))
    preset, waited = get_preset("gist"), []

    def sample_block(b):
        if b == 1:   # the next block is huge: sampling it would take minutes
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100_000):
                waited.append(1)
                time.sleep(0.001)
        return sine_block(1, b, 3, 2, preset, 2, 5)

    ckpt = tmp_path / "checkpoint.npz"
    with runs.claim_folder(tmp_path):
        status, it, *_ = runs.train_with_checkpoints(
            prog="minireptile sine", command="sine", ckpt_path=ckpt, cfg={}, spec=spec,
            theta=init_params(spec, stream_rng(1, 0), np.float64), state=None, start=0, stop=100,
            sample_block=sample_block, block_iters=3, rcfg=rcfg, backend=get_backend("numpy"), every=0,
            progress=lambda *a: None)
    assert status == 130 and it == 3 and len(waited) < 1000   # abandoned at once, not after the sampling
    ck = load_checkpoint(ckpt)
    assert ck["status"] == "interrupted" and ck["iteration"] == 3
    assert "interrupted at iteration 3/100" in capsys.readouterr().out


def test_epoch_plans_in_pieces_are_the_same_numbers_as_one_draw(monkeypatch):
    import numpy as np

    from minireptile.tasks import streams

    def one_draw(rng, n_tasks, n_points, steps, batch):
        n_epochs = -(-steps * batch // n_points)
        keys = rng.random((n_tasks, n_epochs, n_points))
        perm = np.argsort(keys, axis=-1, kind="stable").reshape(n_tasks, n_epochs * n_points)
        return perm[:, : steps * batch].reshape(n_tasks, steps, batch)

    monkeypatch.setattr(streams, "PLAN_PIECE", 64)   # many pieces
    for args in [(7, 10, 5, 3), (40, 50, 80, 10), (3, 5, 1, 5)]:
        a, b = np.random.default_rng(3), np.random.default_rng(3)
        np.testing.assert_array_equal(streams.epoch_plan(a, *args), one_draw(b, *args))
        assert a.random() == b.random()              # and the generator is left in the same state
