"""Config sections to the library's model specs, shared by the stages that evaluate a
potential (fim_train, fim_property)."""

import json

from pipeline.core.errors import check_choice
from pipeline.models.derivatives import Derivative
from pipeline.models.potential import PotentialSpec
from pipeline.models.transforms import Transform
from stages.schema import DerivativeConfig, PotentialConfig, TargetDerivativeConfig, TransformConfig

TARGET_METHODS = {"FD": "forward", "FD2": "forward2", "CD": "central", "CD4": "central4"}


def potential_of(p: PotentialConfig) -> PotentialSpec:
    return PotentialSpec(p.type, p.kim_id, tuple(p.species), p.calculator,
                         json.dumps(p.calculator_kwargs, sort_keys=True), p.skin)


def transform_of(t: TransformConfig) -> Transform:
    return Transform(t.type, tuple(t.a), tuple(t.b), tuple(t.x0))


def derivative_of(d: DerivativeConfig) -> Derivative:
    """``fim.derivative`` as the library's :class:`Derivative`."""
    return Derivative(d.method, d.rel_step, d.min_step, json.dumps(d.numdifftools, sort_keys=True), None)


def target_derivative_of(d: TargetDerivativeConfig) -> Derivative:
    """``target.derivative`` (Orchestrator's FD/FD2/CD/CD4 names) as a :class:`Derivative`."""
    method = TARGET_METHODS[check_choice("target.derivative.method", d.method, TARGET_METHODS)]
    return Derivative(method, d.rel_step, d.min_step, "{}", d.abs_step)
