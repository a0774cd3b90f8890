"""KLIFF-style ``parameters_optimize``, parsed once into an ordered parameter spec.

``{name: [entry, ...]}`` with one entry per extent (component) of the parameter:

- ``["default"]``: tunable, starting at the model's value;
- ``[v]``: tunable, starting at ``v``;
- ``[v, "fix"]``: set to ``v`` and held there;
- ``["default", "fix"]``: left untouched;
- ``[v or "default", lower, upper]``: tunable, with bounds (kept, not used by the FIM).

The tunable entries, in dict order then extent order, are the FIM's rows and columns;
:meth:`ParamSpec.labels` names them.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.core.errors import ConfigError

DEFAULT = "default"
FIX = "fix"


@dataclass(frozen=True)
class ParamEntry:
    """One component of one model parameter."""

    name: str
    extent: int
    value: float | None  # None: the model's own value
    fixed: bool
    bounds: tuple[float, float] | None = None


@dataclass(frozen=True)
class ParamSpec:
    """The ordered, immutable parameter spec."""

    entries: tuple[ParamEntry, ...]

    @property
    def tunable(self) -> tuple[ParamEntry, ...]:
        return tuple(e for e in self.entries if not e.fixed)

    @property
    def held(self) -> tuple[ParamEntry, ...]:
        """Fixed entries with a value to set (``["default", "fix"]`` is left alone)."""
        return tuple(e for e in self.entries if e.fixed and e.value is not None)

    def labels(self) -> dict[int, dict]:
        """``{row: {"parameter": name, "extent": k}}`` of the FIM's rows and columns."""
        return {i: {"parameter": e.name, "extent": e.extent} for i, e in enumerate(self.tunable)}

    def check(self, extents: Mapping[str, int], what: str) -> None:
        """Raise :class:`ConfigError` unless every name and extent exists in ``extents``."""
        for name in dict.fromkeys(e.name for e in self.entries):
            if name not in extents:
                raise ConfigError(
                    f"potential.parameters_optimize: {what} has no parameter {name!r}; "
                    f"it has {list(extents)}"
                )
            given = sum(e.name == name for e in self.entries)
            if given != extents[name]:
                raise ConfigError(
                    f"potential.parameters_optimize.{name}: expected {extents[name]} entries "
                    f"(one per extent of {name} in {what}), got {given}"
                )

    def check_defaults(self, defaults: Mapping[tuple[str, int], float]) -> None:
        """Every ``'default'`` value with bounds: the model's value within them."""
        for e in self.tunable:
            if e.bounds is not None and e.value is None:
                check_bounds(e.name, e.extent, defaults[e.name, e.extent], e.bounds)


def _number(name: str, k: int, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(
            f"potential.parameters_optimize.{name}[{k}]: expected a number or {DEFAULT!r}, got {value!r}"
        )
    return float(value)


def _entry(name: str, k: int, raw) -> ParamEntry:
    if isinstance(raw, (str, int, float)) or not isinstance(raw, Sequence) or not 1 <= len(raw) <= 3:
        raise ConfigError(
            f"potential.parameters_optimize.{name}[{k}]: expected [value], [value, 'fix'] or "
            f"[value, lower, upper] (value a number or 'default'), got {raw!r}"
        )
    first, rest = raw[0], list(raw[1:])
    value = None if first == DEFAULT else _number(name, k, first)
    if rest == [FIX]:
        return ParamEntry(name, k, value, fixed=True)
    if len(rest) == 1:
        raise ConfigError(f"potential.parameters_optimize.{name}[{k}]: expected 'fix' after the value, got {rest[0]!r}")
    bounds = (_number(name, k, rest[0]), _number(name, k, rest[1])) if rest else None
    if bounds is not None:
        check_bounds(name, k, value, bounds)
    return ParamEntry(name, k, value, fixed=False, bounds=bounds)


def check_bounds(name: str, k: int, value: float | None, bounds: tuple[float, float]) -> None:
    """Bounds ordered, and a value (given, or the model's default) within them."""
    lower, upper = bounds
    if not lower < upper:
        raise ConfigError(f"potential.parameters_optimize.{name}[{k}]: expected lower < upper, got [{lower}, {upper}]")
    if value is not None and not lower <= value <= upper:
        raise ConfigError(f"potential.parameters_optimize.{name}[{k}]: the value {value} is outside its own bounds "
                          f"[{lower}, {upper}]")


def parse(parameters_optimize: Mapping[str, Sequence]) -> ParamSpec:
    """The :class:`ParamSpec` of a KLIFF-style ``parameters_optimize`` mapping."""
    if not parameters_optimize:
        raise ConfigError("potential.parameters_optimize: expected at least one parameter, got none")
    entries = []
    for name, per_extent in parameters_optimize.items():
        if isinstance(per_extent, (str, bytes)) or not isinstance(per_extent, Sequence) or not per_extent:
            raise ConfigError(
                f"potential.parameters_optimize.{name}: expected a list with one entry per extent, "
                f"e.g. [['default']], got {per_extent!r}"
            )
        entries.extend(_entry(str(name), k, raw) for k, raw in enumerate(per_extent))
    spec = ParamSpec(tuple(entries))
    if not spec.tunable:
        raise ConfigError("potential.parameters_optimize: every entry is fixed; nothing to differentiate")
    return spec


def label_text(labels: dict) -> str:
    """Parameter labels ``{i: {parameter, extent}}`` as one string, ``"A:0,B:0"``."""
    return ",".join(f"{lab['parameter']}:{lab['extent']}" for _, lab in sorted(labels.items(), key=lambda kv: int(kv[0])))
