"""Checkpoints: round trip, atomic replacement, and a clear CheckpointError for every bad file."""

import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from minireptile import AdamState, CheckpointError
from minireptile.checkpoint import FORMAT_VERSION, atomic_write, load_checkpoint, save_checkpoint

CONFIG = {"command": "sine", "seed": 3, "reptile": {"iters": 10}}


def write(path, theta=None, state=None, **kw):
    theta = np.linspace(-1, 1, 7, dtype=np.float32) if theta is None else theta
    save_checkpoint(path, theta, CONFIG, 5, state, **kw)
    return theta


def test_round_trip_with_and_without_adam_state(tmp_path):
    theta = write(tmp_path / "a.npz", status="running")
    ck = load_checkpoint(tmp_path / "a.npz")
    np.testing.assert_array_equal(ck["theta"], theta)
    assert ck["theta"].dtype == np.float32 and ck["config"] == CONFIG and ck["iteration"] == 5
    assert ck["state"] is None and ck["status"] == "running" and ck["format_version"] == FORMAT_VERSION
    state = AdamState(np.arange(7.0), np.full(7, 0.5), 42)
    write(tmp_path / "b.npz", theta.astype(np.float64), state)
    ck = load_checkpoint(tmp_path / "b.npz")
    np.testing.assert_array_equal(ck["state"].m, state.m)
    np.testing.assert_array_equal(ck["state"].v, state.v)
    assert ck["state"].t == 42 and ck["status"] == "complete"
    with np.load(tmp_path / "b.npz", allow_pickle=False) as z:  # plain arrays, no pickled objects
        assert all(z[k].dtype != object for k in z.files)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "ck.npz"
    theta = write(path)
    before = path.read_bytes()

    def half_then_fail(f):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    def half_then_interrupt(f):  # a second Ctrl-C in the middle of a write
        f.write(b"PK\x03\x04")
        raise KeyboardInterrupt

    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_interrupt)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ck.npz"]
    np.testing.assert_array_equal(load_checkpoint(path)["theta"], theta)


def test_save_refuses_what_it_could_not_load_back(tmp_path):
    with pytest.raises(ValueError, match="theta: expected finite values"):
        write(tmp_path / "x.npz", np.array([1.0, np.nan]))
    with pytest.raises(TypeError, match="theta: expected a float32 or float64 array of shape"):
        write(tmp_path / "x.npz", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="status: expected one of"):
        write(tmp_path / "x.npz", status="paused")
    assert not (tmp_path / "x.npz").exists()


def rewrite(path, **changes):
    """A copy of a valid checkpoint with some fields replaced (None: removed)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    np.savez(path, **arrays)


BAD_FILES = {
    "missing": (lambda p: p.unlink(), r"no file at"),
    "empty": (lambda p: p.write_bytes(b""), r"truncated, corrupted or not a minireptile checkpoint"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
                  r"truncated, corrupted or not a minireptile checkpoint \(BadZipFile"),
    "text": (lambda p: p.write_text("theta = [1, 2, 3]\n"), r"truncated, corrupted or not a minireptile checkpoint"),
    "pickle": (lambda p: p.write_bytes(pickle.dumps({"theta": [1.0]})), r"truncated, corrupted or not a minireptile"),
    "npy": (lambda p: np.save(open(p, "wb"), np.zeros(3)), r"is a single \.npy array, not a minireptile checkpoint"),
    "foreign npz": (lambda p: np.savez(p, weights=np.zeros(3)), r"is not a minireptile checkpoint \(no 'format' field"),
    "pickled object array": (lambda p: rewrite(p, config=np.array([{"a": 1}], dtype=object)),
                             r"Object arrays cannot be loaded when allow_pickle=False"),
    "wrong version": (lambda p: rewrite(p, format_version=np.array(FORMAT_VERSION + 1)),
                      rf"has format version {FORMAT_VERSION + 1}; this minireptile reads version {FORMAT_VERSION}"),
    "no version": (lambda p: rewrite(p, format_version=None), r"has no readable format version"),
    "no theta": (lambda p: rewrite(p, theta=None), r"is corrupted \(missing or unreadable field: 'theta'\)"),
    "bad json": (lambda p: rewrite(p, config=np.array("{not json")), r"is corrupted \(missing or unreadable field"),
    "config not an object": (lambda p: rewrite(p, config=np.array("[1, 2]")), r"its config is not a JSON object"),
    "nan theta": (lambda p: rewrite(p, theta=np.array([1.0, np.nan])), r"theta holds NaN or inf"),
    "int theta": (lambda p: rewrite(p, theta=np.arange(3)), r"theta is not a float32/float64 vector"),
    "negative iteration": (lambda p: rewrite(p, iteration=np.array(-1)), r"iteration is negative"),
    "unknown status": (lambda p: rewrite(p, status=np.array("paused")), r"status 'paused' is not one of"),
    "state mismatch": (lambda p: rewrite(p, adam_m=np.zeros(2), adam_v=np.zeros(2), adam_t=np.array(1)),
                       r"the Adam state does not match theta"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_raise_checkpoint_error_naming_the_file(tmp_path, case):
    path = tmp_path / "ck.npz"
    write(path)
    damage, pattern = BAD_FILES[case]
    damage(path)
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and isinstance(info.value, ValueError)


def test_a_flipped_byte_in_the_data_is_caught_by_the_zip_checksum(tmp_path):
    path = tmp_path / "ck.npz"
    write(path, np.linspace(-1, 1, 1000))
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("theta.npy")
    # the member's data starts after its 30-byte local header, name and extra field; skip the .npy header too
    at = info.header_offset + 30 + len(info.filename) + 200 + 4000
    raw[at] ^= 0x55
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"truncated, corrupted .*\(BadZipFile: Bad CRC-32"):
        load_checkpoint(path)


def test_a_directory_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no file at"):
        load_checkpoint(tmp_path)


def test_config_is_stored_as_json_text(tmp_path):
    write(tmp_path / "a.npz")
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:
        assert json.loads(str(z["config"])) == CONFIG
        assert str(z["format"]) == "minireptile-checkpoint"
