"""Potentials by config name, and what every potential offers.

A potential has ``parameter_extents() -> {name: extent}``, ``defaults`` (``{(name,
extent): value}`` as created), ``get(name, extent)``, ``set([(name, extent, value),
...])`` and ``compute(atoms, quantity)`` returning the quantity flattened: ``energy`` (1,) in eV, ``forces`` (3N,) in eV/Å, ``stress`` (6,)
in eV/Å³ (Voigt: xx, yy, zz, yz, xz, xy).
"""

import json
from dataclasses import dataclass

from pipeline.core.errors import ConfigError, check_choice

QUANTITIES = ("energy", "forces", "stress")


@dataclass(frozen=True)
class PotentialSpec:
    """What identifies a potential: hashable, picklable, JSON-able (defaults:
    stages/schema.py PotentialConfig)."""

    type: str  # kim | ase
    kim_id: str | None
    species: tuple[str, ...]
    calculator: str | None
    calculator_kwargs: str  # canonical JSON, so the spec stays hashable
    skin: float  # Å, neighbour-list skin (KIM); changes speed, never results

    def as_dict(self) -> dict:
        """What results depend on (everything but the skin)."""
        return {"type": self.type, "kim_id": self.kim_id, "species": list(self.species),
                "calculator": self.calculator, "calculator_kwargs": json.loads(self.calculator_kwargs)}


def _kim(spec: PotentialSpec):
    from pipeline.models.kim import KIMPotential

    if not spec.kim_id or not spec.species:
        raise ConfigError("potential.type=kim needs potential.kim_id and potential.species")
    return KIMPotential(spec.kim_id, spec.species, spec.skin)


def _ase(spec: PotentialSpec):
    from pipeline.models.ase_potential import ASEPotential

    if not spec.calculator:
        raise ConfigError("potential.type=ase needs potential.calculator, e.g. ase.calculators.lj.LennardJones")
    return ASEPotential(spec.calculator, json.loads(spec.calculator_kwargs))


POTENTIALS = {"kim": _kim, "ase": _ase}


def make_potential(spec: PotentialSpec):
    """A new potential for ``spec``; in workers use ``worker_resource(make_potential, spec)``."""
    return POTENTIALS[check_choice("potential.type", spec.type, POTENTIALS)](spec)


def with_defaults(potential, assignments) -> list[tuple[str, int, float]]:
    """Every parameter of ``potential``: ``assignments`` where given, else the value it
    was created with (so nothing an earlier computation set lingers)."""
    given = {(n, k): v for n, k, v in assignments}
    return [(n, k, given.get((n, k), v)) for (n, k), v in potential.defaults.items()]
