"""Sphinx configuration for minireptile's documentation.

Build (from the repository root, after ``pip install -e ".[docs]"``):

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Pages are MyST markdown; the tutorials are jupytext MyST notebooks that myst-nb executes at every
build; figures are drawn by code at build time (the tutorials' cells and ``figures.py``). Math is
rendered by a MathJax copy bundled with the site (sphinx-mathjax-offline), so the site works offline.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))                 # figures.py
sys.path.insert(0, str(HERE.parent))          # minireptile from this checkout

import minireptile  # noqa: E402

project = "minireptile"
author = "minireptile contributors"
copyright = "minireptile contributors"
release = version = minireptile.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",
    "numpydoc",
]

exclude_patterns = ["_build", "jupyter_execute", "exercises", "generated/*.ipynb", "**.ipynb_checkpoints"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}

# MyST: $...$ and $$...$$ math, ::: fences, heading anchors for in-page links
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# myst-nb: execute every notebook at every build; a failing cell fails the build
nb_execution_mode = "force"
nb_execution_timeout = 180
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# numpydoc: docstrings in numpy format, no member tables generated per class
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
autodoc_typehints = "none"
autodoc_member_order = "bysource"

html_theme = "furo"
html_title = f"minireptile {release}"
html_static_path = ["_static"]
html_css_files = ["course.css"]              # wrap code cells and wide tables to fit the page
html_favicon = "_static/favicon.svg"
html_show_sourcelink = False

suppress_warnings = ["mystnb.unknown_mime_type"]


def _build_time_files(app) -> None:
    """Draw the pages' figures and write each tutorial as a downloadable .ipynb (docs/generated/, notebooks.py)."""
    import figures
    import notebooks

    out = HERE / "generated"
    out.mkdir(exist_ok=True)
    figures.draw_all(out)
    for page in sorted((HERE / "tutorials").glob("*.md")):
        notebooks.write_notebook(page, out / f"{page.stem}.ipynb", app.config.html_baseurl or None)


def _export_theta(app, exception) -> None:
    """Run ``minireptile sine --dtype float64`` and write its θ into the built interactive page (about 15 s).

    The copy in docs/_static/interactive/ is the same export (``python docs/interactive_theta.py``), kept
    for the tests and for opening the page from the source tree.
    """
    if exception is not None or app.builder.format != "html":
        return
    import interactive_theta

    interactive_theta.export(Path(app.outdir) / "_static" / "interactive" / "sine_theta.js", quiet=True)


def setup(app):
    app.connect("builder-inited", _build_time_files)
    app.connect("build-finished", _export_theta)
