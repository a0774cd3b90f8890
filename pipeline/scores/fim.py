"""Fisher information matrices of training configurations.

For one image and one quantity q(θ) (energy, forces or stress, flattened), the FIM is
``Jᵀ J`` of the row-weighted Jacobian ``J = diag(w) ∂q/∂θ``, θ being the tunable
parameters in the transformed space; derivatives as :mod:`pipeline.models.derivatives`
takes them.
"""

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from pipeline.core.errors import InputError, check_choice
from pipeline.core.executors import worker_resource
from pipeline.models.derivatives import Derivative, parameter_jacobian
from pipeline.models.potential import QUANTITIES, PotentialSpec, make_potential
from pipeline.models.transforms import Transform


def rows(atoms: Atoms, quantity: str) -> int:
    """Number of Jacobian rows of ``quantity`` for ``atoms``."""
    return {"energy": 1, "forces": 3 * len(atoms), "stress": 6}[quantity]


def as_row_weights(mask: np.ndarray, atoms: Atoms, quantity: str, where: str) -> np.ndarray:
    """A mask as one weight per Jacobian row; a per-atom mask (N,) applies to all three
    force components of its atom."""
    flat = np.asarray(mask, dtype=float).reshape(-1)
    if quantity == "forces" and flat.size == len(atoms) != 3 * len(atoms):
        flat = np.repeat(flat, 3)
    if flat.size != rows(atoms, quantity):
        raise InputError(
            f"{where}: mask has {flat.size} values; expected {rows(atoms, quantity)} "
            f"(one per row of {quantity} for {len(atoms)} atoms)"
        )
    if not np.all(np.isfinite(flat)):
        raise InputError(f"{where}: mask has non-finite values")
    return flat


@dataclass(frozen=True)
class FimTask:
    """Everything one image's FIM depends on (picklable, sent to a worker)."""

    potential: PotentialSpec
    assignments: tuple[tuple[str, int, float], ...]  # every entry of the spec, resolved
    n_tunable: int  # the first n_tunable assignments are the tunable ones
    transform: Transform
    derivative: Derivative
    quantity: str
    mask: np.ndarray | None
    atoms: Atoms


def fim_shapes(task: FimTask) -> dict[str, tuple[int, int]]:
    """What :func:`image_fim` returns for ``task``: one (P, P) FIM."""
    return {"fim": (task.n_tunable, task.n_tunable)}


def fim_of(potential, task: FimTask) -> dict[str, np.ndarray]:
    """``{"fim": (P, P), "jacobian": (rows, P)}`` of one image with ``potential``."""
    check_choice("fim.quantity", task.quantity, QUANTITIES)
    jac = parameter_jacobian(potential, task.assignments, task.n_tunable, task.transform, task.derivative,
                             lambda: potential.compute(task.atoms, task.quantity))
    if task.mask is not None:
        jac = task.mask[:, None] * jac
    return {"fim": jac.T @ jac, "jacobian": jac}


def image_fim(task: FimTask) -> dict[str, np.ndarray]:
    """``{"fim": (P, P)}`` of :func:`fim_of`, with this worker's potential (made once
    per worker); what the store keeps."""
    return {"fim": fim_of(worker_resource(make_potential, task.potential), task)["fim"]}
