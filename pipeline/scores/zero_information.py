"""Candidates that carry no information, and why.

A candidate whose FIM trace is below ``FLOOR`` times the median trace of all the
candidates informs no parameter: training on its data changes nothing, and a reference
calculation of it is wasted. The usual cause is a quantity that vanishes whatever the
parameters: the forces of a perfect crystal cancel by symmetry on every atom (ask for
its energy or stress instead). :func:`cause` tells that case from a quantity that is
there but does not depend on the parameters, and from a mask that weights nothing.
"""

from collections.abc import Sequence

import numpy as np

from pipeline.core.executors import worker_resource
from pipeline.models.derivatives import resolve
from pipeline.models.parameters import ParamSpec
from pipeline.models.potential import PotentialSpec, make_potential, with_defaults

FLOOR = 1e-12  # a FIM trace below this times the median trace: no information
FORCE_ZERO = 1e-4  # eV/Å: forces this small on every atom vanish (below any reference code's noise)


def uninformative(fims: np.ndarray) -> tuple[int, ...]:
    """Indices (sorted) of the FIMs (n, P, P) whose trace is below FLOOR × the median
    trace (or the largest, when more than half are zero)."""
    traces = np.trace(np.asarray(fims), axis1=1, axis2=2)
    if not len(traces):
        return ()
    scale = np.median(traces) if np.median(traces) > 0 else traces.max()
    return tuple(int(i) for i in np.flatnonzero(traces <= FLOOR * scale))


def cause(atoms, quantity: str, mask: np.ndarray | None, potential, assignments: Sequence[tuple[str, int, float]],
          names: Sequence[str]) -> str:
    """Why the candidate (``atoms``, ``quantity``, row ``mask``) carries no information
    about the parameters ``names``, in a phrase; ``potential`` is evaluated once at the
    ``assignments`` the FIMs were taken at."""
    if mask is not None and not np.any(mask):
        return "its mask weights every row zero"
    potential.set(with_defaults(potential, assignments))
    value = potential.compute(atoms, quantity)
    if quantity == "forces" and np.abs(value).max() < FORCE_ZERO:
        return ("its forces vanish by symmetry (every atom at a centre of symmetry, as in a perfect crystal), "
                "whatever the parameters: ask for its energy or stress instead")
    return f"its {quantity} does not change with {', '.join(names)}"


def explain(frames: Sequence, cands: Sequence, fims: np.ndarray, potential: PotentialSpec,
            spec: ParamSpec) -> dict[int, str]:
    """``{index: cause}`` of the candidates (``pipeline.scores.training_fim.Candidate``)
    whose FIMs carry no information, the model evaluated at the parameters ``spec`` gives."""
    flagged = uninformative(fims)
    if not flagged:
        return {}
    model = worker_resource(make_potential, potential)
    assignments = resolve(spec, model)
    names = list(dict.fromkeys(e.name for e in spec.tunable))
    return {i: cause(frames[cands[i].row], cands[i].quantity, cands[i].mask, model, assignments, names)
            for i in flagged}
