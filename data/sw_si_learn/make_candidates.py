"""Make the bundled learn case: candidate configurations of diamond Si labelled by the
DFT-trained SNAP model (SNAP_ZuoChenLi_2019_Si__MO_869330304805_000, Debian's
openkim-models), for fitting Stillinger-Weber to.

- perfect 8-atom cubic cells at 11 lattice constants, 5.0 to 6.0 Å (energy candidates);
- rattled cells (σ = 0.03 and 0.08 Å) at 5.33, 5.43 and 5.53 Å (force candidates);
- sheared cells (engineering shear ±3 % in yz, then rattled by 0.03 Å) at 5.43 Å
  (energy and forces).

Run from the repository root: python data/sw_si_learn/make_candidates.py
"""

from pathlib import Path

import ase.io
import numpy as np
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from pipeline.models.kim import KIMPotential

SNAP = "SNAP_ZuoChenLi_2019_Si__MO_869330304805_000"
OUT = Path(__file__).with_name("candidates.extxyz")


def labelled(atoms, model, quantity):
    atoms.positions = np.round(atoms.positions, 8)  # on the extxyz grid: what is written is what was labelled
    atoms.calc = SinglePointCalculator(atoms, energy=float(model.compute(atoms, "energy")[0]),
                                       forces=model.compute(atoms, "forces").reshape(-1, 3))
    atoms.info["fim_quantity"] = quantity
    return atoms


def main() -> None:
    model, frames, seed = KIMPotential(SNAP, ("Si",), 0.5), [], 0
    for a in np.linspace(5.0, 6.0, 11):
        frames.append(labelled(bulk("Si", "diamond", a=a, cubic=True), model, "energy"))
    for a in (5.33, 5.43, 5.53):
        for sigma in (0.03, 0.08):
            atoms = bulk("Si", "diamond", a=a, cubic=True)
            atoms.rattle(sigma, seed=seed)
            seed += 1
            frames.append(labelled(atoms, model, "forces"))
    for shear in (0.03, -0.03):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True)
        cell = atoms.cell.array.copy()
        cell[2, 1] += shear * cell[2, 2]
        atoms.set_cell(cell, scale_atoms=True)
        atoms.rattle(0.03, seed=seed)
        seed += 1
        frames.append(labelled(atoms, model, "energy,forces"))
    ase.io.write(OUT, frames, format="extxyz")


if __name__ == "__main__":
    main()
