"""FIMs of a training set: per-image quantities and masks, store keys, fan-out.

This is what Orchestrator's FIMTrainingSetScore computes, with one potential per
worker instead of one per configuration, and results cached per image.
"""

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from ase import Atoms

from pipeline.code_identity import code_digest
from pipeline.errors import InputError
from pipeline.executors import worker_resource
from pipeline.fim import Derivative, FimTask, as_row_weights, image_fim, resolve
from pipeline.transforms import Transform
from pipeline.parameters import ParamSpec
from pipeline.potential import QUANTITIES, PotentialSpec, make_potential
from pipeline.store import Store, entry_key, fingerprint


@dataclass(frozen=True)
class TrainingFims:
    """FIMs in image order, their labels, and how many were computed (not cached)."""

    hashes: tuple[str, ...]
    quantities: tuple[str, ...]
    fims: np.ndarray  # (n_images, P, P)
    labels: dict[int, dict]
    computed: int


def quantities(frames: Sequence[Atoms], hashes: Sequence[str], default: str, key: str) -> list[str]:
    """Each image's quantity: its info ``key`` if set, else ``default``; exactly one."""
    out = []
    for atoms, h in zip(frames, hashes):
        value = atoms.info.get(key, default)
        if not isinstance(value, str) or value not in QUANTITIES:
            raise InputError(
                f"image {h}: info {key}={value!r}: expected exactly one of {list(QUANTITIES)}; "
                "to use several quantities of one structure, duplicate the image, one copy per quantity"
            )
        out.append(value)
    return out


def masks(frames: Sequence[Atoms], hashes: Sequence[str], kinds: Sequence[str], mask_key: str | None,
          mask_arrays: Sequence[np.ndarray]) -> list[np.ndarray | None]:
    """Row weights of each image: from per-atom array ``mask_key``, or from
    ``mask_arrays`` (one per image, or one for all), or None."""
    if mask_key and mask_arrays:
        raise InputError("fim.mask_key and fim.mask_files: expected one of them, got both")
    if mask_arrays and len(mask_arrays) not in (1, len(frames)):
        raise InputError(f"fim.mask_files: expected 1 or {len(frames)} files (one per image), got {len(mask_arrays)}")
    out: list[np.ndarray | None] = []
    for i, (atoms, h, kind) in enumerate(zip(frames, hashes, kinds)):
        if mask_key:
            if mask_key not in atoms.arrays:
                raise InputError(f"image {h}: no per-atom array {mask_key!r} (fim.mask_key); it has {sorted(atoms.arrays)}")
            raw = atoms.arrays[mask_key]
        elif mask_arrays:
            raw = mask_arrays[i if len(mask_arrays) > 1 else 0]
        else:
            out.append(None)
            continue
        out.append(as_row_weights(raw, atoms, kind, f"image {h}"))
    return out


def _digest(mask: np.ndarray | None) -> str | None:
    return None if mask is None else hashlib.blake2b(mask.astype("<f8").tobytes(), digest_size=16).hexdigest()


def training_fims(frames: Sequence[Atoms], hashes: Sequence[str], potential: PotentialSpec, spec: ParamSpec,
                  transform: Transform, derivative: Derivative, kinds: Sequence[str],
                  row_weights: Sequence[np.ndarray | None], store: Store,
                  executor: Callable | None = None, min_parallel_seconds: float = 0.0) -> TrainingFims:
    """The FIM of every image, through ``store``; only missing images are computed, on
    ``executor`` (see :meth:`Store.get_or_compute`)."""
    model = worker_resource(make_potential, potential)  # also serves images computed here
    spec.check(model.parameter_extents(), potential.kim_id or potential.calculator)
    assignments = resolve(spec, model)
    common = {"potential": potential.as_dict(), "model": model.identity(), "assignments": [list(a) for a in assignments],
              "n_tunable": len(spec.tunable), "transform": asdict(transform),
              "derivative": {**asdict(derivative), "numdifftools": json.loads(derivative.numdifftools)}}
    code = code_digest(image_fim.__module__)
    keys, tasks = [], []
    for atoms, h, kind, mask in zip(frames, hashes, kinds, row_weights):
        keys.append(entry_key(h, fingerprint("fim_train", {**common, "quantity": kind, "mask": _digest(mask)}, code)))
        bare = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        tasks.append(FimTask(potential, assignments, len(spec.tunable), transform, derivative, kind, mask, bare))
    fetched = store.get_or_compute(keys, tasks, image_fim, executor, "FIM", min_parallel_seconds)
    fims = np.stack([r["fim"] for r in fetched.results]) if fetched.results else np.zeros((0, 0, 0))
    return TrainingFims(tuple(hashes), tuple(kinds), fims, spec.labels(), fetched.computed)
