"""Every test the documentation cites (``tests/...py::test_name``) exists, so the paper map stays true."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").rglob("*.md"))
CITATION = re.compile(r"`(tests/[\w/]+\.py)((?:::\w+)?)`((?:, `::\w+`)*)")


def cited_tests():
    for page in PAGES:
        for path, first, more in CITATION.findall(page.read_text()):
            names = [first[2:]] if first else []
            names += re.findall(r"`::(\w+)`", more)
            yield page.relative_to(ROOT), path, names


def test_every_cited_test_file_and_test_exists():
    cited = list(cited_tests())
    assert len(cited) >= 10
    for page, path, names in cited:
        source = ROOT / path
        assert source.exists(), f"{page} cites {path}, which does not exist"
        text = source.read_text()
        for name in names:
            assert re.search(rf"^def {name}\(", text, re.M), f"{page} cites {path}::{name}, which does not exist"
