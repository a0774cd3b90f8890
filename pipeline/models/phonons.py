"""Phonons of a crystal from a supercell's force constants, computed in this process.

The force constants Φ(0b, Rb') = −∂F_{Rb'}/∂u_{0b} come from central differences of the
forces when each atom b of the central primitive cell of an n×n×n supercell (n odd) is
moved by ±``displacement`` Å along x, y and z (6 B force evaluations of n³ B atoms).
They are made symmetric, Φ(0b, Rb') = Φ(0b', −R b)ᵀ, and to obey the acoustic sum rule
Σ_{R b'} Φ(0b, Rb') = 0 (the self term absorbs the rest), as ASE's ``Phonons`` does.
The dynamical matrix D(q) = Σ_R Φ(R) e^{i q·R} / √(m_b m_b') at a Cartesian q (1/Å)
gives the frequencies ν = √λ / 2π, in THz.
"""

import numpy as np
from ase import Atoms, units

THZ = np.sqrt(units._e / units._amu) * 1e10 / (2 * np.pi) / 1e12  # √(eV/Å²/amu) → THz


def force_constants(potential, primitive: Atoms, n: int, displacement: float) -> tuple[np.ndarray, np.ndarray]:
    """Φ as (cells, B, 3, B, 3), eV/Å², and the cells' lattice offsets (cells, 3), Å."""
    if n < 1 or n % 2 == 0:
        raise ValueError(f"supercell: expected an odd number of repeats, got {n}")
    b = len(primitive)
    sc = primitive.repeat(n)
    grid = np.array([(i, j, k) for i in range(n) for j in range(n) for k in range(n)]) - n // 2
    centre = int(np.flatnonzero((grid == 0).all(axis=1))[0])
    phi = np.empty((len(grid), b, 3, b, 3))
    for atom in range(b):
        for d in range(3):
            moved = []
            for sign in (1, -1):
                displaced = sc.copy()
                displaced.positions[centre * b + atom, d] += sign * displacement
                moved.append(potential.compute(displaced, "forces").reshape(len(grid), b, 3))
            phi[:, atom, d] = -(moved[0] - moved[1]) / (2 * displacement)
    return _symmetric(phi, grid), grid @ primitive.cell.array


def _symmetric(phi: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Φ made symmetric between (0b, Rb') and (0b', −Rb), then the acoustic sum rule."""
    index = {tuple(g): i for i, g in enumerate(grid)}
    mirror = [index[tuple(-g)] for g in grid]
    phi = (phi + phi[mirror].transpose(0, 3, 4, 1, 2)) / 2
    zero = index[(0, 0, 0)]
    for atom in range(phi.shape[1]):
        phi[zero, atom, :, atom, :] -= phi[:, atom, :, :, :].sum(axis=(0, 2))
    return phi


def frequencies(phi: np.ndarray, offsets: np.ndarray, masses: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Frequencies (THz), (len(q), 3B) ascending, at Cartesian wave vectors q (1/Å);
    imaginary modes as negative numbers."""
    b = phi.shape[1]
    inv = 1 / np.sqrt(np.repeat(masses, 3))
    out = np.empty((len(q), 3 * b))
    for i, qv in enumerate(q):
        d = np.einsum("r,rxy->xy", np.exp(1j * offsets @ qv), phi.reshape(len(offsets), 3 * b, 3 * b))
        d = inv[:, None] * d * inv[None, :]
        lam = np.linalg.eigvalsh((d + d.conj().T) / 2)
        out[i] = np.sign(lam) * np.sqrt(np.abs(lam)) * THZ
    return out
