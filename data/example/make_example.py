"""Make the bundled example: Si candidate configurations labelled by Stillinger-Weber.

    python data/example/make_example.py [--out data/example/si_candidates.extxyz]

44 frames: 40 distinct diamond Si cells of 8 to 64 atoms (some larger ones with a vacancy),
strained by up to 3 % and rattled by 0.02 to 0.12 Å, then 4 exact copies of earlier
frames to exercise de-duplication. Energies (eV) and forces (eV/Å) come from the
OpenKIM model SW_StillingerWeber_1985_Si__MO_405512056662_005 through ASE's KIM
calculator. Deterministic for a given seed.
"""

import argparse
from pathlib import Path

import ase.io
import numpy as np
from ase.build import bulk
from ase.calculators.kim import KIM
from ase.calculators.singlepoint import SinglePointCalculator

MODEL = "SW_StillingerWeber_1985_Si__MO_405512056662_005"
A0 = 5.431  # Å, diamond Si
REPEATS = [(1, 1, 1), (2, 1, 1), (2, 2, 1), (1, 2, 2), (2, 2, 2)]  # 8, 16, 32, 32, 64 atoms


def candidates(n_unique: int, n_copies: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    calc = KIM(MODEL)
    frames = []
    for i in range(n_unique):
        atoms = bulk("Si", "diamond", a=A0, cubic=True).repeat(REPEATS[i % len(REPEATS)])
        if i % 7 == 3 and len(atoms) > 8:
            del atoms[int(rng.integers(len(atoms)))]
        strain = np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3)) * np.array([[1, .3, .3], [.3, 1, .3], [.3, .3, 1]])
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.rattle(stdev=rng.uniform(0.02, 0.12), seed=int(rng.integers(2**31)))
        atoms.calc = calc
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        frames.append(atoms)
    copies = [frames[j] for j in rng.choice(n_unique, n_copies, replace=False)]
    return frames + copies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("si_candidates.extxyz"))
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    ase.io.write(args.out, candidates(40, 4, args.seed), format="extxyz")


if __name__ == "__main__":
    main()
