"""Make the bundled example: a small silicon study with several configuration types.

    python data/example/make_example.py [--out data/example/si_candidates.extxyz]
                                        [--model KIM_ID] [--seed N] [--scale K]

The frames a user of atomsieve brings: diamond Si in several configuration types, each
frame's ``config_type`` in its info, and the quantity whose information it offers in
``fim_quantity`` (what the fim_train stage reads per frame):

- ``bulk``: perfect 8-atom cells at lattice constants 0.95 a0 to 1.05 a0: their
  energy (their forces vanish by symmetry);
- ``strained``: 8-atom cells under random strains of up to 2 % (shear too): energy
  and stress (their forces vanish as well);
- ``rattled``: 8 to 64 atoms, strained by up to 2 %, rattled by 0.02 to 0.10 Å: forces;
- ``vacancy``: a 63-atom cell (one atom removed), rattled: forces;
- ``slab``: a (100) slab of 8 layers with 8 Å of vacuum, rattled: forces;
- ``md``: snapshots 40 fs apart of Langevin dynamics at 1,200 K of 64 atoms: forces;

then a few exact copies of earlier frames (the hash stage removes them). Energies (eV),
forces (eV/Å) and stresses (eV/Å³) come from the OpenKIM model ``--model`` through
ASE's KIM calculator. ``--scale`` multiplies the number of frames of every type.
Deterministic for a given seed. :func:`study` is what the tests use to make a user's
dataset labelled by another model.
"""

import argparse
from pathlib import Path

import ase.io
import numpy as np
from ase import units
from ase.build import bulk, diamond100
from ase.calculators.kim import KIM
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin

MODEL = "SW_StillingerWeber_1985_Si__MO_405512056662_005"
A0 = 5.431  # Å, diamond Si
COUNTS = {"bulk": 5, "strained": 4, "rattled": 12, "vacancy": 3, "slab": 3, "md": 6, "copies": 3}
REPEATS = [(1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2)]  # 8, 16, 32, 64 atoms


def _cell(repeat=(1, 1, 1), a=A0):
    return bulk("Si", "diamond", a=a, cubic=True).repeat(repeat)


def _strain(atoms, rng, largest: float):
    strain = np.eye(3) + rng.uniform(-largest, largest, (3, 3)) * np.array([[1, .5, .5], [.5, 1, .5], [.5, .5, 1]])
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    return atoms


def structures(counts: dict, seed: int) -> list:
    """The unlabelled frames, each with info ``config_type`` and ``fim_quantity``."""
    rng = np.random.default_rng(seed)
    out = []

    def add(atoms, kind, quantity):
        atoms.info.update(config_type=kind, fim_quantity=quantity)
        out.append(atoms)

    for a in np.linspace(0.95, 1.05, counts["bulk"]) * A0:
        add(_cell(a=a), "bulk", "energy")
    for _ in range(counts["strained"]):
        add(_strain(_cell(), rng, 0.02), "strained", "energy,stress")
    for i in range(counts["rattled"]):
        atoms = _strain(_cell(REPEATS[i % len(REPEATS)]), rng, 0.02)
        atoms.rattle(stdev=rng.uniform(0.02, 0.10), seed=int(rng.integers(2**31)))
        add(atoms, "rattled", "forces")
    for _ in range(counts["vacancy"]):
        atoms = _cell((2, 2, 2))
        del atoms[int(rng.integers(len(atoms)))]
        atoms.rattle(stdev=0.03, seed=int(rng.integers(2**31)))
        add(atoms, "vacancy", "forces")
    for _ in range(counts["slab"]):
        atoms = diamond100("Si", size=(2, 2, 8), a=A0, vacuum=4.0, orthogonal=True, periodic=True)
        atoms.info.pop("adsorbate_info", None)
        atoms.rattle(stdev=0.05, seed=int(rng.integers(2**31)))
        add(atoms, "slab", "forces")
    return out


def md_snapshots(count: int, calc, seed: int, temperature: float = 1200.0) -> list:
    """``count`` snapshots, 40 fs apart after 200 fs of warming, of 64 atoms at ``temperature`` K."""
    if not count:
        return []
    atoms = _cell((2, 2, 2))
    atoms.calc = calc
    kt = units.kB * temperature  # Maxwell-Boltzmann momenta, p ~ N(0, m kT) per component
    spread = np.sqrt(atoms.get_masses() * kt)[:, None]
    atoms.set_momenta(np.random.default_rng(seed).normal(size=(len(atoms), 3)) * spread)
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=temperature, friction=0.02,
                   fixcm=False, rng=np.random.default_rng(seed + 1))
    dyn.run(100)
    out = []
    for _ in range(count):
        dyn.run(20)
        snap = atoms.copy()
        snap.info.update(config_type="md", fim_quantity="forces")
        out.append(snap)
    return out


def label(frames: list, calc) -> list:
    """Each frame with its energy, forces and (periodic cells) stress from ``calc``."""
    for atoms in frames:
        atoms.calc = calc
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        if atoms.pbc.all():
            results["stress"] = atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, **results)
    return frames


def study(model: str = MODEL, seed: int = 2026, counts: dict | None = None) -> list:
    """The frames of the study, labelled by the KIM model ``model``: the types of the
    module docstring in ``counts`` (default :data:`COUNTS`), then ``counts['copies']``
    exact copies of earlier frames."""
    counts = {**COUNTS, **(counts or {})}
    calc = KIM(model)
    frames = structures(counts, seed) + md_snapshots(counts["md"], calc, seed)
    frames = label(frames, calc)
    rng = np.random.default_rng(seed + 2)
    return frames + [_with_labels(frames[j]) for j in rng.choice(len(frames), counts["copies"], replace=False)]


def _with_labels(atoms):
    copy = atoms.copy()
    copy.calc = SinglePointCalculator(copy, **atoms.calc.results)
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("si_candidates.extxyz"))
    parser.add_argument("--model", default=MODEL, help="the KIM model that labels the frames")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--scale", type=int, default=1, help="this many times the frames of every type")
    args = parser.parse_args()
    counts = {k: v * args.scale for k, v in COUNTS.items()}
    ase.io.write(args.out, study(args.model, args.seed, counts), format="extxyz")


if __name__ == "__main__":
    main()
