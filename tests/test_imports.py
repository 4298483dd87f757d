"""The package's import graph, read from the source (AST only, nothing is imported).

The layers and their order are documented at the top of ``minireptile/__init__.py`` ("Import
layers"); this test parses that table, so the documentation and the check cannot drift apart.
It fails on any import cycle and on any import that reaches against the documented order.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "minireptile"


def _modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package (packages by their __init__)."""
    mods = {}
    for f in sorted(root.rglob("*.py")):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports (at any depth of its code, lazy imports included).

    ``from . import x`` counts as an import of module ``x`` when ``x`` is a module, else of the
    package; a module's imports of its own enclosing packages are not edges.
    """
    mods = _modules(root)
    pkg = root.name

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        is_pkg = f.name == "__init__.py"
        base = m.split(".") if is_pkg else m.split(".")[:-1]
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"), str(f))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    prefix = ".".join(base[: len(base) - (node.level - 1)] + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets = [f"{prefix}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                if t.split(".")[0] != pkg:
                    continue
                r = resolve(t)
                if r and r != m and not m.startswith(r + "."):
                    edges[m].add(r)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def documented_layers(root: Path = PACKAGE) -> list[tuple[str, list[str]]]:
    """The "Import layers" table of the package docstring: [(layer, [module, ...]), ...] in order."""
    doc = ast.get_docstring(ast.parse((root / "__init__.py").read_text(encoding="utf-8")))
    block = doc.split("Import layers", 1)[1]
    layers = re.findall(r"^    (\w+) +([\w ]+)$", block, flags=re.M)
    return [(name, mods.split()) for name, mods in layers]


def ranks(root: Path = PACKAGE) -> dict[str, tuple[int, int]]:
    """Top-level module or subpackage -> (layer index, position within the layer)."""
    return {mod: (i, j) for i, (_, mods) in enumerate(documented_layers(root)) for j, mod in enumerate(mods)}


def order_violations(edges: dict[str, set[str]], root: Path = PACKAGE) -> list[str]:
    """Imports from a later layer, or from a later module of the same layer (by the documented order)."""
    rank = ranks(root)
    pkg = root.name

    def top(m: str) -> str | None:
        parts = m.split(".")
        return parts[1] if len(parts) > 1 else None

    bad = []
    for m, targets in sorted(edges.items()):
        a = top(m)
        for t in sorted(targets):
            b = top(t)
            if a is None or b is None or a == b:      # the package __init__, or inside one subpackage
                continue
            if rank[b] > rank[a]:
                bad.append(f"{m} imports {t}, which comes after it in the documented order")
    assert pkg == "minireptile"
    return bad


def test_the_documented_layers_name_every_top_level_module_once():
    listed = [m for _, mods in documented_layers() for m in mods]
    assert len(listed) == len(set(listed))
    present = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | \
              {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert set(listed) == present


def test_the_package_has_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_module_imports_against_the_pipeline_order():
    assert order_violations(import_graph()) == []


def _fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "minireptile"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


DOC = '"""Pkg.\n\nImport layers\n-------------\n\n    core   errors mlp\n    tasks  tasks\n"""\n'


def test_the_checks_catch_a_back_import_and_a_cycle(tmp_path):
    """A back-import (core module importing a later stage) is both against the order and, here, a cycle."""
    root = _fake_package(tmp_path, {
        "__init__.py": DOC,
        "errors.py": "",
        "mlp.py": "from .errors import x\n",
        "tasks/__init__.py": "from .sine import y\n",
        "tasks/sine.py": "from ..mlp import z\n",
    })
    edges = import_graph(root)
    assert cycles(edges) == [] and order_violations(edges, root) == []
    (root / "mlp.py").write_text("from .errors import x\n\ndef f():\n    from .tasks.sine import y  # lazy, still an edge\n")
    edges = import_graph(root)
    assert cycles(edges) == [["minireptile.mlp", "minireptile.tasks.sine"]]
    assert order_violations(edges, root) == ["minireptile.mlp imports minireptile.tasks.sine, which comes after it "
                                             "in the documented order"]
    (root / "errors.py").write_text("import minireptile.mlp\n")       # same layer, earlier imports later
    assert "minireptile.errors imports minireptile.mlp, which comes after it in the documented order" in \
        order_violations(import_graph(root), root)


OPTIONAL = ("numba.cuda", "numba_cuda", "torch", "jax", "dask", "distributed", "matplotlib", "tqdm", "PIL")


def test_importing_minireptile_imports_no_optional_extra_and_no_compiled_backend():
    code = ("import sys, minireptile\n"
            f"bad = sorted(m for m in sys.modules if m.startswith({OPTIONAL!r}))\n"
            "assert not bad, bad\n"
            "assert 'minireptile.backends.numba_cpu' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", ["meta_train", "get_backend", "reptile_update", "inner_loop", "MLPSpec",
                                  "ReptileConfig", "evaluate_sine", "sine_block", "stream_rng"])
def test_public_names_stay_importable_from_the_package(name):
    import minireptile

    assert name in minireptile.__all__ and getattr(minireptile, name) is not None
