"""Every output key is declared once, and README's table is that declaration."""

import re

from conftest import ROOT

from pipeline.core import outputs


def test_readme_output_table_is_the_declaration():
    assert outputs.table() in (ROOT / "README.md").read_text(), (
        "README's output table differs from pipeline/core/outputs.py: paste outputs.table() into it")


def test_keys_are_unique_and_stages_name_none_as_a_literal():
    keys = [o.key for o in outputs.OUTPUTS]
    assert len(keys) == len(set(keys))
    for path in sorted((ROOT / "stages").glob("*.py")):
        text = path.read_text()
        for key in keys:
            # a key may appear in docstrings and messages, but is never indexed or assigned by its literal
            assert not re.search(rf"""(info|arrays)\[["']{key}["']\]""", text), f"{path.name}: literal key {key}"
