"""LTAU: per-atom force uncertainty from the loss trajectory of training.

Fitting: each training atom's force errors over the training trajectory (an error log
of shape (T, N) of magnitudes, or (T, N, 3) of components, whose magnitudes are taken;
an ensemble's logs are pooled along T) become a probability mass over common bins, log
or linearly spaced over ``[lo, hi]`` (by default the smallest positive and the largest
error). The last bin includes its upper edge, so the largest sample is kept; samples
outside a given range are clipped into the end bins and counted. A FAISS index of the
training atoms' descriptors is built alongside.

Scoring: a query atom's k nearest training atoms (in descriptor space) are found, their
PDFs averaged, and the score is the expected error of that averaged PDF, Σ_b p_b m_b,
with bin midpoints m_b geometric for log bins and arithmetic for linear ones (eV/Å).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import ConfigError, InputError, check_choice
from pipeline.core.faiss_backend import load_faiss

SPACINGS = ("log", "linear")
INDEXES = ("Flat", "HNSW", "IVFPQ")
QUERY_CHUNK = 4096


@dataclass(frozen=True)
class Fit:
    edges: np.ndarray  # (nbins + 1,), eV/Å
    midpoints: np.ndarray  # (nbins,)
    pdfs: np.ndarray  # (N_train, nbins), rows sum to 1
    clipped: int  # samples outside [lo, hi], counted in the end bins


def error_samples(logs: Sequence[np.ndarray], n_atoms: int, names: Sequence[str]) -> np.ndarray:
    """Error magnitudes per training atom, (N, samples), pooled over the logs."""
    pooled = []
    for log, name in zip(logs, names):
        log = np.asarray(log, dtype=float)
        if log.ndim == 3 and log.shape[2] == 3:
            log = np.linalg.norm(log, axis=2)
        if log.ndim != 2:
            raise InputError(f"{name}: expected an error log of shape (T, N) or (T, N, 3), got {log.shape}")
        if log.shape[1] != n_atoms:
            raise InputError(f"{name}: error log has {log.shape[1]} atoms; the training descriptors have {n_atoms}")
        if not np.all(np.isfinite(log)):
            raise InputError(f"{name}: error log contains NaN or inf")
        pooled.append(np.abs(log))
    if not pooled:
        raise InputError("ltau.error_logs: expected at least one error log, got none")
    return np.concatenate(pooled, axis=0).T


def bins(errors: np.ndarray, nbins: int, spacing: str, lo: float | None, hi: float | None):
    """Bin edges and midpoints (geometric for log, arithmetic for linear)."""
    check_choice("ltau.bin_spacing", spacing, SPACINGS)
    if nbins < 1:
        raise ConfigError(f"ltau.nbins: expected at least 1, got {nbins}")
    positive = errors[errors > 0]
    lo = float(lo) if lo is not None else float(positive.min() if spacing == "log" else errors.min())
    hi = float(hi) if hi is not None else float(errors.max())
    if not hi > lo or (spacing == "log" and not lo > 0):
        raise ConfigError(f"ltau.range: expected 0 {'< ' if spacing == 'log' else '<= '}lo < hi, got [{lo}, {hi}]")
    if spacing == "log":
        edges = np.geomspace(lo, hi, nbins + 1)
        return edges, np.sqrt(edges[:-1] * edges[1:])
    edges = np.linspace(lo, hi, nbins + 1)
    return edges, (edges[:-1] + edges[1:]) / 2


def fit_pdfs(errors: np.ndarray, nbins: int, spacing: str, lo: float | None = None, hi: float | None = None) -> Fit:
    """Per-atom PDFs of ``errors`` (N, samples) over common bins."""
    edges, mids = bins(errors, nbins, spacing, lo, hi)
    which = np.searchsorted(edges, errors, side="right") - 1  # edges[b] <= e < edges[b+1]
    which[errors == edges[-1]] = nbins - 1  # the upper edge belongs to the last bin
    clipped = int(np.count_nonzero((which < 0) | (which >= nbins)))
    which = np.clip(which, 0, nbins - 1)
    atom = np.repeat(np.arange(errors.shape[0]), errors.shape[1])
    counts = np.bincount(atom * nbins + which.ravel(), minlength=errors.shape[0] * nbins)
    return Fit(edges, mids, counts.reshape(errors.shape[0], nbins) / errors.shape[1], clipped)


def build_index(train: np.ndarray, kind: str, args: dict):
    """A FAISS index of the training descriptors: ``Flat`` (exact), ``HNSW`` (args M,
    efConstruction, efSearch) or ``IVFPQ`` (args nlist, m, nbits, nprobe), every
    argument given (their defaults: stages/schema.py INDEX_ARGS)."""
    faiss = load_faiss("LTAU")
    check_choice("ltau.index", kind, INDEXES)
    d, x = train.shape[1], np.ascontiguousarray(train, dtype=np.float32)
    allowed = {"Flat": set(), "HNSW": {"M", "efConstruction", "efSearch"}, "IVFPQ": {"nlist", "m", "nbits", "nprobe"}}
    if set(args) != allowed[kind]:
        raise ConfigError(f"ltau.index_args: {kind} takes {sorted(allowed[kind])}, got {sorted(args)}")
    if kind == "Flat":
        index = faiss.IndexFlatL2(d)
    elif kind == "HNSW":
        index = faiss.IndexHNSWFlat(d, int(args["M"]))
        index.hnsw.efConstruction = int(args["efConstruction"])
        index.hnsw.efSearch = int(args["efSearch"])
    else:
        m = int(args["m"])
        if d % m:
            raise ConfigError(f"ltau.index_args.m: must divide the descriptor dimension {d}, got {m}")
        index = faiss.IndexIVFPQ(faiss.IndexFlatL2(d), d, int(args["nlist"]), m, int(args["nbits"]))
        index.train(x)
        index.nprobe = int(args["nprobe"])
    index.add(x)
    return index


def check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"ltau.k: expected a number of neighbours >= 1, got {k!r}")


def neighbours(index, query: np.ndarray, k: int) -> np.ndarray:
    """Indices (M, k) of each query's k nearest training atoms (−1 where none)."""
    check_k(k)
    if query.shape[1] != index.d:
        raise InputError(f"descriptors: expected descriptors of width {index.d} (those of the LTAU training atoms), "
                         f"got {query.shape[1]}")
    _, found = index.search(np.ascontiguousarray(query, dtype=np.float32), k)
    return found


def uncertainty(fit: Fit, found: np.ndarray) -> np.ndarray:
    """Expected error (M,) under the average PDF of each row's neighbours."""
    out = np.empty(len(found))
    for start in range(0, len(found), QUERY_CHUNK):
        idx = found[start:start + QUERY_CHUNK]
        valid = idx >= 0
        summed = np.einsum("mk,mkb->mb", valid, fit.pdfs[np.where(valid, idx, 0)])
        out[start:start + QUERY_CHUNK] = summed @ fit.midpoints / np.maximum(valid.sum(axis=1), 1)
    return out



def write_index(index, path) -> None:
    load_faiss("LTAU").write_index(index, str(path))


def read_index(path):
    try:
        return load_faiss("LTAU").read_index(str(path))
    except RuntimeError as err:
        raise InputError(f"{path}: cannot read the FAISS index (run ltau_fit first): {err}") from err


def check_training_images(train_hashes: Sequence[str], dataset_hashes: Iterable[str], where: str) -> None:
    """LTAU scores the dataset's atoms by the force errors of a model trained on
    ``where``'s images; those images must be part of the dataset (else the errors are
    another model's, e.g. the bundled example's): :class:`ConfigError` saying how to
    turn LTAU off or point it at the user's own training run."""
    have = set(dataset_hashes)
    missing = [h for h in train_hashes if h not in have]
    if missing:
        raise ConfigError(
            f"{where}: {len(missing)} of its {len(train_hashes)} images are not in the dataset (dataset.paths): its "
            "error logs describe a model trained on other data, and LTAU would score your atoms with that model's "
            "errors. Turn LTAU off (`atomsieve compose ltau=disabled`), or give the training images of your own model "
            "(part of dataset.paths) and its error logs (README, 'LTAU from your own training run')")
