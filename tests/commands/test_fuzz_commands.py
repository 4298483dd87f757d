"""Fuzzing every command's flags and every checkpoint field (hypothesis, derandomized, tiny runs).

Whatever the flags or the file, a command ends with exit 0, 2 or 3 and no traceback; exit 2 prints one
line naming a flag; a damaged checkpoint field is refused by `--resume` (exit 2) or is a value that
still describes a valid run; `load_checkpoint` raises nothing but CheckpointError.
"""

import contextlib
import io
import json
import os
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minireptile import CheckpointError
from minireptile.checkpoint import load_checkpoint
from minireptile.cli import main

from fake_omniglot import write_small_splits

OMNIGLOT_TINY = ["--ways", "3", "--shots", "1", "--train-shots", "2", "--queries", "2", "--meta-batch", "2",
                 "--inner-iters", "2", "--inner-batch", "3", "--hidden", "8", "--size", "8", "--eval-episodes", "4",
                 "--eval-inner-iters", "2", "--backend", "numpy", "--iters", "4", "--quiet"]
COMPARE_TINY = ["--iters", "3", "--meta-batch", "2", "--eval-tasks", "3", "--shots", "5", "--eval-steps", "1",
                "--algorithms", "reptile", "maml", "random", "--backend", "numpy", "--quiet"]
SINE_TINY = ["--iters", "4", "--eval-tasks", "2", "--backend", "numpy", "--no-plot", "--quiet"]

HOSTILE = ["-1", "0", "1", "2", "1.5", "nan", "inf", "-inf", "1e308", "1e-320", "abc", "", "99999999999999999999"]
FLAGS = {
    "omniglot": ["--ways", "--shots", "--train-shots", "--queries", "--iters", "--meta-batch", "--inner-iters",
                 "--inner-batch", "--inner-lr", "--outer-lr", "--outer-lr-final", "--beta1", "--beta2", "--hidden",
                 "--size", "--eval-episodes", "--eval-inner-iters", "--eval-inner-batch", "--seed", "--threads",
                 "--checkpoint-every", "--stop-after"],
    "compare": ["--noise-std", "--iters", "--meta-batch", "--train-shots", "--inner-lr", "--maml-steps", "--outer-lr",
                "--reptile-steps", "--reptile-batch", "--reptile-eps", "--shots", "--eval-steps", "--eval-tasks",
                "--eval-query", "--seed", "--threads", "--checkpoint-every", "--stop-after"],
}


@pytest.fixture(scope="module")
def omniglot_data():
    with tempfile.TemporaryDirectory() as tmp:
        yield write_small_splits(__import__("pathlib").Path(tmp), drawings=4)


def run(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as exc:    # argparse rejected a value
            status = exc.code
    return status, err.getvalue()


def check_outcome(status, err, flags):
    assert "Traceback" not in err, err
    assert status in (0, 2, 3), (status, err)
    if status == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and (not flags or any(f"argument {f}" in lines[0] for f in flags)), lines


@pytest.mark.parametrize("command", ["omniglot", "compare"])
@given(data=st.data())
@settings(max_examples=20)
def test_fuzz_every_command_flags(command, data, omniglot_data):
    flags = data.draw(st.lists(st.sampled_from(FLAGS[command]), min_size=1, max_size=2, unique=True))
    argv = []
    for flag in flags:
        argv += [flag, data.draw(st.sampled_from(HOSTILE), label=flag)]
    with tempfile.TemporaryDirectory() as tmp:
        base = ["--data", str(omniglot_data), *OMNIGLOT_TINY] if command == "omniglot" else COMPARE_TINY
        status, err = run([command, *base, "--out", tmp, *argv])
        check_outcome(status, err, flags)
        if status in (0, 3):
            ck = load_checkpoint(os.path.join(tmp, "checkpoint.npz"))
            assert np.isfinite(ck["theta"]).all()


# ---------------------------------------------------------------------------------------------------
# every checkpoint field
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoints(omniglot_data):
    """A stopped run of every command (each resumable)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = {}
        for command, argv in (("sine", SINE_TINY + ["--optimizer", "adam", "--adam-state", "carry"]),
                              ("omniglot", ["--data", str(omniglot_data), *OMNIGLOT_TINY]), ("compare", COMPARE_TINY)):
            folder = os.path.join(tmp, command)
            status, err = run([command, *argv, "--out", folder, "--stop-after", "2"])
            assert status == 0, err
            out[command] = os.path.join(folder, "checkpoint.npz")
        yield out


def config_paths(cfg, prefix=()):
    for k, v in cfg.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from config_paths(v, prefix + (k,))


VALUES = st.sampled_from([True, False, None, "7", "", 2.5, -1, 0, 10**30, 1e308, float("inf"), [], {}, [1, 2],
                          {"a": 1}, "gpu", "[[[[[[[[]]]]]]]]"])
ARRAYS = st.sampled_from([np.array(True), np.array("1"), np.array(1.9), np.array(np.inf), np.array(-3),
                          np.array(10**18), np.zeros(3), np.zeros((2, 2)), np.array([np.nan]), np.array(b"x")])


@pytest.mark.parametrize("command", ["sine", "omniglot", "compare"])
@given(data=st.data())
@settings(max_examples=40)
def test_fuzz_every_checkpoint_field(command, data, checkpoints):
    with np.load(checkpoints[command], allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    cfg = json.loads(str(arrays["config"]))
    if data.draw(st.booleans(), label="config field"):
        path = data.draw(st.sampled_from(sorted(config_paths(cfg))), label="key")
        node = cfg
        for k in path[:-1]:
            node = node[k]
        if data.draw(st.booleans(), label="remove"):
            del node[path[-1]]
        else:
            node[path[-1]] = data.draw(VALUES, label="value")
        arrays["config"] = np.array(json.dumps(cfg))
    else:
        field = data.draw(st.sampled_from(sorted(arrays)), label="field")
        if data.draw(st.booleans(), label="remove"):
            del arrays[field]
        else:
            arrays[field] = data.draw(ARRAYS, label="array")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "run", "checkpoint.npz")
        os.makedirs(os.path.dirname(path))
        with open(path, "wb") as f:
            np.savez(f, **arrays)
        try:
            load_checkpoint(path)
        except CheckpointError as exc:
            assert path in str(exc)
        status, err = run([command, "--resume", path, "--stop-after", "3", "--quiet"])
        check_outcome(status, err, ["--resume", "--out", "--stop-after", "--backend", "--data", "--threads"])
        if status == 0:                 # the change still described a valid run: what is on disk is whole
            assert np.isfinite(load_checkpoint(path)["theta"]).all()
        shutil.rmtree(tmp, ignore_errors=True)
