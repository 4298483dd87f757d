"""The course's opener comes before any Taylor expansion, and its lecture plan points at what exists."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
OPENER = (DOCS / "meta_learning.md").read_text()


def test_the_opener_is_the_first_page_of_the_course_and_has_no_taylor_expansion():
    toctree = (DOCS / "index.md").read_text().split(":caption: Learn")[1].split("```")[0].split()
    assert toctree[:3] == ["meta_learning", "reptile", "interactive"]
    for term in ("Taylor", "AvgGradInner", r"\bar g", "O(\\alpha"):
        assert term not in OPENER.split("## Reptile in two sentences")[0], term
    for concept in ("task", "support set", "query set", "meta-training", "meta-testing", "good initialisation"):
        assert concept in OPENER.lower(), concept
    assert "generated/meta_vs_random.png" in OPENER and "after 1, 4 and 32" in OPENER


def test_the_lecture_plan_names_pages_tutorials_and_exercises_that_exist():
    plan = OPENER.split("a plan for four lectures")[1]
    rows = [line for line in plan.splitlines() if re.match(r"^\| [1-4] \|", line)]
    assert len(rows) == 4
    exercises = (DOCS / "exercises" / "exercises.py").read_text()
    named = []
    for row in rows:
        cells = row.split(" | ")
        links = re.findall(r"\]\(([\w/]+\.md)(?:#[\w-]+)?\)", row)
        assert any(link.startswith("tutorials/") for link in links), row
        assert all((DOCS / link).exists() for link in links), row
        for name in re.findall(r"`(\w+)`", cells[-1]):
            assert f"\ndef {name}(" in exercises, name
            named.append(name)
    assert len(named) == len(set(named)) == exercises.count("\ndef ")      # every exercise, once
