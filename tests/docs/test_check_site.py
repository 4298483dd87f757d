"""docs/check_site.py checks every page by default, and the README says what it and an offline build need."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("check_site", ROOT / "docs" / "check_site.py")
check_site = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_site)


def test_every_page_of_a_site_is_checked_by_default(tmp_path):
    for page in ("index.html", "reptile.html", "tutorials/taylor.html", "genindex.html", "search.html",
                 "_static/interactive/sine.html", "_static/mathjax/a.html", "_sources/x.html", "_downloads/y.html"):
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / page).write_text("<html></html>")
    assert check_site.site_pages(tmp_path) == ["_static/interactive/sine.html", "index.html", "reptile.html",
                                               "tutorials/taylor.html"]


def test_selenium_is_in_the_docs_extra_and_the_readme_names_chromium_and_the_loopback():
    pyproject = (ROOT / "pyproject.toml").read_text()
    docs_extra = pyproject.split("\ndocs = [")[1].split("]")[0]
    assert '"selenium' in docs_extra
    readme = (ROOT / "README.md").read_text()
    assert "apt-get install chromium chromium-driver" in readme
    assert "unshare -n sh -c 'ip link set lo up && python -m sphinx" in readme
