"""FIMs from wherever a user has them: atomsieve's own files, Orchestrator's, a NumPy file.

Candidates (:func:`read_candidates`), by what the file holds:

- atomsieve's ``fim_train`` extxyz: info ``candidate``, ``fim_quantity``,
  ``fim_parameters`` and ``fim_training_set_score`` on every frame;
- Orchestrator's FIMTrainingSetScore extxyz, as it writes it: info
  ``fim_training_set_score`` (a P×P matrix) only. A frame's id is ``FILE@INDEX``
  (its position in the file, from 0), unless it has an info ``candidate``;
- ``.npz``: ``ids`` (n,), ``fims`` (n, P, P), optionally ``labels`` (P,) naming the
  parameters and ``upper_bounds`` (n,), each candidate's largest weight.

Targets (:func:`read_target`):

- atomsieve's ``fim_property`` json: ``fim_property_score`` and ``labels``;
- Orchestrator's FIMPropertyScore json: ``fim_property_score`` and, in ``_metadata``,
  ``parameters_optimize`` (KLIFF's format, as a Python literal), from which the
  parameter names are read;
- ``.npy``: the (P, P) matrix.

Parameter names are compared where both sides give them; where one side does not,
only the shapes can be, and :attr:`Candidates.labels`/:attr:`Target.labels` are None
so that the caller says so. Every refusal names the file, the frame or key, and what
was expected against what was found.
"""

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import InputError
from pipeline.core.outputs import CANDIDATE, FIM_PARAMETERS, FIM_PROPERTY_SCORE, FIM_TRAINING_SET_SCORE
from pipeline.models.parameters import label_text, parse

NPZ_KEYS = ("ids", "fims")  # required
NPZ_OPTIONAL = ("labels", "upper_bounds")


@dataclass(frozen=True)
class Candidates:
    ids: list[str]
    fims: np.ndarray  # (n, P, P)
    labels: str | None  # "A:0,B:0" (parameter:extent), None where the file names no parameters
    upper_bounds: np.ndarray | None  # (n,) per-candidate largest weight, None where the file gives none
    frames: list | None  # the extxyz frames the FIMs came with (None for .npz)
    kind: str  # "atomsieve" | "orchestrator" | "npz"


@dataclass(frozen=True)
class Target:
    fim: np.ndarray  # (P, P)
    labels: str | None
    kind: str  # "atomsieve" | "orchestrator" | "npy"
    document: dict  # the json as read ({} for .npy)


def _matrix(value, where: str, key: str) -> np.ndarray:
    try:
        fim = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{where}: expected {key} to be a square matrix of numbers, got {str(value)[:60]!r}") from None
    if fim.ndim != 2 or fim.shape[0] != fim.shape[1] or fim.size == 0:
        raise InputError(f"{where}: expected {key} to be a square matrix, got shape {fim.shape}")
    if not np.all(np.isfinite(fim)):
        raise InputError(f"{where}: expected {key} to hold finite numbers, got NaN or inf")
    _check_symmetric(fim[None], where, key)
    return fim


def _check_symmetric(fims: np.ndarray, where: str, key: str) -> None:
    """A FIM is symmetric: an asymmetry above 1e-8 of the largest entry is an input error."""
    gap = np.abs(fims - np.swapaxes(fims, 1, 2)).max(axis=(1, 2))
    scale = max(float(np.abs(fims).max()), 1e-300)
    bad = np.flatnonzero(gap > 1e-8 * scale)
    if bad.size:
        i = int(bad[0])
        which = f" (candidate {i})" if len(fims) > 1 else ""
        raise InputError(f"{where}{which}: expected {key} to be symmetric (a FIM is), got entries differing from their "
                         f"transposes by up to {gap[i]:.3g} (the largest entry is {scale:.3g})")


def read_candidates(path: Path, frames: list | None = None, bound_key: str | None = None) -> Candidates:
    """The candidate FIMs in ``path`` (extxyz or .npz). ``frames``: the extxyz already
    read (the caller may have filtered them); ``bound_key``: an info key holding each
    frame's largest weight."""
    check_suffix(path)
    if path.suffix == ".npz":
        return _from_npz(path)
    if frames is None:
        frames = read_frames(path)
    if not frames:
        raise InputError(f"{path}: expected frames with info '{FIM_TRAINING_SET_SCORE.key}', got an empty file")
    ours = all(CANDIDATE.key in a.info and FIM_PARAMETERS.key in a.info for a in frames)
    ids, fims, labels = [], [], set()
    for i, atoms in enumerate(frames):
        where = f"{path}@{i}"
        if FIM_TRAINING_SET_SCORE.key not in atoms.info:
            have = sorted(k for k in atoms.info if k not in ("pbc",))
            raise InputError(f"{where}: expected info '{FIM_TRAINING_SET_SCORE.key}' (the FIM, as atomsieve's fim_train "
                             f"and Orchestrator's FIMTrainingSetScore write it), got info keys {have}")
        raw = atoms.info[FIM_TRAINING_SET_SCORE.key]
        matrix = np.asarray(raw, dtype=float) if not isinstance(raw, str) else raw
        if ours and np.ndim(matrix) == 1:  # atomsieve writes the matrix flat, its shape from fim_parameters
            p = len(str(atoms.info[FIM_PARAMETERS.key]).split(","))
            matrix = matrix.reshape((p, p)) if matrix.size == p * p else matrix
        fims.append(_matrix(matrix, where, FIM_TRAINING_SET_SCORE.key))
        ids.append(str(atoms.info[CANDIDATE.key]) if CANDIDATE.key in atoms.info else f"{path.name}@{i}")
        if ours:
            labels.add(str(atoms.info[FIM_PARAMETERS.key]))
    if len(set(ids)) != len(ids):
        twice = sorted({x for x in ids if ids.count(x) > 1})[:3]
        raise InputError(f"{path}: expected every candidate id once, got {twice} more than once")
    _same_shape(fims, ids, path)
    if len(labels) > 1:
        raise InputError(f"{path}: expected one set of parameters for every candidate, got {sorted(labels)}")
    bounds = None
    if bound_key:
        missing = [i for i, a in enumerate(frames) if bound_key not in a.info]
        if missing:
            raise InputError(f"{path}@{missing[0]}: expected info {bound_key!r} (matching.weight_upper_bound_key), "
                             f"missing on {len(missing)} of {len(frames)} frames")
        bounds = _bounds([a.info[bound_key] for a in frames], path, bound_key)
    return Candidates(ids, np.stack(fims), labels.pop() if labels else None, bounds, frames,
                      "atomsieve" if ours else "orchestrator")


def check_suffix(path: Path) -> None:
    """Candidate FIMs come in an .extxyz (or .xyz) or a .npz; anything else is named."""
    if path.suffix not in (".extxyz", ".xyz", ".npz"):
        raise InputError(f"{path}: expected candidate FIMs in an .extxyz (atomsieve's or Orchestrator's) or a .npz "
                         f"(ids, fims), got a {path.suffix or 'file without suffix'}")


def read_frames(path: Path) -> list:
    """The frames of an extxyz, any read error one InputError naming the file."""
    import ase.io

    try:
        return ase.io.read(path, ":", format="extxyz")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except Exception as err:  # ASE raises many types for malformed input
        raise InputError(f"{path}: cannot read as extxyz: {type(err).__name__}: {err}") from None


def _same_shape(fims: list, ids: list, path: Path) -> None:
    first = fims[0].shape
    for name, fim in zip(ids, fims):
        if fim.shape != first:
            raise InputError(f"{path}: candidate {name}: expected a FIM of shape {first} as the first candidate's, "
                             f"got {fim.shape}")


def _bounds(values, path: Path, key: str) -> np.ndarray:
    try:
        bounds = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        raise InputError(f"{path}: expected {key} to be numbers, got {str(values)[:60]}") from None
    if not np.all(bounds > 0):
        raise InputError(f"{path}: expected every {key} > 0 (inf for none), got {bounds.min():g}")
    return bounds


def _from_npz(path: Path) -> Candidates:
    try:
        with np.load(path, allow_pickle=False) as data:
            got = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: expected a NumPy .npz with arrays {list(NPZ_KEYS)}: {err}") from None
    missing = [k for k in NPZ_KEYS if k not in got]
    if missing:
        raise InputError(f"{path}: expected arrays {list(NPZ_KEYS)} (and optionally 'labels', 'upper_bounds'), "
                         f"missing {missing}; it holds {sorted(got)}")
    unknown = sorted(set(got) - {*NPZ_KEYS, *NPZ_OPTIONAL})
    if unknown:
        raise InputError(f"{path}: unknown arrays {unknown}; expected {list(NPZ_KEYS)} and optionally "
                         f"{list(NPZ_OPTIONAL)}")
    ids, fims = [str(x) for x in got["ids"].ravel()], np.asarray(got["fims"], dtype=float)
    if fims.ndim != 3 or fims.shape[1] != fims.shape[2] or len(fims) != len(ids) or not len(ids):
        raise InputError(f"{path}: expected 'fims' of shape (n, P, P) with n = len(ids) = {len(ids)}, got {fims.shape}")
    if not np.all(np.isfinite(fims)):
        bad = int(np.flatnonzero(~np.isfinite(fims).all(axis=(1, 2)))[0])
        raise InputError(f"{path}: candidate {ids[bad]}: expected finite numbers in its FIM, got NaN or inf")
    if len(set(ids)) != len(ids):
        twice = sorted({x for x in ids if ids.count(x) > 1})
        raise InputError(f"{path}: expected every id once in 'ids', got {twice[:3]} more than once")
    _check_symmetric(fims, str(path), "each of 'fims'")
    labels = None
    if "labels" in got:
        names = [str(x) for x in got["labels"].ravel()]
        if len(names) != fims.shape[1]:
            raise InputError(f"{path}: expected {fims.shape[1]} 'labels' (one per parameter), got {len(names)}")
        labels = ",".join(n if ":" in n else f"{n}:0" for n in names)
    bounds = None
    if "upper_bounds" in got:
        bounds = _bounds(got["upper_bounds"], path, "upper_bounds")
        if len(bounds) != len(ids):
            raise InputError(f"{path}: expected one 'upper_bounds' per candidate ({len(ids)}), got {len(bounds)}")
    return Candidates(ids, fims, labels, bounds, None, "npz")


def read_target(path: Path) -> Target:
    """The target FIM in ``path``: atomsieve's or Orchestrator's json, or a .npy."""
    if path.suffix == ".npy":
        try:
            matrix = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: expected a NumPy .npy holding the (P, P) target FIM: {err}") from None
        return Target(_matrix(matrix, str(path), "the array"), None, "npy", {})
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (run the fim_property stage that makes it, or give the path of your "
                         "target FIM)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the target FIM: {err}") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: expected JSON (the target FIM), got invalid JSON at line {err.lineno}") from None
    if not isinstance(document, dict) or FIM_PROPERTY_SCORE.key not in document:
        keys = sorted(document) if isinstance(document, dict) else type(document).__name__
        raise InputError(f"{path}: expected key '{FIM_PROPERTY_SCORE.key}' (the target FIM, as atomsieve's fim_property "
                         f"and Orchestrator's FIMPropertyScore write it), got {keys}")
    fim = _matrix(document[FIM_PROPERTY_SCORE.key], str(path), FIM_PROPERTY_SCORE.key)
    if "labels" in document:
        names = _label_names(document["labels"], path)
        if len(names.split(",")) != fim.shape[0]:
            raise InputError(f"{path}: its labels name {len(names.split(','))} parameters ({names}) but its "
                             f"{FIM_PROPERTY_SCORE.key} is {fim.shape[0]}×{fim.shape[0]}")
        return Target(fim, names, "atomsieve", document)
    spec = (document.get("_metadata") or {}).get("parameters_optimize")
    if spec is None:
        return Target(fim, None, "orchestrator", document)
    try:
        names = label_text(parse(ast.literal_eval(spec) if isinstance(spec, str) else spec).labels())
    except (ValueError, SyntaxError) as err:
        raise InputError(f"{path}: _metadata.parameters_optimize: expected KLIFF's format, got {spec!r}: {err}") from None
    return Target(fim, names, "orchestrator", document)


def _label_names(labels, path: Path) -> str:
    """A target json's ``labels`` as ``"A:0,B:0"``: atomsieve's ``{"0": {"parameter": "A",
    "extent": 0}, ...}``, or a plain list of names (as a .npz takes them)."""
    if isinstance(labels, list) and all(isinstance(x, str) for x in labels):
        return ",".join(x if ":" in x else f"{x}:0" for x in labels)
    if isinstance(labels, dict) and all(isinstance(v, dict) and {"parameter", "extent"} <= v.keys()
                                        for v in labels.values()):
        try:
            return label_text(labels)
        except ValueError:
            pass
    raise InputError(f"{path}: expected 'labels' as a list of parameter names, e.g. [\"A\", \"B\"], or as atomsieve "
                     f"writes them, {{\"0\": {{\"parameter\": \"A\", \"extent\": 0}}, ...}}; got {str(labels)[:80]}")


def check_pair(cands: Candidates, target: Target, fims_path: Path, target_path: Path) -> list[str]:
    """InputError unless the candidates and the target are over the same parameters;
    the notes to log where that could only be checked by shape."""
    p = target.fim.shape[0]
    if cands.fims.shape[1:] != (p, p):
        raise InputError(f"{fims_path}: expected candidate FIMs of the target's shape {(p, p)} ({target_path}), "
                         f"got {cands.fims.shape[1:]}")
    if cands.labels is not None and target.labels is not None:
        if cands.labels != target.labels:
            raise InputError(f"{fims_path}: the candidates' FIMs are over the parameters {cands.labels} but the "
                             f"target's ({target_path}) over {target.labels}; make both with the same parameters")
        return []
    unnamed = [str(f) for f, lab in ((fims_path, cands.labels), (target_path, target.labels)) if lab is None]
    return [f"{' and '.join(unnamed)} name{'s' if len(unnamed) == 1 else ''} no parameters: the candidates and the "
            f"target are checked to be {p}×{p} only, not to be over the same parameters in the same order (labels in a "
            f".npz or a json target would let them be)"]

