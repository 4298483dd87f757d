"""docs/api.md documents every name `minireptile` exports."""

import re
from pathlib import Path

import minireptile

API = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_every_exported_name_is_in_the_api_reference():
    text = API.read_text()
    missing = [name for name in minireptile._EXPORTS if not re.search(rf"minireptile\.{name}\b", text)]
    assert missing == []
    for name in minireptile._EXPORTS:   # and every documented name imports
        getattr(minireptile, name)
