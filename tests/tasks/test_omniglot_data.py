"""The Omniglot loader on generated PNG trees: layout, resize, rotations, cache, splits, bad paths."""

import io
import os
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from minireptile.tasks import omniglot as datasets
from minireptile.tasks.omniglot import find_sources, load_source, omniglot_split, with_rotations

from fake_omniglot import SMALL1, SMALL2, write_folder, write_small_splits, write_zip


def png(array01: np.ndarray) -> bytes:
    """A 1-bit PNG from a boolean array (True = paper, as Omniglot's files)."""
    buf = io.BytesIO()
    Image.fromarray(array01.astype(np.uint8) * 255).convert("1").save(buf, format="PNG")
    return buf.getvalue()


# ------------------------------------------------------------------------------------ layout
def test_zip_layout_classes_and_order(tmp_path):
    z = write_zip(tmp_path / "images_background.zip", {"Bb": 2, "Aa": 3}, drawings=4)
    data = load_source(z, use_cache=False)
    assert data.images.shape == (20, 28, 28) and data.images.dtype == np.uint8
    assert data.labels.dtype == np.int64
    # characters numbered in sorted (alphabet, character) order, drawings grouped by character
    assert data.class_names == ("Aa/character01", "Aa/character02", "Aa/character03",
                                "Bb/character01", "Bb/character02")
    np.testing.assert_array_equal(data.labels, np.repeat(np.arange(5), 4))
    assert data.alphabet_of_class() == ("Aa",) * 3 + ("Bb",) * 2
    # characters differ, drawings of one character are close
    assert not np.array_equal(data.images[0], data.images[4])
    assert np.abs(data.images[0].astype(int) - data.images[1]).mean() < np.abs(data.images[0].astype(int) - data.images[4]).mean()


def test_unpacked_folder_gives_the_same_arrays_as_the_zip(tmp_path):
    alphabets = {"Aa": 2, "Bb": 2}
    from_zip = load_source(write_zip(tmp_path / "images_evaluation.zip", alphabets), use_cache=False)
    from_dir = load_source(write_folder(tmp_path / "unpacked", alphabets), use_cache=False)
    np.testing.assert_array_equal(from_zip.images, from_dir.images)
    np.testing.assert_array_equal(from_zip.labels, from_dir.labels)
    assert from_zip.class_names == from_dir.class_names


def test_find_sources(tmp_path):
    write_small_splits(tmp_path / "zips")
    assert list(find_sources(tmp_path / "zips")) == ["images_background_small1", "images_background_small2"]
    write_folder(tmp_path / "one", {"Aa": 2})
    assert list(find_sources(tmp_path / "one")) == ["one"]
    z = write_zip(tmp_path / "x.zip", {"Aa": 2})
    assert find_sources(z) == {"x": z}
    # an unpacked official folder beside its zip is read instead of the zip
    write_folder(tmp_path / "zips" / "images_background_small1", {"Aa": 2})
    assert find_sources(tmp_path / "zips")["images_background_small1"].is_dir()


# ------------------------------------------------------------------------------------ resize
def test_resize_to_28_inverts_and_keeps_geometry(tmp_path):
    paper = np.ones((105, 105), bool)
    left_ink = paper.copy()
    left_ink[:, :52] = False          # left half black ink
    files = {"A/c1/a.png": png(paper), "A/c1/b.png": png(left_ink)}
    root = tmp_path / "split"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    data = load_source(root, use_cache=False)
    blank, half = data.images
    assert blank.shape == (28, 28) and blank.max() == 0                 # paper -> 0
    assert half[:, :13].min() >= 250 and half[:, 15:].max() <= 5         # ink -> 255, on the left
    assert np.all(half == half[0])                                       # every row alike
    assert 100 < half[0, 13] < 250     # column 13 covers 48.75..52.5 of 0..105: a grey, anti-aliased edge
    small = load_source(root, size=14, use_cache=False)
    assert small.images.shape == (2, 14, 14)
    vec = data.vectors(np.float64)
    assert vec.shape == (2, 784) and vec.dtype == np.float64 and vec.max() == 1.0 and vec.min() == 0.0


# ------------------------------------------------------------------------------------ rotations
def test_rotations_are_new_classes(tmp_path):
    data = load_source(write_zip(tmp_path / "images_background.zip", {"Aa": 3}), use_cache=False)
    rot = with_rotations(data)
    assert rot.n_classes == 4 * data.n_classes and len(rot.images) == 4 * len(data.images)
    assert rot.class_names[:4] == ("Aa/character01", "Aa/character01@90", "Aa/character01@180", "Aa/character01@270")
    for c in range(data.n_classes):
        original = data.images[data.labels == c]
        for r in range(4):
            np.testing.assert_array_equal(rot.images[rot.labels == 4 * c + r], np.rot90(original, k=r, axes=(1, 2)))
    only_180 = with_rotations(data, (180,))
    np.testing.assert_array_equal(only_180.images, data.images[:, ::-1, ::-1])
    with pytest.raises(ValueError, match="rotations"):
        with_rotations(data, (45,))


# ------------------------------------------------------------------------------------ cache
def test_cache_is_written_beside_the_zip_and_hit_without_decoding(tmp_path, monkeypatch):
    z = write_zip(tmp_path / "images_background.zip", {"Aa": 2})
    first = load_source(z, cache_dir=tmp_path / "elsewhere")
    assert not first.cache_hit and first.cache == str(tmp_path / "images_background.minireptile-28px.npz")
    assert os.path.isfile(first.cache) and not (tmp_path / "elsewhere").exists()

    def no_decoding(*args):
        raise AssertionError("decoded a PNG despite the cache")

    monkeypatch.setattr(datasets, "_decode", no_decoding)
    second = load_source(z, cache_dir=tmp_path / "elsewhere")
    assert second.cache_hit
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert first.class_names == second.class_names
    # another size is another cache entry: it must decode
    with pytest.raises(AssertionError, match="decoded"):
        load_source(z, size=20)


def test_changed_source_invalidates_the_cache(tmp_path):
    z = write_zip(tmp_path / "images_background.zip", {"Aa": 2})
    old = load_source(z)
    write_zip(z, {"Aa": 3})
    os.utime(z, ns=(os.stat(z).st_atime_ns, os.stat(z).st_mtime_ns + 10**9))
    new = load_source(z)
    assert not new.cache_hit and new.n_classes == 3 and old.n_classes == 2


def test_read_only_data_folder_falls_back_to_cache_dir(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    z = write_zip(data_dir / "images_background.zip", {"Aa": 2})
    data_dir.chmod(0o555)    # read-only, also for root: the loader checks the permission bits
    try:
        first = load_source(z, cache_dir=tmp_path / "cache")
        assert sorted(p.name for p in data_dir.iterdir()) == ["images_background.zip"]
        assert first.cache.startswith(str(tmp_path / "cache")) and not first.cache_hit
        second = load_source(z, cache_dir=tmp_path / "cache")
        assert second.cache_hit and second.cache == first.cache
    finally:
        data_dir.chmod(0o755)


def test_no_cache_writes_nothing(tmp_path):
    z = write_zip(tmp_path / "images_background.zip", {"Aa": 2})
    data = load_source(z, cache_dir=tmp_path / "cache", use_cache=False)
    assert data.cache == "" and sorted(p.name for p in tmp_path.iterdir()) == ["images_background.zip"]


def test_corrupt_cache_is_rebuilt(tmp_path):
    z = write_zip(tmp_path / "images_background.zip", {"Aa": 2})
    cache = tmp_path / "images_background.minireptile-28px.npz"
    cache.write_bytes(b"not an npz")
    data = load_source(z)
    assert not data.cache_hit and data.n_classes == 2 and load_source(z).cache_hit


# ------------------------------------------------------------------------------------ splits
def test_small_split_protocol_meta_tests_on_new_alphabets_only(tmp_path):
    split = omniglot_split(write_small_splits(tmp_path))
    assert set(split.train.alphabet_of_class()) == set(SMALL1)
    assert set(split.test.alphabet_of_class()) == set(SMALL2) - set(SMALL1) == {"Sanskrit", "Tagalog"}
    assert split.test.n_classes == SMALL2["Sanskrit"] + SMALL2["Tagalog"]
    assert not set(split.train.class_names) & set(split.test.class_names)
    np.testing.assert_array_equal(np.unique(split.test.labels), np.arange(split.test.n_classes))
    assert "Sanskrit, Tagalog" in split.protocol


def test_background_evaluation_protocol(tmp_path):
    write_zip(tmp_path / "images_background.zip", {"Aa": 2, "Bb": 2})
    write_zip(tmp_path / "images_evaluation.zip", {"Cc": 3})
    write_zip(tmp_path / "images_background_small1.zip", {"Aa": 2})
    split = omniglot_split(tmp_path)
    assert split.train.n_classes == 4 and split.test.alphabet_of_class() == ("Cc",) * 3


def test_single_source_split_is_disjoint_and_fixed(tmp_path):
    root = write_folder(tmp_path / "one", {"Aa": 5, "Bb": 3})
    a = omniglot_split(root, test_fraction=0.25)
    b = omniglot_split(root, test_fraction=0.25)
    assert a.test.n_classes == 2 and a.train.n_classes == 6
    assert not set(a.train.class_names) & set(a.test.class_names)
    assert set(a.train.class_names) | set(a.test.class_names) == {f"{x}/character{i:02d}" for x, n in
                                                                  (("Aa", 5), ("Bb", 3)) for i in range(1, n + 1)}
    assert a.test.class_names == b.test.class_names
    rotated = with_rotations(a.train)   # rotations of meta-train characters never reach meta-test
    assert not {n.split("@")[0] for n in rotated.class_names} & set(a.test.class_names)


# ------------------------------------------------------------------------------------ bad input
def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="data: no such file or folder"):
        find_sources(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="data: no such file or folder"):
        load_source(tmp_path / "nope.zip")


def test_malformed_paths(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="data: .*not a .zip"):
        find_sources(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="data: .*holds no Omniglot data"):
        find_sources(tmp_path / "empty")
    bad = tmp_path / "bad" / "images_background.zip"
    bad.parent.mkdir()
    bad.write_bytes(b"PK but not really a zip")
    with pytest.raises(ValueError, match="data: .*not a readable zip"):
        omniglot_split(bad.parent)
    flat = tmp_path / "flat.zip"
    with zipfile.ZipFile(flat, "w") as zf:
        zf.writestr("a.png", b"x")
    with pytest.raises(ValueError, match="outside an alphabet/character/ folder"):
        load_source(flat)
    broken = tmp_path / "broken"
    (broken / "Aa" / "c1").mkdir(parents=True)
    (broken / "Aa" / "c1" / "0001_01.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match="cannot decode .*0001_01.png"):
        load_source(broken, use_cache=False)
    with pytest.raises(ValueError, match="size"):
        load_source(broken, size=1)
    with pytest.raises(ValueError, match="test_fraction"):
        omniglot_split(broken, test_fraction=1.0)


def test_missing_pillow_names_the_extra(tmp_path, monkeypatch):
    z = write_zip(tmp_path / "images_background.zip", {"Aa": 1})
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"minireptile\[images\]"):
        load_source(z, use_cache=False)


def tamper(cache, **changes):
    with np.load(cache, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    with open(cache, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("change", ["shuffled labels", "float images", "truncated names", "inverted pixels"])
def test_item10_a_damaged_cache_with_the_right_key_is_rebuilt_with_a_warning(tmp_path, change):
    zpath = write_zip(tmp_path / "small.zip", {"Latin": 3, "Greek": 2}, drawings=2)
    fresh = load_source(zpath, size=12)
    cache = fresh.cache
    with np.load(cache) as z:
        labels, images, names = z["labels"], z["images"], z["class_names"]
    tamper(cache, **{"shuffled labels": {"labels": labels[::-1].copy()},
                     "float images": {"images": images.astype(np.float64)},
                     "truncated names": {"class_names": np.array([n[:-1] for n in names.tolist()])},
                     "inverted pixels": {"images": 255 - images}}[change])
    with pytest.warns(RuntimeWarning, match="cache .* is damaged"):
        again = load_source(zpath, size=12)
    assert not again.cache_hit
    np.testing.assert_array_equal(again.images, fresh.images)
    np.testing.assert_array_equal(again.labels, fresh.labels)
    assert again.class_names == fresh.class_names
    assert load_source(zpath, size=12).cache_hit                   # rebuilt: the next load hits it


def test_item10_a_zip_changed_with_the_same_size_and_mtime_invalidates_the_cache(tmp_path):
    zpath = write_zip(tmp_path / "small.zip", {"Latin": 3}, drawings=2)
    st = zpath.stat()
    before = datasets._source_key(zpath, 12)
    raw = bytearray(zpath.read_bytes())
    raw[len(raw) // 2] ^= 0xFF                            # same size ...
    zpath.write_bytes(bytes(raw))
    os.utime(zpath, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and the same modification time
    assert zpath.stat().st_size == st.st_size and zpath.stat().st_mtime_ns == st.st_mtime_ns
    assert datasets._source_key(zpath, 12) != before


def test_item21_uppercase_png_files_in_an_unpacked_folder_are_read(tmp_path):
    root = write_folder(tmp_path / "split", {"Latin": 2}, drawings=2)
    first = sorted(root.glob("*/*/*.png"))[0]
    first.rename(first.with_suffix(".PNG"))
    data = load_source(root, size=12, use_cache=False)
    assert data.images.shape[0] == 4
