"""Per-atom arrays that frames carry (extxyz ``arrays``), checked: descriptors the data
brings (``descriptors.name: array``, Orchestrator's ``descriptors_key``)."""

from collections.abc import Sequence

import numpy as np
from ase import Atoms

from pipeline.core.errors import InputError

CARRIED = "array"  # descriptors.name of descriptors the frames carry as a per-atom array


def per_atom_array(atoms: Atoms, key: str, where: str = "frame") -> np.ndarray:
    """The per-atom array ``key`` of ``atoms`` as float64 (N, d): present, numeric, finite;
    else :class:`InputError` naming ``where`` (file and frame) and the key."""
    if key not in atoms.arrays:
        raise InputError(f"{where}: no per-atom array {key!r} (descriptors.key); the frame has "
                         f"{sorted(atoms.arrays)}")
    x = np.asarray(atoms.arrays[key])
    if x.dtype.kind not in "fiu":
        raise InputError(f"{where}: per-atom array {key!r}: expected numbers, got dtype {x.dtype}")
    x = x.astype(np.float64).reshape(len(atoms), -1)
    if x.shape[1] == 0:
        raise InputError(f"{where}: per-atom array {key!r}: expected at least one column, got shape {x.shape}")
    bad = np.flatnonzero(~np.all(np.isfinite(x), axis=1))
    if len(bad):
        raise InputError(f"{where}: per-atom array {key!r}: atom {int(bad[0])} has NaN or inf "
                         f"({len(bad)} atoms in all)")
    return x


def arrays_of(frames: Sequence[Atoms], key: str, wheres: Sequence[str]) -> list[np.ndarray]:
    """:func:`per_atom_array` of every frame, all of one width; ``wheres`` name the frames."""
    out = [per_atom_array(a, key, w) for a, w in zip(frames, wheres)]
    for x, where in zip(out, wheres):
        if x.shape[1] != out[0].shape[1]:
            raise InputError(f"{where}: per-atom array {key!r} has {x.shape[1]} columns; {wheres[0]} has "
                             f"{out[0].shape[1]} (every frame's descriptors must have one width)")
    return out
