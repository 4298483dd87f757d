"""Omniglot on disk → labelled image arrays (host side, before any task sampling).

Contract
--------
:func:`load_source` reads ONE Omniglot split — an official zip (``images_background.zip``,
``images_evaluation.zip``, ``images_background_small1.zip``, ...) or an unpacked folder laid out
``alphabet/character/*.png`` — and returns a :class:`LabelledImages`:

    images       (n_images, size, size) uint8   ink = 255, paper = 0 (Omniglot's PNGs are the
                                                 other way round: 1 = white paper)
    labels       (n_images,)            int64   class ids 0 … n_classes-1
    class_names  (n_classes,)           str     "alphabet/character" (rotations add "@90" …)

Characters are numbered in sorted (alphabet, character) order and drawings in file-name order,
so the same files always give the same arrays.

Preprocessing: each 105x105 1-bit PNG is converted to 8-bit grey ("L") and resized to
``size x size`` (default 28) with Pillow's Lanczos filter, then inverted. (openai/supervised-reptile
calls ``.resize((28, 28))`` on the 1-bit image itself, and MAML's preprocessing script
``resize((28, 28), resample=LANCZOS)``; on a 1-bit image Pillow resizes nearest-neighbour whatever the
filter, so both get 1-bit 28x28 images. Converting first gives the anti-aliased grey image the Lanczos
filter promises.)
Rotation augmentation (:func:`with_rotations`) is applied to arrays afterwards with ``np.rot90``.

Cache: the preprocessed arrays are written once to ``<source>.minireptile-<size>px.npz`` beside the
zip or folder (atomic write), so the second load skips PNG decoding and does not need Pillow. If that
folder is read-only — including a folder whose permission bits deny writing while we run as root,
as shared data folders are — the cache goes to ``cache_dir`` instead (default ``~/.cache/minireptile``,
:func:`default_cache_dir`). A cache file records a key built from the source's path, size and
modification times and from the preprocessing settings, and the SHA-256 of its own arrays; a stale,
unreadable or altered cache is rebuilt.

:func:`find_sources` and :func:`omniglot_split` turn a ``--data`` path into disjoint meta-train and
meta-test class sets (see :func:`omniglot_split` for the rules). Pillow is an optional extra
(``pip install "minireptile[images]"``), imported only when PNGs must be decoded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_write
from ..errors import missing_extra

CACHE_VERSION = 2   # 2: keyed by the sources' content, arrays checked against the source listing
RESAMPLE = "lanczos"
ROTATIONS = (0, 90, 180, 270)
OFFICIAL_SPLITS = ("images_background", "images_evaluation", "images_background_small1",
                   "images_background_small2")


@dataclass(frozen=True)
class LabelledImages:
    """A labelled set of square grey images.

    Attributes
    ----------
    images : ndarray of uint8, shape (n_images, size, size)
        Ink = 255, paper = 0.
    labels : ndarray of int64, shape (n_images,)
        Class ids in ``[0, n_classes)``.
    class_names : tuple of str, length n_classes
        ``"alphabet/character"``, with ``"@90"``, ``"@180"``, ``"@270"`` for rotated copies.
    cache : str
        Cache file this set was read from or written to ("" when caching was off or failed).
    cache_hit : bool
        True when the arrays came from the cache (no PNG was decoded).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    cache: str = ""
    cache_hit: bool = False

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def alphabet_of_class(self) -> tuple[str, ...]:
        """Alphabet name of each class, length n_classes."""
        return tuple(name.split("/", 1)[0] for name in self.class_names)

    def vectors(self, dtype=np.float32) -> np.ndarray:
        """Images flattened to pixel vectors in [0, 1]: shape (n_images, size*size), ``dtype``."""
        dtype = np.dtype(dtype)
        flat = self.images.reshape(self.images.shape[0], -1)
        return flat.astype(dtype) / dtype.type(255)

    def select_classes(self, keep) -> "LabelledImages":
        """The images of the classes in ``keep`` (sequence of class ids), relabelled 0 … len(keep)-1.

        Image order is kept; ``cache`` and ``cache_hit`` are carried over.
        """
        keep = np.asarray(keep, dtype=np.int64)
        if keep.ndim != 1 or len(np.unique(keep)) != len(keep) or (keep < 0).any() or (keep >= self.n_classes).any():
            raise ValueError(f"keep: expected distinct class ids in [0, {self.n_classes}), got {keep!r}")
        new_id = np.full(self.n_classes, -1, dtype=np.int64)
        new_id[keep] = np.arange(len(keep))
        rows = np.flatnonzero(new_id[self.labels] >= 0)
        return LabelledImages(self.images[rows], new_id[self.labels[rows]],
                              tuple(self.class_names[k] for k in keep), self.cache, self.cache_hit)


def concat(sets) -> "LabelledImages":
    """Several labelled sets as one, class ids offset so classes stay distinct."""
    sets = list(sets)
    if not sets:
        raise ValueError("sets: expected at least one LabelledImages")
    offsets = np.cumsum([0] + [s.n_classes for s in sets[:-1]])
    return LabelledImages(np.concatenate([s.images for s in sets]),
                          np.concatenate([s.labels + o for s, o in zip(sets, offsets)]),
                          tuple(n for s in sets for n in s.class_names))


def with_rotations(data: LabelledImages, rotations=ROTATIONS) -> LabelledImages:
    """Augment by rotation: every class × every angle becomes its own class.

    Parameters
    ----------
    data : LabelledImages
        n_images images of n_classes classes.
    rotations : sequence of {0, 90, 180, 270}
        Counter-clockwise angles in degrees (``np.rot90``).

    Returns
    -------
    LabelledImages
        ``len(rotations) * n_images`` images; class ``c`` rotated by ``rotations[r]`` gets id
        ``c * len(rotations) + r`` and name ``"alphabet/character@angle"`` (no suffix for 0).
    """
    rotations = tuple(int(r) for r in rotations)
    if not rotations or any(r not in ROTATIONS for r in rotations) or len(set(rotations)) != len(rotations):
        raise ValueError(f"rotations: expected distinct angles from {ROTATIONS}, got {rotations!r}")
    R = len(rotations)
    images = np.concatenate([np.rot90(data.images, k=r // 90, axes=(1, 2)) for r in rotations])
    labels = np.concatenate([data.labels * R + j for j in range(R)])
    names = tuple(name if r == 0 else f"{name}@{r}" for name in data.class_names for r in rotations)
    return LabelledImages(np.ascontiguousarray(images), labels, names, data.cache, data.cache_hit)


# ---------------------------------------------------------------------------------------------
# finding and reading the files
# ---------------------------------------------------------------------------------------------
def find_sources(path) -> dict[str, Path]:
    """The Omniglot splits found at ``path``.

    Parameters
    ----------
    path : str or Path
        A zip file; a folder holding official zips (``images_background*.zip``,
        ``images_evaluation.zip``) or their unpacked folders; or one unpacked split
        (``alphabet/character/*.png``).

    Returns
    -------
    dict
        Split name (the zip's or folder's stem) → path, in sorted order.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        ``path`` is neither a zip file nor a folder with Omniglot's layout.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data: no such file or folder: {str(path)!r}")
    if path.is_file():
        if path.suffix.lower() != ".zip":
            raise ValueError(f"data: {str(path)!r} is a file but not a .zip; expected an Omniglot zip or folder")
        return {path.stem: path}
    found = {}
    for child in sorted(path.iterdir()):
        stem = child.stem if child.is_file() and child.suffix.lower() == ".zip" else child.name
        if stem.startswith(("images_background", "images_evaluation")) and (
                child.is_dir() or child.suffix.lower() == ".zip"):
            if stem in found:  # both the zip and its unpacked folder: read the folder
                if child.is_dir():
                    found[stem] = child
                continue
            found[stem] = child
    if found:
        return dict(sorted(found.items()))
    if any(True for _ in path.glob("*/*/*.png")):
        return {path.name: path}
    raise ValueError(
        f"data: {str(path)!r} holds no Omniglot data: expected images_background*.zip / images_evaluation.zip, "
        "or folders laid out alphabet/character/*.png")


def _zip_entries(zpath: Path):
    """Sorted ((alphabet, character, file name), zip member name) of a zip's PNGs."""
    try:
        zf = zipfile.ZipFile(zpath)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"data: {str(zpath)!r} is not a readable zip file ({exc})") from None
    with zf:
        names = zf.namelist()
    entries = []
    for name in names:
        parts = [p for p in name.split("/") if p]
        if name.endswith("/") or not parts[-1].lower().endswith(".png"):
            continue
        if len(parts) < 3:
            raise ValueError(f"data: {str(zpath)!r} has {name!r} outside an alphabet/character/ folder")
        entries.append((tuple(parts[-3:]), name))
    return sorted(entries)


def _folder_entries(root: Path):
    """Sorted ((alphabet, character, file name), path) of a folder's PNGs."""
    entries = [((p.parent.parent.name, p.parent.name, p.name), p) for p in root.glob("*/*/*")
               if p.suffix.lower() == ".png" and p.is_file()]
    return sorted(entries)


def _source_key(source: Path, size: int) -> str:
    """Cache key: the SHA-256 of the source's bytes (the zip, or every PNG with its path) and the
    preprocessing settings. A file changed in place with the same size and time gets a new key."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": CACHE_VERSION, "size": size, "resample": RESAMPLE}).encode())
    if source.is_file():
        with open(source, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    else:
        for rel, p in _folder_entries(source):
            h.update(f"{'/'.join(rel)}:".encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _listing(source: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """The labels and class names a decode of ``source`` gives, from its file listing alone (no decoding)."""
    entries = _zip_entries(source) if source.is_file() else _folder_entries(source)
    class_of: dict[str, int] = {}
    labels = np.array([class_of.setdefault(f"{a}/{c}", len(class_of)) for (a, c, _), _ in entries], dtype=np.int64)
    return labels, tuple(class_of)


def _cache_problem(hit, source: Path, size: int) -> str | None:
    """Why cached arrays cannot be the decode of ``source`` at ``size`` (None: they fit)."""
    images, labels, names = hit
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (size, size):
        return f"images are {images.dtype} {images.shape}, expected uint8 (n, {size}, {size})"
    want_labels, want_names = _listing(source)
    if labels.dtype != np.int64 or labels.shape != want_labels.shape or not np.array_equal(labels, want_labels):
        return "its labels do not match the source's characters"
    if names != want_names:
        return "its class names do not match the source's folders"
    if images.shape[0] != labels.shape[0]:
        return f"{images.shape[0]} images for {labels.shape[0]} labels"
    return None


def _decode(png: bytes, size: int, where: str) -> np.ndarray:
    """One PNG's bytes → (size, size) uint8, ink = 255."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(missing_extra("Pillow", "images")) from None
    try:
        with Image.open(io.BytesIO(png)) as img:
            grey = img.convert("L")
    except Exception as exc:  # Pillow raises several types for bad files
        raise ValueError(f"data: cannot decode {where} as an image ({exc})") from None
    small = grey.resize((size, size), resample=Image.Resampling.LANCZOS)
    return 255 - np.asarray(small, dtype=np.uint8)


def _decode_source(source: Path, size: int) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    if source.is_file():
        entries = _zip_entries(source)
        zf = zipfile.ZipFile(source)
        read = lambda member: zf.read(member)  # noqa: E731
    else:
        entries = _folder_entries(source)
        zf = None
        read = lambda p: p.read_bytes()  # noqa: E731
    if not entries:
        raise ValueError(f"data: {str(source)!r} holds no PNG files laid out alphabet/character/*.png")
    try:
        images = np.empty((len(entries), size, size), dtype=np.uint8)
        class_of = {}
        labels = np.empty(len(entries), dtype=np.int64)
        for i, ((alphabet, character, _), member) in enumerate(entries):
            images[i] = _decode(read(member), size, f"{str(member)!r} in {str(source)!r}")
            labels[i] = class_of.setdefault(f"{alphabet}/{character}", len(class_of))
    finally:
        if zf is not None:
            zf.close()
    return images, labels, tuple(class_of)


# ---------------------------------------------------------------------------------------------
# the cache
# ---------------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """Where caches go when the data's own folder is read-only: ``~/.cache/minireptile``."""
    return Path.home() / ".cache" / "minireptile"


def _writable(directory: Path) -> bool:
    """Whether we may write in ``directory``: the OS says yes AND its owner-write bit is set
    (so a folder made read-only with chmod stays untouched even by root)."""
    try:
        return os.access(directory, os.W_OK) and bool(directory.stat().st_mode & stat.S_IWUSR)
    except OSError:
        return False


def _cache_paths(source: Path, size: int, cache_dir: Path | None) -> list[Path]:
    """Candidate cache files, preferred first: beside the data, then in the cache folder."""
    name = f"{source.stem if source.is_file() else source.name}.minireptile-{size}px.npz"
    digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:12]
    other = Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser()
    return [source.parent / name, other / f"{digest}-{name}"]


def _read_cache(path: Path, key: str):
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key or "content" not in z.files:   # stale, or written before content hashes
                return None
            return z["images"], z["labels"], tuple(str(n) for n in z["class_names"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        return None


def _content_digest(images, labels, names) -> str:
    """SHA-256 of the cached arrays themselves (a cache whose pixels were changed no longer matches it)."""
    h = hashlib.sha256()
    for a in (np.ascontiguousarray(images, dtype=np.uint8), np.ascontiguousarray(labels, dtype=np.int64)):
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    h.update("\n".join(names).encode())
    return h.hexdigest()


def _content_problem(path: Path, hit) -> str | None:
    """Why the arrays read from the cache at ``path`` are not the ones written with it (None: they are)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = str(z["content"]) if "content" in z.files else None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        stored = None
    if stored != _content_digest(*hit):
        return "its images or labels do not match its content hash"
    return None


def _write_cache(path: Path, key: str, images, labels, names) -> None:
    arrays = {"key": np.array(key), "images": images, "labels": labels,
              "class_names": np.array(names, dtype=str), "content": np.array(_content_digest(images, labels, names))}
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_source(source, size: int = 28, cache_dir=None, use_cache: bool = True) -> LabelledImages:
    """Read one Omniglot split (zip or unpacked folder), preprocessed and cached.

    Parameters
    ----------
    source : str or Path
        A zip of ``[top/]alphabet/character/*.png`` or a folder ``alphabet/character/*.png``.
    size : int
        Output side in pixels (default 28; Omniglot's PNGs are 105x105).
    cache_dir : str or Path, optional
        Fallback cache folder used when the source's folder is read-only (default
        :func:`default_cache_dir`).
    use_cache : bool
        False: always decode, read and write no cache.

    Returns
    -------
    LabelledImages
        images (n_images, size, size) uint8, labels (n_images,) int64, one class per character.

    Raises
    ------
    FileNotFoundError
        ``source`` does not exist.
    ValueError
        Not a zip / not Omniglot's layout / a PNG that does not decode; bad ``size``.
    ImportError
        PNGs must be decoded and Pillow is missing (the message says what to install).
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 2 <= size <= 105:
        raise ValueError(f"size: expected an integer in [2, 105], got {size!r}")
    source = Path(source).expanduser()
    if not source.exists():
        raise FileNotFoundError(f"data: no such file or folder: {str(source)!r}")
    if source.is_file() and source.suffix.lower() != ".zip":
        raise ValueError(f"data: {str(source)!r} is a file but not a .zip")
    if not use_cache:
        images, labels, names = _decode_source(source, size)
        return LabelledImages(images, labels, names)
    key = _source_key(source, size)
    candidates = _cache_paths(source, size, cache_dir)
    for path in candidates:
        if path.is_file():
            hit = _read_cache(path, key)
            if hit is not None:
                problem = _cache_problem(hit, source, size) or _content_problem(path, hit)
                if problem is None:
                    return LabelledImages(*hit, cache=str(path), cache_hit=True)
                warnings.warn(f"the Omniglot cache {str(path)!r} is damaged ({problem}); decoding the images again "
                              "and rebuilding it", RuntimeWarning, stacklevel=2)
    images, labels, names = _decode_source(source, size)
    written = ""
    for i, path in enumerate(candidates):
        if i > 0:  # the fallback cache folder may not exist yet
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError:
                continue
        if not _writable(path.parent):
            continue
        try:
            _write_cache(path, key, images, labels, names)
        except OSError:
            continue
        written = str(path)
        break
    return LabelledImages(images, labels, names, cache=written, cache_hit=False)


# ---------------------------------------------------------------------------------------------
# meta-train / meta-test split
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OmniglotSplit:
    """Disjoint meta-train and meta-test classes.

    train, test : LabelledImages      (rotations not applied yet)
    protocol : str                    which rule of :func:`omniglot_split` chose them, in words
    sources : dict                    split name → path string
    """

    train: LabelledImages
    test: LabelledImages
    protocol: str
    sources: dict


def omniglot_split(path, size: int = 28, cache_dir=None, use_cache: bool = True,
                   test_fraction: float = 0.25) -> OmniglotSplit:
    """Meta-train and meta-test characters from a ``--data`` path.

    Rules, first match wins:

    1. ``images_background`` and ``images_evaluation`` present: meta-train on the background
       alphabets, meta-test on the evaluation alphabets (Lake et al.'s split).
    2. ``images_background_small1`` and ``images_background_small2`` present: meta-train on small1;
       meta-test on small2's alphabets that are not in small1 (Japanese (katakana), Sanskrit,
       Tagalog) — the protocol used in docs/omniglot.md.
    3. Exactly one split found (one zip or one unpacked folder): its characters are split at random
       (fixed generator ``SeedSequence(0)``, independent of the run's seed), ``test_fraction`` of them
       for meta-test.

    Parameters
    ----------
    path : str or Path
        See :func:`find_sources`.
    size, cache_dir, use_cache
        See :func:`load_source`.
    test_fraction : float
        Rule 3's share of meta-test characters, in (0, 1).

    Returns
    -------
    OmniglotSplit
    """
    if not (0 < test_fraction < 1):
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
    sources = find_sources(path)
    load = lambda name: load_source(sources[name], size, cache_dir, use_cache)  # noqa: E731
    names = {str(p) for p in sources}
    if {"images_background", "images_evaluation"} <= names:
        train, test = load("images_background"), load("images_evaluation")
        protocol = "meta-train images_background, meta-test images_evaluation"
    elif {"images_background_small1", "images_background_small2"} <= names:
        train, small2 = load("images_background_small1"), load("images_background_small2")
        seen = set(train.alphabet_of_class())
        keep = [c for c, a in enumerate(small2.alphabet_of_class()) if a not in seen]
        if not keep:
            raise ValueError("data: every alphabet of images_background_small2 is also in small1; nothing to meta-test on")
        test = small2.select_classes(keep)
        new = sorted(set(test.alphabet_of_class()))
        protocol = f"meta-train images_background_small1, meta-test small2 alphabets not in small1 ({', '.join(new)})"
    elif len(sources) == 1:
        (name,) = sources
        data = load(name)
        if data.n_classes < 2:
            raise ValueError(f"data: {str(sources[name])!r} has {data.n_classes} character; need at least 2 to split")
        perm = np.random.Generator(np.random.PCG64(np.random.SeedSequence(0))).permutation(data.n_classes)
        n_test = min(max(1, int(round(test_fraction * data.n_classes))), data.n_classes - 1)
        test, train = data.select_classes(np.sort(perm[:n_test])), data.select_classes(np.sort(perm[n_test:]))
        protocol = f"{name}: characters split at random, {n_test} of {data.n_classes} for meta-test"
    else:
        raise ValueError(f"data: found splits {sorted(names)} under {str(path)!r}; expected images_background + "
                         "images_evaluation, images_background_small1 + small2, or a single split")
    return OmniglotSplit(train, test, protocol, {k: str(v) for k, v in sources.items()})
