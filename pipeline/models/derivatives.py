"""Derivatives with respect to a potential's parameters, by finite differences.

Relative steps ``h_i = max(rel_step |θ_i|, min_step)`` in the transformed space
(:mod:`pipeline.models.transforms`):

- ``central``: (q(θ+h) − q(θ−h)) / 2h, 2P evaluations;
- ``central4``: (−q(θ+2h) + 8q(θ+h) − 8q(θ−h) + q(θ−2h)) / 12h, 4P evaluations;
- ``forward``: (q(θ+h) − q(θ)) / h, P+1 evaluations;
- ``forward2``: (−3q(θ) + 4q(θ+h) − q(θ+2h)) / 2h, 2P+1 evaluations;
- ``numdifftools``: numdifftools.Jacobian with the given options (adaptive, Richardson).

``abs_step`` replaces the relative steps with one absolute step for every parameter
(Orchestrator's finite differences use 0.1).
"""

import json
from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import ConfigError, check_choice
from pipeline.models.parameters import ParamSpec
from pipeline.models.potential import with_defaults
from pipeline.models.transforms import Transform, resolve_transform

STENCILS = {  # method -> ((multiple of h, weight), ...) and the divisor of h: df/dθ ≈ Σ w f(θ + m h) / (divisor h)
    "central": (((1, 1), (-1, -1)), 2),
    "central4": (((1, 8), (-1, -8), (2, -1), (-2, 1)), 12),
    "forward": (((1, 1), (0, -1)), 1),
    "forward2": (((1, 4), (0, -3), (2, -1)), 2),
}
METHODS = (*STENCILS, "numdifftools")


@dataclass(frozen=True)
class Derivative:
    """How derivatives are taken (defaults: stages/schema.py DerivativeConfig)."""

    method: str
    rel_step: float
    min_step: float
    numdifftools: str  # options as canonical JSON
    abs_step: float | None  # one absolute step instead of relative ones (None: relative steps)


def steps(theta: np.ndarray, d: Derivative) -> np.ndarray:
    """Per-parameter step sizes, in the transformed space."""
    if d.abs_step is not None:
        if not d.abs_step > 0:
            raise ConfigError(f"derivative.abs_step: expected a positive step, got {d.abs_step}")
        return np.full(len(theta), float(d.abs_step))
    if not d.rel_step > 0 or not d.min_step > 0:
        raise ConfigError(f"derivative: expected rel_step > 0 and min_step > 0, got {d.rel_step}, {d.min_step}")
    return np.maximum(d.rel_step * np.abs(theta), d.min_step)


def jacobian(f, theta: np.ndarray, d: Derivative) -> np.ndarray:
    """∂f/∂θ at ``theta``, shape (rows, P), by the method of ``d``: a stencil of
    :data:`STENCILS` or numdifftools."""
    check_choice("derivative.method", d.method, METHODS)
    theta = np.asarray(theta, dtype=float)
    if d.method == "numdifftools":
        rows = len(f(theta))
        return np.asarray(numdifftools_jacobian(f, d.numdifftools)(theta)).reshape(rows, len(theta))
    terms, divisor = STENCILS[d.method]
    h = steps(theta, d)
    base = f(theta) if any(m == 0 for m, _ in terms) else None
    columns = []
    for i in range(len(theta)):
        e = np.zeros_like(theta)
        e[i] = h[i]
        columns.append(sum(w * (base if m == 0 else f(theta + m * e)) for m, w in terms) / (divisor * h[i]))
    return np.stack(columns, axis=1)


def numdifftools_jacobian(f, options: str):
    """``numdifftools.Jacobian(f, **options)`` (options as JSON), its refusal of an
    option as a :class:`ConfigError`."""
    import numdifftools as nd

    try:
        nd.Jacobian(lambda x: x, **json.loads(options))(np.ones(1))  # a trial on y = x
    except (TypeError, ValueError, KeyError) as err:
        raise ConfigError(f"fim.derivative.numdifftools: numdifftools.Jacobian refused {options}: "
                          f"{type(err).__name__}: {err}") from err
    return nd.Jacobian(f, **json.loads(options))


def parameter_jacobian(potential, assignments, n_tunable: int, transform: Transform, derivative: Derivative,
                       evaluate) -> np.ndarray:
    """∂ evaluate() / ∂θ, θ the first ``n_tunable`` of ``assignments`` in the
    transformed space; every other parameter as ``assignments`` or the model's default.
    The model is left with the assignments set."""
    tunable = assignments[:n_tunable]
    potential.set(with_defaults(potential, assignments))
    values = np.array([v for _, _, v in tunable])
    resolved = resolve_transform(transform, values)

    names, extents = [n for n, _, _ in tunable], [k for _, k, _ in tunable]

    def f(theta):
        potential.set(zip(names, extents, resolved.inverse(theta).tolist()))
        return evaluate()

    try:
        return jacobian(f, resolved.forward(values), derivative)
    finally:
        potential.set(tunable)


def resolve(spec: ParamSpec, potential) -> tuple[tuple[str, int, float], ...]:
    """Every entry of ``spec`` with its value (the model's own, as created, where not
    given), tunable entries first, in spec order."""
    entries = spec.tunable + tuple(e for e in spec.entries if e.fixed)
    return tuple((e.name, e.extent, potential.defaults[e.name, e.extent] if e.value is None else e.value)
                 for e in entries)
