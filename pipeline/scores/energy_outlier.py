"""Energy-per-atom outliers: which labelled configurations sit far from the rest.

A robust z-score per configuration: z_i = (e_i − median(e)) / (1.4826 · MAD(e)),
e_i = E_i / N_i in eV/atom, MAD the median absolute deviation (1.4826 · MAD estimates
the standard deviation of normal data, and one wild energy cannot inflate it). A
configuration with |z| above a threshold is worth a look before training: a wrong
unit, a failed DFT run, a different reference energy.

Configurations of different kinds sit at different energies by nature (a slab's
surface atoms are less bound than bulk ones), so with groups (``config_type``) each
configuration is scored against its own group; one of a group too small for a robust
spread (fewer than MIN_GROUP, or more than half of equal energy) is not scored (NaN):
against the others it would stand out by its nature, not by its label.
"""

import numpy as np

from pipeline.core.errors import ConfigError, InputError

NORMAL_MAD = 1.4826  # standard deviation / MAD for normal data
MIN_GROUP = 5  # configurations a group needs to be scored on its own
UNSCORED = "too few of its type"  # the basis of a configuration its group cannot score


def robust_z(energies: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    """z-scores (n,) of the energies per atom; energies (n,) in eV, atoms (n,) counts."""
    e = np.asarray(energies, dtype=float) / np.asarray(atoms, dtype=float)
    if len(e) < 3:
        raise InputError(f"energy_outlier: expected at least 3 labelled configurations, got {len(e)}")
    centre = np.median(e)
    spread = NORMAL_MAD * np.median(np.abs(e - centre))
    if spread == 0:
        raise InputError("energy_outlier: more than half the configurations have the same energy per atom; "
                         "a robust spread is zero and z-scores are undefined")
    return (e - centre) / spread


def outliers(z: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of |z| > threshold (NaN: not scored), sorted."""
    if not threshold > 0:
        raise ConfigError(f"energy_outlier.threshold: expected a number > 0, got {threshold}")
    return np.flatnonzero(np.nan_to_num(np.abs(z), nan=0.0) > threshold)


def robust_z_by_group(energies: np.ndarray, atoms: np.ndarray, groups: list[str]) -> tuple[np.ndarray, list[str]]:
    """z-scores (n,) each within its group (``groups``, n labels), and the basis of each:
    its group, or :data:`UNSCORED` (z NaN) where the group is too small for a robust spread."""
    e, n = np.asarray(energies, dtype=float), np.asarray(atoms, dtype=float)
    z, basis = np.full(len(e), np.nan), [UNSCORED] * len(e)
    for name in sorted(set(groups)):
        members = np.flatnonzero(np.array(groups) == name)
        per_atom = e[members] / n[members]
        if len(members) < MIN_GROUP or not np.median(np.abs(per_atom - np.median(per_atom))) > 0:
            continue
        z[members] = robust_z(e[members], n[members])
        for i in members:
            basis[i] = name
    return z, basis
