"""The golden suite on disk: its manifest, loading it, its content hash, and ``export``.

Contract
--------
The suite ships inside the package as ``minireptile/conformance/v1/`` in the same layout that
:func:`export` writes for other languages:

    manifest.json        format, version, tolerances, the θ layout, and per case its settings,
                         input arrays and expected outputs (each with dtype and shape)
    cases/NAME.npz       the case's inputs (theta0, X, Y, plans, eps, v, query) and the expected
                         outputs under ``expected/OUTPUT``, float64 / int64, compressed
    raw/NAME/KEY.bin     (exported folders only) each array as raw little-endian C-order bytes
    index.txt            (exported folders only) the same facts as flat text lines, for readers without
                         JSON: ``case NAME L s_0 … s_L ACTIVATION LOSS OPTIMIZER LR BETA1 BETA2 EPS
                         POLICY META_BATCH`` and ``array NAME KEY DTYPE NDIM d_1 … d_NDIM RAWPATH``

The content hash (:meth:`Suite.content_hash`) covers the manifest and every array's name, dtype,
shape and bytes (not the zip files' bytes, which hold timestamps).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cases import CASES, FORMAT, STAGES, VERSION, case_config

SUITE_DIR = Path(__file__).resolve().parent / f"v{VERSION}"

# normwise relative error max|r − e| / max|e| allowed per output, by the dtype of the result
TOLERANCES = {
    "float64": {"default": 1e-10},
    # float32 results against the float64 expected: the float32 NumPy reference lands within 2e-6 on every
    # output of v1; these leave 10-50x room for other summation orders and relu kinks
    "float32": {"default": 2e-5, "phi_s": 5e-5, "theta_1": 1e-4, "theta_10": 1e-4, "theta_100": 1e-4},
}

LAYOUT = ("θ is one flat vector of P numbers: for each layer l = 0, 1, ... in order, its weight matrix W_l of "
          "shape (out, in) in row-major (C) order, then its bias b_l of shape (out,). Layer l maps sizes[l] "
          "inputs to sizes[l+1] outputs; hidden layers apply the activation, the last layer is linear.")


def stage_of(output: str) -> str:
    """The stage an output belongs to (``phi_2`` -> ``phi_s``)."""
    return "phi_s" if output.startswith("phi_") else output


def tolerance(output: str, dtype: str) -> float:
    """The relative tolerance of ``output`` for a result of ``dtype`` ("float32" or "float64")."""
    table = TOLERANCES[dtype]
    return float(table.get(stage_of(output), table["default"]))


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` into a temporary file beside ``path``, then renamed into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.chmod(tmp, 0o644)                  # mkstemp makes it private; the suite is for everyone to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _describe(a: np.ndarray) -> dict:
    return {"dtype": np.dtype(a.dtype).name, "shape": list(a.shape)}


def manifest_for(arrays: dict[str, dict[str, np.ndarray]]) -> dict:
    """The manifest of a suite whose case arrays are ``arrays[case_name][key]``."""
    cases = []
    for case in CASES:
        a = arrays[case.name]
        inputs = {k: _describe(v) for k, v in a.items() if not k.startswith("expected/")}
        outputs = {k: {**_describe(a[f"expected/{k}"]), "stage": stage_of(k),
                       "rtol": {dt: tolerance(k, dt) for dt in TOLERANCES}} for k in case.outputs()}
        cases.append({"name": case.name, "file": f"cases/{case.name}.npz", "config": case_config(case),
                      "inputs": inputs, "outputs": outputs})
    return {
        "format": FORMAT,
        "version": VERSION,
        "relative_error": "max |result - expected| / max |expected| over the array (normwise)",
        "tolerances": TOLERANCES,
        "layout": LAYOUT,
        "stages": [{"stage": s, "meaning": m} for s, m in STAGES],
        "cases": cases,
    }


@dataclass(frozen=True)
class Suite:
    """A suite folder (the shipped one, or one written by :func:`export`)."""

    folder: Path
    manifest: dict

    @property
    def cases(self) -> list[dict]:
        return self.manifest["cases"]

    def case(self, name: str) -> dict:
        for c in self.cases:
            if c["name"] == name:
                return c
        raise KeyError(name)

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        """Every array of case ``name``: inputs by key, expected outputs under ``expected/OUTPUT``."""
        with np.load(self.folder / self.case(name)["file"], allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def content_hash(self) -> str:
        """sha256 of the manifest (canonical JSON) and every array's key, dtype, shape and bytes."""
        h = hashlib.sha256(json.dumps(self.manifest, sort_keys=True, ensure_ascii=True).encode())
        for c in self.cases:
            arrays = self.arrays(c["name"])
            for k in sorted(arrays):
                a = np.ascontiguousarray(arrays[k])
                h.update(f"{c['name']}/{k}:{a.dtype.str}:{a.shape}".encode())
                h.update(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
        return h.hexdigest()


def load_suite(folder: Path | str | None = None) -> Suite:
    """The suite in ``folder`` (default: the one shipped with minireptile).

    Raises
    ------
    ValueError
        ``folder`` holds no readable manifest of this format and version.
    """
    folder = SUITE_DIR if folder is None else Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder}: no readable manifest.json ({exc.__class__.__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ValueError(f"{folder}/manifest.json: expected format {FORMAT!r} version {VERSION}")
    return Suite(folder, manifest)


def export(folder: Path | str, suite: Suite | None = None) -> Path:
    """Write the suite for programs in any language: manifest.json, cases/NAME.npz, raw/NAME/KEY.bin.

    Parameters
    ----------
    folder : path
        Must not exist, or be an empty folder. Written beside it first and renamed into place.
    suite : Suite, optional
        Default: the shipped suite.

    Returns
    -------
    Path of the folder. The exported manifest adds to every input and output entry ``"raw"``: the
    path of its raw little-endian file, relative to ``folder``.
    """
    suite = load_suite() if suite is None else suite
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FileExistsError(f"{folder}: exists and is not an empty folder; choose a new one")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        manifest = json.loads(json.dumps(suite.manifest))
        (tmp / "cases").mkdir()
        for c in manifest["cases"]:
            shutil.copyfile(suite.folder / c["file"], tmp / c["file"])
            raw = tmp / "raw" / c["name"]
            (raw / "expected").mkdir(parents=True)
            for k, a in suite.arrays(c["name"]).items():
                a.astype(a.dtype.newbyteorder("<"), copy=False).tofile(raw / f"{k}.bin")
                entry = c["outputs"][k[len("expected/"):]] if k.startswith("expected/") else c["inputs"][k]
                entry["raw"] = f"raw/{c['name']}/{k}.bin"
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        (tmp / "index.txt").write_text("".join(_index_lines(manifest)), encoding="utf-8")
        os.chmod(tmp, 0o755)
        if folder.exists():
            folder.rmdir()
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _index_lines(manifest: dict):
    """index.txt: the manifest's cases and arrays as whitespace-separated lines (see the module docstring)."""
    for c in manifest["cases"]:
        cfg = c["config"]
        sizes, o = cfg["spec"]["sizes"], cfg["optimizer"]
        yield (f"case {c['name']} {len(sizes) - 1} {' '.join(map(str, sizes))} {cfg['spec']['activation']} "
               f"{cfg['spec']['loss']} {o['name']} {o['lr']!r} {o['beta1']!r} {o['beta2']!r} {o['eps']!r} "
               f"{o['state_policy']} {cfg['meta_batch']}\n")
        entries = [(k, e) for k, e in c["inputs"].items()] + [(f"expected/{k}", e) for k, e in c["outputs"].items()]
        for key, e in entries:
            dims = " ".join(map(str, e["shape"]))
            yield f"array {c['name']} {key} {e['dtype']} {len(e['shape'])} {dims} {e['raw']}\n"
