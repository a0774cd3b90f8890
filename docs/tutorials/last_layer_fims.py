"""FIMs of a small neural potential's last layer, written as `atomsieve match` reads them.

No torch: the model is a frozen feature map, radial symmetry functions of each atom's
neighbours (G_k = Σ_j exp(−η_k r_ij²) f_c(r_ij), cutoff 4 Å) through one fixed tanh layer
(h_i = tanh(W G_i + c), 6 units), and a linear last layer whose weights w and bias b are
the parameters: E = Σ_i w·h_i + N b. The last layer's Jacobian of a configuration's
energy is exact, g = (Σ_i h_i, N), so each candidate's FIM is g gᵀ / σ², σ = 0.01 eV
(rank one: energy labels only). The target is three structures' energies to 0.01 eV.

    python docs/tutorials/last_layer_fims.py nn/
    atomsieve match --fims nn/candidates.npz --target nn/target.npy --out nn/match

The weight w of a selected configuration asks for its energy to σ/√w; with those, the
three targets' energies are predicted to 0.01 eV or better (checked in
tests/test_brought_fims.py by propagating the FIM, apart from atomsieve).
"""

import sys
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.neighborlist import neighbor_list

ETAS = np.array([0.05, 0.2, 0.5, 1.0])  # 1/Å²
CUTOFF = 4.0  # Å
UNITS = 6
SIGMA = 0.01  # eV


def features(atoms) -> np.ndarray:
    """(N, len(ETAS)) radial symmetry functions."""
    i, d = neighbor_list("id", atoms, CUTOFF)
    fc = 0.5 * (np.cos(np.pi * d / CUTOFF) + 1)
    out = np.zeros((len(atoms), len(ETAS)))
    np.add.at(out, i, np.exp(-ETAS[None, :] * d[:, None] ** 2) * fc[:, None])
    return out


def gradient(atoms, layer=None) -> np.ndarray:
    """∂E/∂(w, b), (UNITS + 1,): the last layer's Jacobian of the energy."""
    weights, shift = layer if layer is not None else frozen_layer()
    hidden = np.tanh(features(atoms) @ weights.T + shift)
    return np.append(hidden.sum(axis=0), len(atoms))


def frozen_layer():
    rng = np.random.default_rng(7)
    return rng.normal(scale=0.5, size=(UNITS, len(ETAS))), rng.normal(scale=0.5, size=UNITS)


def candidates() -> dict:
    """{id: Atoms}: bulk at six lattice constants, rattled, strained and vacancy cells."""
    out = {}
    for a in np.linspace(5.2, 5.7, 6):
        out[f"bulk_a{a:.2f}"] = bulk("Si", "diamond", a=a, cubic=True)
    for seed in range(6):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True)
        atoms.rattle(0.05 + 0.03 * seed, seed=seed)
        out[f"rattled_{seed}"] = atoms
    for k, eps in enumerate((-0.04, -0.02, 0.02, 0.04)):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True)
        atoms.set_cell(atoms.cell @ np.diag([1 + eps, 1, 1 - eps]), scale_atoms=True)
        out[f"strained_{k}"] = atoms
    for k in range(4):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((1 + k % 2, 1, 1))
        del atoms[k]
        out[f"vacancy_{k}"] = atoms
    return out


def targets() -> dict:
    """The structures whose energies the target asks for."""
    big = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 1))
    del big[[0, 1]]
    hot = bulk("Si", "diamond", a=5.5, cubic=True).repeat((2, 1, 1))
    hot.rattle(0.15, seed=11)
    sheared = bulk("Si", "diamond", a=5.43, cubic=True)
    sheared.set_cell(sheared.cell + [[0, 0.3, 0], [0, 0, 0], [0, 0, 0]], scale_atoms=True)
    return {"divacancy": big, "hot": hot, "sheared": sheared}


def write(folder: Path) -> tuple[Path, Path]:
    """candidates.npz (ids, fims, labels) and target.npy in ``folder``; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    layer = frozen_layer()
    cands = candidates()
    grads = np.stack([gradient(a, layer) for a in cands.values()])
    np.savez(folder / "candidates.npz", ids=np.array(list(cands)), fims=np.einsum("ni,nj->nij", grads, grads) / SIGMA**2,
             labels=np.array([f"w{i}" for i in range(UNITS)] + ["b"]))
    goal = np.stack([gradient(a, layer) for a in targets().values()])
    np.save(folder / "target.npy", goal.T @ goal / SIGMA**2)
    return folder / "candidates.npz", folder / "target.npy"


if __name__ == "__main__":
    for path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "nn")):
        print(path)
