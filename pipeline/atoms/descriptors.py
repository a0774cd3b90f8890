"""Per-atom descriptors, by name (:data:`DESCRIPTORS`): ``quests`` (below), ``soap``
and ``acsf`` (dscribe, :mod:`pipeline.atoms.dscribe_backend`), and ``array``: the
per-atom array a frame already carries (its ``key``, e.g. an ML potential's latent
features), checked by :func:`pipeline.atoms.dataset.per_atom_array`.

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

from pipeline.atoms.arrays import CARRIED, per_atom_array
from pipeline.core.errors import ConfigError, check_choice

EPS_X1 = 1e-16  # Å, added to r in x1 (as quests does)
EPS_X2 = 1e-15  # Å, added to r_jl in x2
CHUNK = 2048  # atoms per block of the (chunk, k, k) pair arrays


def weight(r: np.ndarray, cutoff: float) -> np.ndarray:
    z = np.minimum(r, cutoff) / cutoff
    return (1 - z**2) ** 2


def images(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Wrapped positions (N, 3), and those with their periodic images within ``cutoff``
    of the cell (along periodic directions only), the atoms themselves first."""
    pbc = atoms.pbc
    pos = atoms.positions
    if not pbc.any():
        return pos, pos
    cell = atoms.cell.array
    frac = np.linalg.solve(cell.T, pos.T).T
    frac[:, pbc] %= 1.0
    pos = frac @ cell
    heights = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    reach = np.where(pbc, np.ceil(cutoff / heights), 0).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), -1).reshape(-1, 3)
    grid = grid[np.argsort(np.abs(grid).sum(axis=1), kind="stable")]  # the zero shift first
    shifted = (frac[None] + grid[:, None]).reshape(-1, 3)
    margin = np.where(pbc, cutoff / heights, np.inf)
    keep = np.all((shifted > -margin) & (shifted < 1 + margin), axis=1)
    keep[: len(pos)] = True  # the atoms themselves
    return pos, shifted[keep] @ cell


def nearest(atoms: Atoms, k: int, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Vectors (N, k, 3) to each atom's k nearest neighbours within ``cutoff``, by
    increasing distance, and a mask (N, k) of which are present."""
    from scipy.spatial import cKDTree

    pos, points = images(atoms, cutoff)
    n = len(pos)
    dist, idx = cKDTree(points).query(pos, k=k + 1, distance_upper_bound=cutoff)
    is_self = idx == np.arange(n)[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]  # drop each atom's own entry
    dist, idx = np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1)
    mask = np.isfinite(dist)
    vec = np.where(mask[:, :, None], points[np.minimum(idx, len(points) - 1)] - pos[:, None], 0.0)
    return vec, mask


def check_quests(k: int, cutoff: float) -> None:
    if k < 2 or not cutoff > 0:
        raise ConfigError(f"descriptors: expected k >= 2 and cutoff > 0, got k={k}, cutoff={cutoff}")


def quests(atoms: Atoms, k: int, cutoff: float) -> np.ndarray:
    """The QUESTS descriptor of every atom, (N, 2k − 1)."""
    check_quests(k, cutoff)
    vec, mask = nearest(atoms, k, cutoff)
    out = np.empty((len(atoms), 2 * k - 1))
    for start in range(0, len(atoms), CHUNK):
        v, m = vec[start:start + CHUNK], mask[start:start + CHUNK]
        sq = np.einsum("nkc,nkc->nk", v, v)
        r = np.sqrt(sq)
        x1 = np.where(m, weight(r + EPS_X1, cutoff) / (r + EPS_X1), 0.0)
        root_w = np.sqrt(np.where(m, weight(r, cutoff), 0.0))
        r_jl = np.sqrt(np.maximum(sq[:, :, None] + sq[:, None, :] - 2 * (v @ v.transpose(0, 2, 1)), 0.0))
        pair = root_w[:, :, None] * root_w[:, None, :]
        pair /= r_jl + EPS_X2
        pair[:, np.arange(k), np.arange(k)] = 0.0
        col_means = np.sort(pair, axis=2).mean(axis=1)
        out[start:start + CHUNK] = np.concatenate([x1, col_means[:, :0:-1]], axis=1)
    return out


def _soap(atoms: Atoms, **settings) -> np.ndarray:
    from pipeline.atoms.dscribe_backend import soap

    return soap(atoms, **settings)


def _acsf(atoms: Atoms, **settings) -> np.ndarray:
    from pipeline.atoms.dscribe_backend import acsf

    return acsf(atoms, **settings)


DESCRIPTORS = {"quests": quests, "soap": _soap, "acsf": _acsf, CARRIED: per_atom_array}
READ = (CARRIED,)  # descriptors read from the frames, not computed: never stored
PACKAGES = {"soap": ("dscribe",), "acsf": ("dscribe",)}  # whose versions shape the numbers


def check_settings(name: str, settings: dict) -> None:
    """Raise :class:`ConfigError` for settings the descriptor ``name`` would refuse."""
    check_choice("descriptors.name", name, DESCRIPTORS)
    if name == "quests":
        check_quests(**settings)
    elif name in PACKAGES:
        from pipeline.atoms.dscribe_backend import check

        check(name, settings)
    elif not settings["key"]:
        raise ConfigError("descriptors.key: expected the name of a per-atom array, got ''")


def describe(name: str, settings: dict, atoms: Atoms) -> dict[str, np.ndarray]:
    """``{"descriptors": (N, d)}`` of ``atoms`` by descriptor ``name`` with its ``settings``
    (the keyword arguments of that function): what the store keeps."""
    return {"descriptors": DESCRIPTORS[name](atoms, **settings)}
