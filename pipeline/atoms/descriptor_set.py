"""Descriptors of a set of images through the store: one entry per image."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from ase import Atoms

from pipeline.atoms.descriptors import DESCRIPTORS, describe
from pipeline.core.code_identity import code_digest
from pipeline.core.errors import check_choice
from pipeline.core.fanout import get_or_compute
from pipeline.core.store import Store, entry_key, fingerprint


@dataclass(frozen=True)
class DescriptorSet:
    hashes: tuple[str, ...]
    offsets: np.ndarray  # (n_images + 1,): image i's atoms are rows offsets[i]:offsets[i+1]
    values: np.ndarray  # (n_atoms, d)
    computed: int


def descriptor_set(frames: Sequence[Atoms], hashes: Sequence[str], name: str, k: int, cutoff: float,
                   store: Store, executor: Callable | None = None) -> DescriptorSet:
    """Per-atom descriptors of every image, computed only where the store lacks them."""
    check_choice("descriptors.name", name, DESCRIPTORS)
    fp = fingerprint("descriptors", {"name": name, "k": k, "cutoff": cutoff}, code_digest(describe.__module__))
    bare = [Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc) for a in frames]
    fetched = get_or_compute(store, [entry_key(h, fp) for h in hashes], bare, partial(describe, name, k, cutoff),
                                   executor, "descriptors")
    values = [r["descriptors"] for r in fetched.results]
    offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])])
    return DescriptorSet(tuple(hashes), offsets, np.concatenate(values), fetched.computed)
