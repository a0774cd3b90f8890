"""Reading candidate configurations, de-duplicating them by identity, and splitting.

Duplicates are images with equal identity (:mod:`pipeline.atoms.hashing`) and equal labels;
the first occurrence is kept and every source is recorded. Equal identity with
different labels is a conflict, reported with both sources, never merged.

Copies of one structure that ask for different FIM candidates (another quantity in
their info, another mask array) are not duplicates: each distinct request is kept as
its own row, with the image's one identity. This is Orchestrator's recipe for several
quantities of one structure (one copy per quantity).
"""

import glob
import hashlib
import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from pipeline.atoms.hashing import image_hashes
from pipeline.core.errors import InputError, LabelConflictError, check_choice

FORMATS = {".extxyz": "extxyz", ".xyz": "extxyz", ".traj": "traj", ".db": "db"}
LABELS = ("energy", "forces", "stress")
LABEL_ATOL = 1e-8  # eV, eV/Å, eV/Å³: below what extxyz prints (8 decimals)
ON_CONFLICT = ("error", "drop")


@dataclass(frozen=True)
class Source:
    """Where an image came from: a file and a 0-based frame index."""

    path: str
    frame: int

    def __str__(self) -> str:
        return f"{self.path}@{self.frame}"


@dataclass(frozen=True)
class Dataset:
    """Rows (one per unique image and distinct candidate request) with their image
    identities and every source each was read from."""

    images: tuple[Atoms, ...]
    hashes: tuple[str, ...]  # image identity of each row; rows of one image share it
    sources: tuple[tuple[Source, ...], ...]
    conflicts: tuple[tuple[str, tuple[Source, ...]], ...]  # dropped, with sources

    @property
    def unique(self) -> int:
        """Number of distinct images (structures)."""
        return len(set(self.hashes))


def request(atoms: Atoms, quantity_key: str | None, mask_key: str | None) -> str:
    """What FIM candidates a frame asks for: its ``quantity_key`` info and a digest of
    its ``mask_key`` array ("" where absent); copies asking for the same are duplicates."""
    quantity = atoms.info.get(quantity_key) if quantity_key else None
    mask = atoms.arrays.get(mask_key) if mask_key else None
    digest = "" if mask is None else hashlib.blake2b(np.ascontiguousarray(mask, dtype="<f8").tobytes(),
                                                      digest_size=16).hexdigest()
    return f"{'' if quantity is None else quantity}|{digest}"


def expand_paths(patterns: Sequence[str], root: str | None = None, key: str = "dataset.paths") -> list[Path]:
    """Files named by ``patterns`` (paths or globs; option ``key``), in the given order,
    each once; every one must exist.

    With ``root``, every file must lie inside that folder (the one DVC tracks), so that
    a change to any of them reaches DVC's hashes.
    """
    out: list[Path] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(m for m in glob.glob(pattern, recursive=True) if not Path(m).is_dir())
            if not matches:
                raise InputError(f"{key}: pattern {pattern!r} matches no file (folders are not data; "
                                 "e.g. data/**/*.extxyz)")
        else:
            matches = [pattern]
        out.extend(Path(m) for m in matches if Path(m) not in out)
    for path in out if root is not None else ():
        if not path.resolve().is_relative_to(Path(root).resolve()):
            raise InputError(
                f"{key}: {path} is outside dataset.root={root!r}, the folder whose "
                "changes DVC tracks; move the file there or set dataset.root"
            )
    for path in out:
        if not path.is_file():
            raise InputError(f"{key}: {path}: no such file")
    return out


def format_of(path: Path) -> str:
    """ASE's format name of a dataset file, by its suffix; :class:`InputError` otherwise."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: expected a file ending in one of {sorted(FORMATS)}, got {path.suffix!r}"
                         f"{' (compressed files: decompress them first)' if path.suffix in ('.gz', '.bz2', '.xz') else ''}")
    return fmt


def read_frames(path: Path) -> list[Atoms]:
    """Every frame of an extxyz, ASE .traj or ASE .db file.

    Raises :class:`InputError` naming the file, and the frame where parsing failed.
    """
    fmt = format_of(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    import ase.io

    frames: list[Atoms] = []
    try:
        for atoms in ase.io.iread(str(path), index=":", format=fmt):
            frames.append(atoms)
    except KeyError as err:  # ASE's symbol lookup
        raise InputError(f"{path}: frame {len(frames)}: unknown element symbol {err.args[0]!r} "
                         "(expected one of ASE's chemical symbols, H ... Og)") from err
    except Exception as err:  # ASE raises many types for malformed input
        raise InputError(
            f"{path}: frame {len(frames)}: cannot read as {fmt}: {type(err).__name__}: {err}"
        ) from err
    if not frames:
        raise InputError(f"{path}: no frames (an empty file)")
    return frames


def labels(atoms: Atoms) -> dict[str, np.ndarray]:
    """The labels of ``atoms`` among :data:`LABELS`, as float arrays."""
    results = atoms.calc.results if atoms.calc is not None else {}
    return {k: np.asarray(results[k], dtype=float) for k in LABELS if k in results}


LABEL_SHAPES = {"energy": lambda n: {()}, "forces": lambda n: {(n, 3)}, "stress": lambda n: {(6,), (3, 3)}}
UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f"]')  # what extxyz's info line cannot hold


def check_frame(atoms: Atoms, source: Source, min_distance: float) -> None:
    """Raise :class:`InputError` naming ``source`` for a frame no stage can use: no
    atoms, non-finite positions or labels, labels of the wrong shape, a degenerate
    periodic cell, or two atoms (or an atom and its periodic image) closer than
    ``min_distance`` Å."""
    where = f"{source.path}: frame {source.frame}"
    n = len(atoms)
    if n == 0:
        raise InputError(f"{where}: no atoms")
    pos = atoms.positions
    if not np.all(np.isfinite(pos)):
        bad = int(np.flatnonzero(~np.isfinite(pos).all(axis=1))[0])
        raise InputError(f"{where}: atom {bad}: non-finite position {pos[bad].tolist()}")
    for key, value in labels(atoms).items():
        shapes = LABEL_SHAPES[key](n)
        if value.shape not in shapes:
            raise InputError(f"{where}: label {key!r}: expected shape {' or '.join(map(str, shapes))}, "
                             f"got {value.shape}")
        if not np.all(np.isfinite(value)):
            raise InputError(f"{where}: label {key!r}: expected finite values, got NaN or inf")
    _check_cell(atoms, where)
    _check_distances(atoms, where, min_distance)


def _check_cell(atoms: Atoms, where: str) -> None:
    cell = atoms.cell.array
    if not np.all(np.isfinite(cell)):
        raise InputError(f"{where}: cell: expected finite values, got {cell.tolist()}")
    periodic = cell[atoms.pbc]
    if len(periodic):
        gram = periodic @ periodic.T
        scale = max(float(np.max(np.abs(np.diag(gram)))), 1e-300)
        if np.linalg.det(gram) <= 1e-12 * scale ** len(periodic):
            raise InputError(f"{where}: cell: the periodic directions {np.flatnonzero(atoms.pbc).tolist()} "
                             f"need independent, nonzero cell vectors, got {periodic.tolist()} "
                             "(zero volume or a singular cell)")


def _check_distances(atoms: Atoms, where: str, min_distance: float) -> None:
    from ase.neighborlist import neighbor_list

    if min_distance <= 0 or len(atoms) > 1e6:
        return
    i, j, d, shift = neighbor_list("ijdS", atoms, min_distance, self_interaction=False)
    if len(d):
        k = int(np.argmin(d))
        what = f"atom {i[k]} and its own periodic image" if i[k] == j[k] else f"atoms {i[k]} and {j[k]}"
        raise InputError(f"{where}: {what} are {d[k]:.3g} Å apart, closer than dataset.min_distance="
                         f"{min_distance} Å (a duplicated atom, wrong units, or a cell too small for any "
                         "model)")


def read_checked(path: Path, min_distance: float) -> list[Atoms]:
    """:func:`read_frames` of ``path``, every frame checked (:func:`check_frame`)."""
    frames = read_frames(path)
    for i, atoms in enumerate(frames):
        check_frame(atoms, Source(str(path), i), min_distance)
    return frames


def check_required(atoms: Atoms, source: Source, require: Sequence[str]) -> None:
    """Raise :class:`InputError` if ``atoms`` lacks a label in ``require``."""
    have = labels(atoms)
    for key in require:
        check_choice("dataset.require", key, LABELS)
        if key not in have:
            raise InputError(
                f"{source.path}: frame {source.frame}: missing required label {key!r} "
                f"(has {sorted(have) or 'no labels'})"
            )


def same_labels(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """Whether two label sets agree, within what extxyz preserves (labels) or exactly
    (per-atom arrays, keyed ``array:<name>``)."""
    return a.keys() == b.keys() and all(
        a[k].shape == b[k].shape
        and (np.array_equal(a[k], b[k]) if k.startswith("array:") else np.allclose(a[k], b[k], rtol=1e-12, atol=LABEL_ATOL))
        for k in a
    )


def _compared(atoms: Atoms, arrays: Sequence[str]) -> dict[str, np.ndarray]:
    """What copies of one structure must agree on: labels and the per-atom ``arrays``."""
    return {**labels(atoms), **{f"array:{k}": np.asarray(atoms.arrays[k]) for k in arrays if k in atoms.arrays}}


def read_all(
    patterns: Sequence[str], require: Sequence[str], root: str | None, min_distance: float
) -> tuple[list[Atoms], list[Source]]:
    """Every frame of the files ``patterns`` name (inside ``root`` if given), checked
    (:func:`check_frame`, required labels)."""
    frames: list[Atoms] = []
    sources: list[Source] = []
    for path in expand_paths(patterns, root):
        if UNSAFE_NAME.search(str(path)):
            raise InputError(f"dataset.paths: {str(path)!r}: a file name with a control character or a double "
                             "quote cannot be recorded in extxyz; rename the file")
        for i, atoms in enumerate(read_checked(path, min_distance)):
            check_required(atoms, Source(str(path), i), require)
            frames.append(atoms)
            sources.append(Source(str(path), i))
    if not frames:
        raise InputError(f"dataset.paths: no images in {list(patterns)}")
    return frames, sources


def deduplicate(frames: Sequence[Atoms], sources: Sequence[Source], on_conflict: str,
                requests: Sequence[str] | None = None, arrays: Sequence[str] = ()) -> Dataset:
    """Group frames by identity; keep the first of each group, in first-seen order, and
    with ``requests`` (:func:`request` of each frame) the first of each distinct
    request in the group as a row of its own.

    Frames of equal identity must have equal labels, and equal per-atom ``arrays``
    (e.g. descriptors the data carries): otherwise ``on_conflict="error"``
    raises :class:`LabelConflictError` naming both sources, and ``"drop"`` leaves the
    whole group out and lists it in :attr:`Dataset.conflicts`.
    """
    check_choice("dataset.on_conflict", on_conflict, ON_CONFLICT)
    requests = requests or [""] * len(frames)
    groups: dict[str, list[int]] = {}
    for i, h in enumerate(image_hashes(frames)):
        groups.setdefault(h, []).append(i)
    rows, conflicts = [], []
    for h, members in groups.items():
        first = _compared(frames[members[0]], arrays)
        other = next((j for j in members[1:] if not same_labels(first, _compared(frames[j], arrays))), None)
        if other is None:
            by_request: dict[str, list[int]] = {}
            for j in members:
                by_request.setdefault(requests[j], []).append(j)
            rows.extend((h, m) for m in by_request.values())
        elif on_conflict == "error":
            raise LabelConflictError(
                f"{sources[members[0]]} and {sources[other]}: equal structure ({h}) "
                f"with different labels{' or arrays ' + str(list(arrays)) if arrays else ''}; "
                "fix the data or set dataset.on_conflict=drop"
            )
        else:
            conflicts.append((h, tuple(sources[j] for j in members)))
    return Dataset(
        images=tuple(frames[m[0]] for _, m in rows),
        hashes=tuple(h for h, _ in rows),
        sources=tuple(tuple(sources[j] for j in m) for _, m in rows),
        conflicts=tuple(conflicts),
    )


def split(hashes: Sequence[str], test_fraction: float, seed: int) -> tuple[bool, ...]:
    """Which images are in the test set: the ``round(test_fraction * N)`` images of
    smallest seeded hash rank.

    The rank of an image depends only on its identity and ``seed``, so adding images to
    a dataset moves few others between train and test.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise InputError(f"dataset.test_fraction: expected a value in [0, 1), got {test_fraction}")
    n_test = math.floor(test_fraction * len(hashes) + 0.5)
    rank = [hashlib.blake2b(f"{seed}:{h}".encode(), digest_size=8).digest() for h in hashes]
    test = set(sorted(range(len(hashes)), key=lambda i: (rank[i], hashes[i]))[:n_test])
    return tuple(i in test for i in range(len(hashes)))


def without_keys(frames: Sequence[Atoms], keys: Collection[str]) -> tuple[list[Atoms], dict[str, int]]:
    """The frames without the info keys and per-atom arrays named ``keys`` (copies of
    those that had any), and how many frames had each."""
    out, dropped = [], {}
    for atoms in frames:
        found = [k for k in keys if k in atoms.info or k in atoms.arrays]
        if found:
            kept = labels(atoms)
            atoms = atoms.copy()
            atoms.calc = SinglePointCalculator(atoms, **kept) if kept else None
            for k in found:
                atoms.info.pop(k, None)
                atoms.arrays.pop(k, None)
                dropped[k] = dropped.get(k, 0) + 1
        out.append(atoms)
    return out, dropped


def with_labels(atoms: Atoms, info: dict) -> Atoms:
    """A copy of ``atoms`` (its info and per-atom arrays too) carrying its labels as a
    single-point result, with ``info`` added."""
    out = atoms.copy()
    out.info.update(info)
    lab = labels(atoms)
    out.calc = SinglePointCalculator(out, **lab) if lab else None
    return out


def manifest(ds: Dataset, split: Sequence[str]) -> dict:
    """JSON-ready record: sources and split of every image (with every row's sources),
    duplicates, conflicts."""
    images: dict[str, dict] = {}
    for h, s, p in zip(ds.hashes, ds.sources, split):
        entry = images.setdefault(h, {"sources": [], "split": p, "rows": 0})
        entry["sources"] += [str(x) for x in s]
        entry["rows"] += 1
    return {
        "images": images,
        "duplicates": [{"image_hash": h, "kept": str(s[0]), "removed": [str(x) for x in s[1:]]}
                       for h, s in zip(ds.hashes, ds.sources) if len(s) > 1],
        "conflicts": [{"image_hash": h, "sources": [str(x) for x in s]} for h, s in ds.conflicts],
    }
