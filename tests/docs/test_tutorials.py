"""The documentation keeps working: every tutorial's code runs, the build-time figures draw, and (when the
``docs`` extra is installed) the site builds with warnings as errors.

The tutorials are MyST notebooks (docs/tutorials/*.md) that the site executes at build time; here their code
cells run in order in one namespace, as a notebook kernel would, with matplotlib's Agg backend.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))
CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```\s*$", re.S | re.M)


def code_cells(page: Path) -> list[str]:
    return CELL.findall(page.read_text())


def test_every_tutorial_is_a_notebook_with_code_and_a_download_link():
    assert [p.stem for p in TUTORIALS] == ["backprop", "fewshot", "sine", "taylor"]
    for page in TUTORIALS:
        text = page.read_text()
        assert text.startswith("---\njupytext:"), page.name
        assert f"<../generated/{page.stem}.ipynb>" in text, page.name
        assert len(code_cells(page)) >= 3, page.name


@pytest.mark.parametrize("page", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_and_draws_its_figures(page, tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = []

    def show(*_, **__):
        for number in plt.get_fignums():
            fig = plt.figure(number)
            assert fig.axes and all(ax.has_data() or not ax.get_visible() for ax in fig.axes), page.name
            shown.append(number)
        plt.close("all")

    monkeypatch.setattr(plt, "show", show)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    for i, cell in enumerate(code_cells(page)):
        exec(compile(cell, f"{page.name}, cell {i + 1}", "exec"), namespace)
    assert shown, f"{page.name} shows no figure"


def test_build_time_figures_draw(tmp_path):
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("docs_figures", DOCS / "figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    figures.reptile_geometry(tmp_path / "geometry.png")
    figures.from_scratch_plot(tmp_path / "from_scratch.png", iters=20)
    figures.numba_before_after(tmp_path / "numba_before_after.png")
    figures.meta_vs_random(tmp_path / "meta_vs_random.png")
    assert (tmp_path / "meta_vs_random.png").stat().st_size > 20_000
    assert (tmp_path / "geometry.png").stat().st_size > 20_000
    assert (tmp_path / "from_scratch.png").stat().st_size > 20_000
    assert (tmp_path / "numba_before_after.png").stat().st_size > 20_000


def test_site_builds_with_warnings_as_errors(tmp_path):
    """The README's docs command, without executing the notebooks (the tests above run their code)."""
    for module in ("sphinx", "myst_nb", "furo", "numpydoc", "jupytext"):
        pytest.importorskip(module, reason="the docs extra is not installed (pip install -e '.[docs]')")
    out = tmp_path / "html"
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           "-D", "nb_execution_mode=off", str(DOCS), str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    for page in ["index", "api", "notation", "tutorials/sine"]:
        assert (out / f"{page}.html").exists()
    assert (out / "_static" / "mathjax" / "tex-chtml.js").exists()
