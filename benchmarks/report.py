"""What every benchmark prints last: one line per target (met or MISSED) and, if asked, the JSON file."""

from __future__ import annotations

import json


def finish(checks: list[dict], result: dict, path: str | None) -> None:
    """Print ``[met] target: value`` or ``[MISSED] …`` per check, then write ``result`` to ``path`` (if any)."""
    for c in checks:
        print(f"[{'met' if c['met'] else 'MISSED'}] {c['target']}: {c['value']}")
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
        print(f"json: {path}")
