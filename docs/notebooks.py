"""The downloadable notebooks: each tutorial page (a MyST notebook) as a .ipynb that runs anywhere.

``conf.py`` calls :func:`write_notebook` for every tutorial at build time. The notebook differs from the
page in three ways: it starts with a cell that installs minireptile (a no-op where it is installed), the
page's download line is dropped, and links to other pages of the documentation, which would be broken
outside the site, become absolute links when ``base_url`` is given (the published site) and otherwise
name the page in words.
"""

from __future__ import annotations

import re
from pathlib import Path

INSTALL = ("# Run this first outside a minireptile checkout (in a fresh environment, on Colab, ...):\n"
           '%pip install --quiet "minireptile[plot]"')
DOWNLOAD = re.compile(r"^\{download\}`[^`]*`\s*\n", re.M)
LINK = re.compile(r"\[([^\]]+)\]\((\.\./|\./)?([\w/]+)\.md(#[\w-]+)?\)")


def _title(page: Path) -> str:
    for line in page.read_text().splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return page.stem


def rewrite_links(text: str, page: Path, base_url: str | None = None) -> str:
    """Links to other documentation pages, relative to ``page``, made to work outside the site."""
    def repl(m):
        label, target, anchor = m.group(1), (page.parent / f"{m.group(2) or ''}{m.group(3)}.md").resolve(), m.group(4) or ""
        docs = Path(__file__).resolve().parent
        rel = target.relative_to(docs).with_suffix(".html").as_posix()
        if base_url:
            return f"[{label}]({base_url.rstrip('/')}/{rel}{anchor})"
        return f"{label} (the page “{_title(target)}” of the minireptile documentation)"
    return LINK.sub(repl, text)


def notebook(page: Path, base_url: str | None = None):
    """The tutorial ``page`` as a notebook object (jupytext), ready to write as .ipynb."""
    import jupytext
    from nbformat.v4 import new_code_cell

    nb = jupytext.reads(page.read_text(), fmt="md:myst")
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = rewrite_links(DOWNLOAD.sub("", cell.source), page, base_url)
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    nb.cells.insert(first_code, new_code_cell(INSTALL))
    return nb


def write_notebook(page: Path, out: Path, base_url: str | None = None) -> None:
    import jupytext

    jupytext.write(notebook(page, base_url), out, fmt="ipynb")
