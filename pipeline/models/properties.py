"""Target properties of cubic crystals, computed with a potential in this process.

- ``lattice_constant``: the zero-pressure lattice constant a0 (Å), a root of the
  pressure found with Brent's method; a loose energy minimisation would not do, since
  its error shifts with every parameter perturbation.
- ``cohesive_energy``: energy per atom at a0 (eV/atom), relative to free atoms.
- ``energy_curve``: E(a0 + Δa)/N − E(a0)/N (eV/atom) on a grid of Δa (Å).
- ``phonon_band``: the lowest phonon branch (THz) along Γ–X, Γ–K or Γ–L, from a
  supercell's force constants (:mod:`pipeline.models.phonons`).
- ``elastic_constants``: C11, C12, C44 (or all 21 of the 6×6 Voigt tensor) in GPa at
  a0, with internal coordinates relaxed. The unrelaxed tensor C⁰ comes from central
  differences of the stress in strain; the relaxation is the exact linear response
  C = C⁰ − Λᵀ K⁺ Λ / V, with K the force-constant matrix (central differences of the
  forces in displacement) and Λ = ∂F/∂ε the forces a strain induces.

Each property function takes a potential and its arguments and returns a vector.
"""

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.units import GPa
from scipy.optimize import brentq

from pipeline.core.errors import ConfigError, InputError, check_choice

LATTICES = ("diamond", "fcc", "bcc")
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
STRAIN_STEP = 1e-4  # strain of the central differences
DISPLACEMENT_STEP = 1e-4  # Å, displacement of the force-constant differences


@dataclass(frozen=True)
class Crystal:
    lattice: str
    species: str
    a_guess: float  # Å, a starting point for the lattice-constant search


def crystal(lattice: str, species: str, a_guess: float | None) -> Crystal:
    from ase.data import chemical_symbols

    check_choice("target.properties.*.lattice", lattice, LATTICES)
    if species not in chemical_symbols[1:]:
        raise ConfigError(f"target.properties.*.species: expected an element symbol (H ... Og), got {species!r}")
    if a_guess is not None and (isinstance(a_guess, bool) or not isinstance(a_guess, (int, float))
                                or not 0 < a_guess < 1e3):
        raise ConfigError(f"target.properties.*.a_guess: expected a lattice constant in Å, got {a_guess!r}")
    if a_guess is None:
        from ase.data import atomic_numbers, reference_states

        ref = reference_states[atomic_numbers.get(species, 0)] or {}
        if "a" not in ref:
            raise ConfigError(f"target.properties.*.a_guess: needed for {species!r} (no ASE reference lattice)")
        a_guess = ref["a"]
    return Crystal(lattice, species, float(a_guess))


def cell(c: Crystal, a: float) -> Atoms:
    return bulk(c.species, c.lattice, a=a, cubic=True)


def pressure(potential, c: Crystal, a: float) -> float:
    """Pressure (eV/Å³) of the perfect cubic cell of lattice constant ``a``."""
    return -float(np.mean(potential.compute(cell(c, a), "stress")[:3]))


def zero_pressure_a(potential, c: Crystal) -> float:
    """The lattice constant (Å) at which the pressure vanishes."""
    lo, hi = 0.97 * c.a_guess, 1.03 * c.a_guess
    p_lo, p_hi = pressure(potential, c, lo), pressure(potential, c, hi)
    for _ in range(20):  # widen until the pressure changes sign
        if p_lo > 0 > p_hi:
            return brentq(lambda a: pressure(potential, c, a), lo, hi, xtol=1e-13, rtol=4 * np.finfo(float).eps)
        lo, hi = lo * 0.97, hi * 1.03
        p_lo, p_hi = pressure(potential, c, lo), pressure(potential, c, hi)
    raise InputError(f"{c.species} {c.lattice}: no zero-pressure lattice constant near {c.a_guess} Å")


def strained(atoms: Atoms, j: int, e: float) -> Atoms:
    """``atoms`` under Voigt strain component ``j`` of size ``e`` (engineering shear)."""
    eps = np.zeros((3, 3))
    a, b = VOIGT[j]
    eps[a, b] += e if a == b else e / 2
    eps[b, a] += 0 if a == b else e / 2
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    return out


def relaxed_elastic_tensor(potential, atoms: Atoms) -> np.ndarray:
    """6×6 Voigt tensor (eV/Å³) of an equilibrium cell, internal coordinates relaxed."""
    h, d = STRAIN_STEP, DISPLACEMENT_STEP
    c0 = np.empty((6, 6))
    lam = np.empty((3 * len(atoms), 6))
    for j in range(6):
        plus, minus = strained(atoms, j, h), strained(atoms, j, -h)
        c0[:, j] = (potential.compute(plus, "stress") - potential.compute(minus, "stress")) / (2 * h)
        lam[:, j] = (potential.compute(plus, "forces") - potential.compute(minus, "forces")) / (2 * h)
    k = np.empty((3 * len(atoms), 3 * len(atoms)))
    for m in range(3 * len(atoms)):
        moved = [atoms.copy(), atoms.copy()]
        moved[0].positions.flat[m] += d
        moved[1].positions.flat[m] -= d
        k[:, m] = -(potential.compute(moved[0], "forces") - potential.compute(moved[1], "forces")) / (2 * d)
    k = (k + k.T) / 2
    relaxed = c0 - lam.T @ np.linalg.pinv(k, rcond=1e-10, hermitian=True) @ lam / atoms.get_volume()
    return (relaxed + relaxed.T) / 2


def lattice_constant(potential, c: Crystal) -> np.ndarray:
    return np.array([zero_pressure_a(potential, c)])


def cohesive_energy(potential, c: Crystal) -> np.ndarray:
    atoms = cell(c, zero_pressure_a(potential, c))
    return potential.compute(atoms, "energy") / len(atoms)


def elastic_constants(potential, c: Crystal, full: bool = False) -> np.ndarray:
    """[C11, C12, C44] in GPa, or with ``full`` the upper triangle of the 6×6 tensor
    (21 values, row by row)."""
    tensor = relaxed_elastic_tensor(potential, cell(c, zero_pressure_a(potential, c))) / GPa
    if full:
        return tensor[np.triu_indices(6)]
    return np.array([tensor[0, 0], tensor[0, 1], tensor[3, 3]])


def names(kind: str, full: bool = False, options: dict | None = None) -> list[str]:
    """Names of the values a property returns, in order (``options``: the property's own settings)."""
    if kind == "elastic_constants":
        return [f"C{i + 1}{j + 1}" for i, j in zip(*np.triu_indices(6))] if full else ["C11", "C12", "C44"]
    if kind == "energy_curve":
        return [f"dE({d:+.3f})" for d in curve_grid(options["delta_range"], options["points"])]
    if kind == "phonon_band":
        return [f"nu_{options['path']}({k}/{options['points']})" for k in range(1, options["points"] + 1)]
    return {"lattice_constant": ["a0"], "cohesive_energy": ["E_coh"]}[kind]


PATHS = {"GX": (1.0, 0.0, 0.0), "GK": (0.75, 0.75, 0.0), "GL": (0.5, 0.5, 0.5)}  # end points, 2π/a units


def curve_grid(delta_range, points: int) -> np.ndarray:
    """Δa (Å): ``points`` evenly over ``delta_range``, Δa = 0 left out (the change is 0 there)."""
    lo, hi = (float(v) for v in delta_range)
    if not lo < hi or points < 2:
        raise ConfigError(f"target.properties.*: expected delta_range [lo, hi] with lo < hi and points >= 2, "
                          f"got {list(delta_range)} and {points}")
    grid = np.linspace(lo, hi, points)
    return grid[np.abs(grid) > 1e-12 * (hi - lo)]


def energy_curve(potential, c: Crystal, delta_range, points: int) -> np.ndarray:
    """E(a0 + Δa)/N − E(a0)/N (eV/atom) over :func:`curve_grid`, a0 the zero-pressure
    lattice constant of these parameters."""
    a0 = zero_pressure_a(potential, c)
    grid = curve_grid(delta_range, points)
    if a0 + grid[0] <= 0.5 * a0:
        raise InputError(f"{c.species} {c.lattice}: Δa = {grid[0]} Å compresses a0 = {a0:.4f} Å by half or more")
    atoms = cell(c, a0)
    e0 = float(potential.compute(atoms, "energy")[0]) / len(atoms)
    return np.array([float(potential.compute(cell(c, a0 + d), "energy")[0]) / len(atoms) - e0 for d in grid])


def q_path(path: str, points: int, a: float) -> np.ndarray:
    """Cartesian q (1/Å), (points, 3): Γ (left out) to the path's end, evenly."""
    check_choice("target.properties.*.path", path, PATHS)
    if points < 1:
        raise ConfigError(f"target.properties.*.points: expected at least 1 q-point, got {points}")
    return np.outer(np.arange(1, points + 1) / points, PATHS[path]) * (2 * np.pi / a)


def phonon_band(potential, c: Crystal, path: str, points: int, supercell: int, displacement: float) -> np.ndarray:
    """The lowest phonon branch (THz) at a0 along ``path`` (:func:`q_path`), from the
    force constants of a supercell×supercell×supercell primitive cell
    (:mod:`pipeline.models.phonons`)."""
    from pipeline.models import phonons

    if supercell < 1 or supercell % 2 == 0 or not displacement > 0:
        raise ConfigError(f"target.properties.*: expected an odd supercell >= 1 and a displacement > 0 Å, "
                          f"got {supercell} and {displacement}")
    a0 = zero_pressure_a(potential, c)
    primitive = bulk(c.species, c.lattice, a=a0)
    phi, offsets = phonons.force_constants(potential, primitive, supercell, displacement)
    return phonons.frequencies(phi, offsets, primitive.get_masses(), q_path(path, points, a0))[:, 0]
