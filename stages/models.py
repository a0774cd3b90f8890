"""Config sections to the library's model specs, shared by the stages that evaluate a
potential (fim_train, fim_property)."""

import json

from pipeline.models.derivatives import Derivative
from pipeline.models.potential import PotentialSpec
from pipeline.models.transforms import Transform
from stages.schema import DerivativeConfig, PotentialConfig, TransformConfig


def potential_of(p: PotentialConfig) -> PotentialSpec:
    return PotentialSpec(p.type, p.kim_id, tuple(p.species), p.calculator,
                         json.dumps(p.calculator_kwargs, sort_keys=True), p.skin)


def transform_of(t: TransformConfig) -> Transform:
    return Transform(t.type, tuple(t.a), tuple(t.b), tuple(t.x0))


def derivative_of(d: DerivativeConfig) -> Derivative:
    """``fim.derivative`` or ``target.derivative`` as the library's :class:`Derivative`."""
    return Derivative(d.method, d.rel_step, d.min_step, json.dumps(d.numdifftools, sort_keys=True), d.abs_step)


def targets_of(properties: dict, lammps_executable: str | None = None) -> list:
    """``target.properties``, each entry checked against its type's schema
    (:data:`stages.schema.PROPERTY_SCHEMAS`, defaults filled in), as the library's targets;
    those computed by LAMMPS run ``lammps_executable`` (``target.lammps.executable``)."""
    from dataclasses import asdict

    from pipeline.core.errors import ConfigError, check_choice
    from pipeline.scores.property_fim import parse_targets
    from stages.schema import PROPERTY_SCHEMAS, typed_section

    if not properties:
        raise ConfigError("target.properties: expected at least one property, got none")
    typed = {}
    for name, entry in properties.items():
        kind = check_choice(f"target.properties.{name}.type", dict(entry).get("type"), PROPERTY_SCHEMAS)
        typed[name] = asdict(typed_section(PROPERTY_SCHEMAS[kind], entry, f"target.properties.{name}"))
    from dataclasses import replace

    targets = parse_targets(typed)
    if lammps_executable is None:
        return targets
    from pipeline.models.lammps import check_executable

    if not any(t.backend == "lammps" for t in targets):
        import logging

        logging.getLogger("atomsieve").warning("target.lammps.executable=%s is unused: no target property has "
                                               "backend: lammps", lammps_executable)
        return targets
    path = check_executable(lammps_executable)
    return [replace(t, executable=path) if t.backend == "lammps" else t for t in targets]


def index_args_of(index: str, raw: dict) -> dict:
    """``ltau.index_args`` checked against the index's schema (:data:`stages.schema.INDEX_ARGS`),
    defaults filled in."""
    from dataclasses import asdict

    from pipeline.core.errors import check_choice
    from stages.schema import INDEX_ARGS, typed_section

    return asdict(typed_section(INDEX_ARGS[check_choice("ltau.index", index, INDEX_ARGS)], raw, "ltau.index_args"))
