"""Per-atom descriptors, by name (:data:`DESCRIPTORS`).

``quests``: the QUESTS descriptor (Schwalbe-Koda et al.) of every atom, from its k
nearest neighbours within ``cutoff`` (Å), with weights w(r) = (1 − (r/rc)²)²:

- x1 (k values): w(r_j) / r_j over the neighbours j by increasing distance;
- x2 (k − 1 values): the k×k matrix √(w_j w_l) / r_jl of neighbour pairs (zero
  diagonal), each row sorted ascending, the column means over the k rows, the first
  (smallest) column dropped, largest first.

Missing neighbours (fewer than k within the cutoff) count as zeros, as do those beyond
it. Periodicity follows ``atoms.pbc`` direction by direction (the quests package treats
a partly periodic cell as not periodic at all). Shape (N, 2k − 1), in 1/Å.
"""

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

from pipeline.errors import ConfigError

EPS_X1 = 1e-16  # Å, added to r in x1 (as quests does)
EPS_X2 = 1e-15  # Å, added to r_jl in x2
CHUNK = 2048  # atoms per block of the (chunk, k, k) pair arrays


def weight(r: np.ndarray, cutoff: float) -> np.ndarray:
    z = np.minimum(r, cutoff) / cutoff
    return (1 - z**2) ** 2


def nearest(atoms: Atoms, k: int, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Vectors (N, k, 3) to each atom's k nearest neighbours within ``cutoff``, by
    increasing distance, and a mask (N, k) of which are present."""
    i, vec = neighbor_list("iD", atoms, cutoff)
    dist = np.linalg.norm(vec, axis=1)
    order = np.lexsort((dist, i))
    i, vec = i[order], vec[order]
    starts = np.searchsorted(i, np.arange(len(atoms)))
    rank = np.arange(len(i)) - starts[i]
    keep = rank < k
    out = np.zeros((len(atoms), k, 3))
    mask = np.zeros((len(atoms), k), dtype=bool)
    out[i[keep], rank[keep]] = vec[keep]
    mask[i[keep], rank[keep]] = True
    return out, mask


def quests(atoms: Atoms, k: int = 32, cutoff: float = 5.0) -> np.ndarray:
    """The QUESTS descriptor of every atom, (N, 2k − 1)."""
    if k < 2 or not cutoff > 0:
        raise ConfigError(f"descriptors: expected k >= 2 and cutoff > 0, got k={k}, cutoff={cutoff}")
    vec, mask = nearest(atoms, k, cutoff)
    out = np.empty((len(atoms), 2 * k - 1))
    for start in range(0, len(atoms), CHUNK):
        v, m = vec[start:start + CHUNK], mask[start:start + CHUNK]
        r = np.linalg.norm(v, axis=2)
        x1 = np.where(m, weight(r + EPS_X1, cutoff) / (r + EPS_X1), 0.0)
        w = np.where(m, weight(r, cutoff), 0.0)
        r_jl = np.linalg.norm(v[:, :, None, :] - v[:, None, :, :], axis=3)
        pair = np.sqrt(w[:, :, None] * w[:, None, :]) / (r_jl + EPS_X2)
        pair[:, np.arange(k), np.arange(k)] = 0.0
        col_means = np.sort(pair, axis=2).mean(axis=1)
        out[start:start + CHUNK] = np.concatenate([x1, col_means[:, :0:-1]], axis=1)
    return out


DESCRIPTORS = {"quests": quests}
