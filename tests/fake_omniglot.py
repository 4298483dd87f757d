"""Tiny fake Omniglot trees of generated 105x105 1-bit PNGs (tests never need the real data).

Like the real files, paper is white (1) and ink black (0). Character c of alphabet a is a filled
rectangle whose place and width depend on (a, c); drawing d adds a small dot, so drawings of one
character differ a little.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from PIL import Image, ImageDraw


def character_png(a: int, c: int, d: int, side: int = 105) -> bytes:
    img = Image.new("1", (side, side), 1)
    draw = ImageDraw.Draw(img)
    x0 = 5 + (7 * c + 13 * a) % 60
    y0 = 5 + (11 * c + 5 * a) % 60
    draw.rectangle([x0, y0, x0 + 15 + 3 * (c % 4), y0 + 30], fill=0)
    draw.rectangle([90 - 4 * d, 90, 93 - 4 * d, 93], fill=0)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def tree(alphabets: dict[str, int], drawings: int = 4):
    """{relative path "alphabet/characterNN/NNNN_DD.png": png bytes} of a fake split."""
    files = {}
    for a, (alphabet, n_chars) in enumerate(sorted(alphabets.items())):
        for c in range(n_chars):
            for d in range(drawings):
                files[f"{alphabet}/character{c + 1:02d}/{1000 + 20 * c:04d}_{d + 1:02d}.png"] = character_png(a, c, d)
    return files


def write_folder(root: Path, alphabets: dict[str, int], drawings: int = 4) -> Path:
    """An unpacked split ``root/alphabet/character/*.png``; returns root."""
    for rel, data in tree(alphabets, drawings).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def write_zip(path: Path, alphabets: dict[str, int], drawings: int = 4, top: str | None = None) -> Path:
    """An official-style zip ``top/alphabet/character/*.png`` (top defaults to the zip's stem)."""
    top = path.stem if top is None else top
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for rel, data in tree(alphabets, drawings).items():
            zf.writestr(f"{top}/{rel}", data)
    return path


SMALL1 = {"Latin": 3, "Greek": 2, "Balinese": 3}
SMALL2 = {"Latin": 3, "Greek": 2, "Sanskrit": 4, "Tagalog": 3}


def write_small_splits(folder: Path, drawings: int = 4) -> Path:
    """A folder with fake images_background_small1.zip and images_background_small2.zip."""
    write_zip(folder / "images_background_small1.zip", SMALL1, drawings)
    write_zip(folder / "images_background_small2.zip", SMALL2, drawings)
    return folder


