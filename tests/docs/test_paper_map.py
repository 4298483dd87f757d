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


# ---------------------------------------------------------------------------------------------
# every function a page names, with its module, exists there
# ---------------------------------------------------------------------------------------------
CODE = re.compile(r"`([^`\n]+)`")
DOTTED = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")
ALGORITHMS = {"maml", "hvp", "diagnostics"}


def _resolve(dotted: str):
    """The object ``minireptile.<dotted>`` names (modules imported on the way), or None."""
    import importlib

    import minireptile
    obj, path = minireptile, "minireptile"
    for part in dotted.split("."):
        if part in getattr(obj, "__dataclass_fields__", {}):      # a field set per instance
            return obj
        if hasattr(obj, part):
            obj = getattr(obj, part)
        else:
            try:
                obj = importlib.import_module(f"{path}.{part}")
            except ImportError:
                return None
        path = f"{path}.{part}"
    return obj


def _package_names():
    import pkgutil

    import minireptile
    return {m.name for m in pkgutil.iter_modules(minireptile.__path__)}


def test_every_function_a_page_names_with_its_module_exists_there():
    import minireptile
    modules, missing = _package_names(), []
    for page in PAGES:
        for span in CODE.findall(page.read_text()):
            m = DOTTED.match(span)
            if not m:
                continue
            dotted = m.group(1)
            first = dotted.split(".")[0]
            if dotted.rsplit(".", 1)[1] in ("py", "js", "md", "json", "npz", "png", "ipynb"):
                continue                                          # a file name
            if first in ALGORITHMS:
                missing.append(f"{page.name}: `{span}` (write algorithms.{dotted})")
            elif (first in modules or first in minireptile.__all__) and _resolve(dotted) is None:
                missing.append(f"{page.name}: `{span}`")
    assert not missing, "names that do not exist where the page says:\n" + "\n".join(missing)


def test_the_notation_page_names_functions_with_their_module_or_from_minireptile():
    import minireptile
    text = (ROOT / "docs" / "notation.md").read_text()
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and "`" in line]
    computed = [row[2] for row in rows if len(row) == 4 and row[0].startswith("| Reptile") or
                len(row) == 4 and row[0].startswith("| MAML")]
    assert len(computed) >= 8
    bare = {name for cell in computed for name in re.findall(r"`(\w+)`", cell)}
    assert {"meta_train", "inner_loop", "reptile_update", "epsilon_schedule"} <= bare
    assert not [n for n in bare if not hasattr(minireptile, n)], "a bare name that minireptile does not export"
    symbols = text.split("## Symbols")[1].split("##")[0]
    for name in ("maml_gradient", "inner_gradients", "taylor_terms"):
        assert re.search(rf"`algorithms\.\w+\.{name}", symbols), f"{name} is named without its module"
        assert not re.search(rf"`{name}", symbols), f"{name} is named without its module"
