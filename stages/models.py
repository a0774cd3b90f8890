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
