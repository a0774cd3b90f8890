"""FIMs of a training set: candidates (image, quantity, mask), store keys, fan-out.

This is what Orchestrator's FIMTrainingSetScore computes, with one potential per
worker instead of one per configuration, and results cached per image.
"""

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from ase import Atoms

from pipeline.core.code_identity import code_digest
from pipeline.core.errors import InputError
from pipeline.core.executors import worker_resource
from pipeline.core.fanout import get_or_compute
from pipeline.core.outputs import candidate_id
from pipeline.core.store import Store, entry_key, fingerprint
from pipeline.models.derivatives import Derivative, resolve
from pipeline.models.parameters import ParamSpec
from pipeline.models.potential import QUANTITIES, PotentialSpec, make_potential
from pipeline.models.transforms import Transform
from pipeline.scores.fim import FimTask, as_row_weights, fim_shapes, image_fim

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """One FIM candidate: an input row's image, one quantity, and its row weights."""

    row: int  # index of the input row (image) it comes from
    image_hash: str
    quantity: str
    mask: np.ndarray | None  # (rows of quantity,) weights, or None

    @property
    def mask_digest(self) -> str:
        return "" if self.mask is None else _digest(self.mask)

    @property
    def id(self) -> str:
        """``<image_hash>:<quantity>``, then ``:<mask digest>`` for a masked candidate."""
        return candidate_id(self.image_hash, self.quantity, self.mask_digest or None)


@dataclass(frozen=True)
class TrainingFims:
    """FIMs in candidate order, their labels, and how many were computed (not cached)."""

    candidates: tuple[Candidate, ...]
    fims: np.ndarray  # (n_candidates, P, P)
    labels: dict[int, dict]
    computed: int
    model: dict  # the potential's outside identity (versions, file digests), as in the store keys


def quantities(frames: Sequence[Atoms], hashes: Sequence[str], default: str, key: str) -> list[tuple[str, ...]]:
    """Each row's quantities: its info ``key`` if set (one name, or several
    comma-separated, e.g. ``"energy,forces"``), else ``default``."""
    out = []
    for atoms, h in zip(frames, hashes):
        value = atoms.info.get(key, default)
        names = tuple(v.strip() for v in value.split(",")) if isinstance(value, str) else ()
        if not names or any(n not in QUANTITIES for n in names) or len(set(names)) != len(names):
            raise InputError(
                f"image {h}: info {key}={value!r}: expected one of {list(QUANTITIES)}, or several of them "
                "comma-separated (e.g. 'energy,forces'), each once; or one copy of the image per quantity"
            )
        out.append(names)
    return out


def masks(frames: Sequence[Atoms], hashes: Sequence[str], mask_key: str | None,
          mask_arrays: Sequence[np.ndarray]) -> list[np.ndarray | None]:
    """Each row's raw mask: its per-atom array ``mask_key``, or ``mask_arrays`` (one per
    row, or one for all), or None. With ``mask_key``, a frame without that array is
    unmasked (so masked and unmasked frames may be mixed), and the log says how many;
    no frame with it at all is an error (a misspelt key)."""
    if mask_key and mask_arrays:
        raise InputError("fim.mask_key and fim.mask_files: expected one of them, got both")
    if mask_arrays and len(mask_arrays) not in (1, len(frames)):
        raise InputError(f"fim.mask_files: expected 1 or {len(frames)} files (one per image), got {len(mask_arrays)}")
    if not mask_key:
        return [mask_arrays[i if len(mask_arrays) > 1 else 0] if mask_arrays else None for i in range(len(frames))]
    out = [atoms.arrays.get(mask_key) for atoms in frames]
    unmasked = [h for h, m in zip(hashes, out) if m is None]
    if frames and len(unmasked) == len(frames):
        raise InputError(f"fim.mask_key={mask_key!r}: no image has a per-atom array {mask_key!r}; image {hashes[0]} "
                         f"has {sorted(frames[0].arrays)}")
    if unmasked:
        log.warning("fim.mask_key=%r: %d of %d images have no such array and are unmasked (all their atoms count), "
                    "e.g. image %s", mask_key, len(unmasked), len(frames), unmasked[0])
    return out


def candidates(frames: Sequence[Atoms], hashes: Sequence[str], kinds: Sequence[tuple[str, ...]],
               raw_masks: Sequence[np.ndarray | None]) -> list[Candidate]:
    """The candidates of every row, one per quantity, each once (by :attr:`Candidate.id`).

    A row's mask weights the rows of its one quantity; in a row that asks for several
    quantities it weights the forces (a per-atom mask means nothing for energy or
    stress), and the other quantities are unmasked."""
    out: dict[str, Candidate] = {}
    for i, (atoms, h, qs, raw) in enumerate(zip(frames, hashes, kinds, raw_masks)):
        for q in qs:
            if q == "stress" and not atoms.pbc.all():
                where = f"image {h} ({atoms.info.get('source', 'no source')})"
                raise InputError(f"{where}: asks for stress, which needs a cell periodic in all three directions "
                                 f"(pbc is {atoms.pbc.tolist()}); ask for energy or forces")
            masked = raw is not None and (len(qs) == 1 or q == "forces")
            mask = as_row_weights(raw, atoms, q, f"image {h}") if masked else None
            c = Candidate(i, h, q, mask)
            out.setdefault(c.id, c)
    return list(out.values())


def check_species(frames: Sequence[Atoms], potential: PotentialSpec) -> None:
    """Every image's elements are among ``potential.species`` (a KIM model is made for
    those only); else :class:`InputError` naming the image and its source."""
    if potential.type != "kim":
        return
    allowed = set(potential.species)
    for atoms in frames:
        extra = sorted(set(atoms.get_chemical_symbols()) - allowed)
        if extra:
            where = f"image {atoms.info.get('image_hash', '?')} ({atoms.info.get('source', 'no source')})"
            raise InputError(f"{where}: species {extra} not in potential.species {sorted(allowed)}")


def _digest(mask: np.ndarray) -> str:
    return hashlib.blake2b(np.asarray(mask).astype("<f8").tobytes(), digest_size=8).hexdigest()


def training_fims(frames: Sequence[Atoms], cands: Sequence[Candidate], potential: PotentialSpec, spec: ParamSpec,
                  transform: Transform, derivative: Derivative, store: Store,
                  executor: Callable | None = None) -> TrainingFims:
    """The FIM of every candidate, through ``store``; only missing ones are computed, on
    ``executor`` (see :func:`pipeline.core.fanout.get_or_compute`)."""
    check_species(frames, potential)
    model = worker_resource(make_potential, potential)  # also serves candidates computed here
    spec.check(model.parameter_extents(), potential.kim_id or potential.calculator)
    assignments = resolve(spec, model)
    common = {"potential": potential.as_dict(), "model": model.identity(), "assignments": [list(a) for a in assignments],
              "n_tunable": len(spec.tunable), "transform": asdict(transform),
              "derivative": {**asdict(derivative), "numdifftools": json.loads(derivative.numdifftools)}}
    code = code_digest(image_fim.__module__)
    keys, tasks, computations = [], [], {}
    for c in cands:
        atoms = frames[c.row]
        kind = c.quantity, c.mask_digest or None  # all a computation's fingerprint takes from its candidate
        if kind not in computations:
            computations[kind] = fingerprint("fim_train", {**common, "quantity": kind[0], "mask": kind[1]}, code)
        keys.append(entry_key(c.image_hash, computations[kind]))
        bare = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        tasks.append(FimTask(potential, assignments, len(spec.tunable), transform, derivative, c.quantity, c.mask,
                             bare))
    fetched = get_or_compute(store, keys, tasks, image_fim, executor, "FIM", shapes=fim_shapes)
    fims = np.stack([r["fim"] for r in fetched.results]) if fetched.results else np.zeros((0, 0, 0))
    return TrainingFims(tuple(cands), fims, spec.labels(), fetched.computed, common["model"])
