"""Descriptors of a set of images: computed ones through the store (one entry per
image, keyed by its identity, the descriptor's settings and code), read ones
(``array``) from the frames themselves."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from ase import Atoms

from pipeline.atoms.arrays import arrays_of
from pipeline.atoms.descriptors import DESCRIPTORS, PACKAGES, READ, describe
from pipeline.core.code_identity import code_digest
from pipeline.core.errors import check_choice
from pipeline.core.fanout import get_or_compute
from pipeline.core.store import Store, entry_key, fingerprint


@dataclass(frozen=True)
class DescriptorSet:
    hashes: tuple[str, ...]
    offsets: np.ndarray  # (n_images + 1,): image i's atoms are rows offsets[i]:offsets[i+1]
    values: np.ndarray  # (n_atoms, d)
    computed: int  # images computed now
    read: int  # images whose descriptors were read from the frames (``array``)

    @property
    def cached(self) -> int:
        return len(self.hashes) - self.computed - self.read


def descriptor_set(frames: Sequence[Atoms], hashes: Sequence[str], name: str, settings: dict, store: Store,
                   executor: Callable | None = None, wheres: Sequence[str] | None = None) -> DescriptorSet:
    """Per-atom descriptors of every image by ``name`` with its ``settings``; computed
    only where the store lacks them. ``wheres`` name the frames in errors (file, frame).

    Read descriptors never enter the store: there is nothing to save, and so no key that
    could outlive a change of the arrays.
    """
    check_choice("descriptors.name", name, DESCRIPTORS)
    if name in READ:
        values = arrays_of(frames, settings["key"], wheres or [f"image {h}" for h in hashes])
        return _assembled(hashes, values, 0, len(frames))
    code = code_digest(describe.__module__, packages=PACKAGES.get(name, ()))
    fp = fingerprint("descriptors", {"name": name, **settings}, code)
    bare = [Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc) for a in frames]
    fetched = get_or_compute(store, [entry_key(h, fp) for h in hashes], bare, partial(describe, name, settings),
                             executor, "descriptors", shapes=lambda atoms: {"descriptors": (len(atoms), None)})
    return _assembled(hashes, [r["descriptors"] for r in fetched.results], fetched.computed, 0)


def _assembled(hashes, values, computed: int, read: int) -> DescriptorSet:
    offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])]).astype(np.int64)
    return DescriptorSet(tuple(hashes), offsets, np.concatenate(values), computed, read)
