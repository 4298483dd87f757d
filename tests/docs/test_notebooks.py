"""The downloadable notebooks start with an install cell and have no links that only work inside the site."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))
spec = importlib.util.spec_from_file_location("docs_notebooks", DOCS / "notebooks.py")
notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(notebooks)


def test_links_to_pages_become_words_or_absolute_links():
    page = DOCS / "tutorials" / "taylor.md"
    text = "see [the notation page](../notation.md) and [FOMAML](../algorithms.md#fomaml)."
    assert notebooks.rewrite_links(text, page) == (
        "see the notation page (the page “Notation and a map of the papers” of the minireptile documentation) and "
        "FOMAML (the page “" + notebooks._title(DOCS / "algorithms.md") + "” of the minireptile documentation).")
    assert notebooks.rewrite_links(text, page, "https://example.org/docs/") == (
        "see [the notation page](https://example.org/docs/notation.html) and "
        "[FOMAML](https://example.org/docs/algorithms.html#fomaml).")


@pytest.mark.parametrize("page", TUTORIALS, ids=lambda p: p.stem)
def test_each_notebook_installs_first_and_has_no_site_only_links(page, tmp_path):
    pytest.importorskip("jupytext", reason="the docs extra is not installed (pip install -e '.[docs]')")
    out = tmp_path / f"{page.stem}.ipynb"
    notebooks.write_notebook(page, out)
    nb = json.loads(out.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "%pip install" in "".join(code[0]["source"])
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "{download}" not in text and ".md)" not in text and "](../" not in text
    assert len(code) == 1 + page.read_text().count("```{code-cell}")
