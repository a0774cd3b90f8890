"""KLIFF-style parameters_optimize, parsed once into an ordered spec."""

import pytest

from pipeline.core.errors import ConfigError
from pipeline.models.parameters import ParamEntry, parse

SW = {"A": 1, "B": 1, "lambda": 1, "pair": 3}


def test_the_four_forms_and_the_order():
    spec = parse({"A": [[15.2848479197914]], "B": [["default"]], "lambda": [[0.0, "fix"]],
                  "pair": [["default", "fix"], [2.0], ["default", 0.5, 3.0]]})
    assert spec.entries == (
        ParamEntry("A", 0, 15.2848479197914, False), ParamEntry("B", 0, None, False),
        ParamEntry("lambda", 0, 0.0, True), ParamEntry("pair", 0, None, True),
        ParamEntry("pair", 1, 2.0, False), ParamEntry("pair", 2, None, False, (0.5, 3.0)))
    assert spec.labels() == {0: {"parameter": "A", "extent": 0}, 1: {"parameter": "B", "extent": 0},
                             2: {"parameter": "pair", "extent": 1}, 3: {"parameter": "pair", "extent": 2}}
    assert [e.name for e in spec.held] == ["lambda"]
    spec.check(SW, "SW")


@pytest.mark.parametrize("raw,match", [
    ({}, "at least one parameter"),
    ({"A": [[1.0, "fix"]]}, "nothing to differentiate"),
    ({"A": "default"}, r"A: expected a list with one entry per extent"),
    ({"A": [1.0]}, r"A\[0\]: expected \[value\]"),
    ({"A": [["deflt"]]}, r"A\[0\]: expected a number or 'default', got 'deflt'"),
    ({"A": [[1.0, "fixed"]]}, r"expected 'fix' after the value, got 'fixed'"),
    ({"A": [[1.0, 2.0, 3.0, 4.0]]}, r"A\[0\]: expected \[value\]"),
])
def test_malformed_entries(raw, match):
    with pytest.raises(ConfigError, match=match):
        parse(raw)


def test_names_and_extents_are_checked_against_the_model():
    with pytest.raises(ConfigError, match=r"SW has no parameter 'sigma'; it has \['A', 'B', 'lambda', 'pair'\]"):
        parse({"sigma": [["default"]]}).check(SW, "SW")
    with pytest.raises(ConfigError, match=r"pair: expected 3 entries .* got 1"):
        parse({"pair": [["default"]]}).check(SW, "SW")
