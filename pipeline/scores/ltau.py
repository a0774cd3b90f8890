"""LTAU: per-atom force uncertainty from the loss trajectory of training.

Fitting: each training atom's force errors over the training trajectory (an error log
of shape (T, N) of magnitudes, or (T, N, 3) of components, whose magnitudes are taken;
an ensemble's logs are pooled along T) become a probability mass over common bins, log
or linearly spaced over ``[lo, hi]`` (by default the smallest positive and the largest
error). The last bin includes its upper edge, so the largest sample is kept; samples
outside a given range are clipped into the end bins and counted. Or the PDFs and their
bin edges are given, already made (Orchestrator's default, ``from_error_logs=False``):
:func:`given_fit` checks them and makes the same :class:`Fit`. A FAISS index of the
training atoms' descriptors is built alongside.

Scoring: a query atom's k nearest training atoms (in descriptor space) are found, their
PDFs averaged, and the score is the expected error of that averaged PDF, Σ_b p_b m_b,
with bin midpoints m_b geometric for log bins and arithmetic for linear ones (eV/Å).
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import ConfigError, InputError, check_choice
from pipeline.core.faiss_backend import load_faiss

log = logging.getLogger(__name__)
SPACINGS = ("log", "linear")
INDEXES = ("Flat", "HNSW", "IVFPQ")
QUERY_CHUNK = 4096
PDF_SUM_TOL = 1e-6  # |row sum - 1| allowed in given PDFs (float32 masses, summed in float64, are within 1e-7)


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
    edges = np.geomspace(lo, hi, nbins + 1) if spacing == "log" else np.linspace(lo, hi, nbins + 1)
    return edges, midpoints(edges, spacing)


def midpoints(edges: np.ndarray, spacing: str) -> np.ndarray:
    """Bin midpoints (nbins,) of ``edges`` (nbins + 1,), eV/Å: geometric for log spacing,
    arithmetic for linear."""
    check_choice("ltau.bin_spacing", spacing, SPACINGS)
    if spacing == "log":
        return np.sqrt(edges[:-1] * edges[1:])
    return (edges[:-1] + edges[1:]) / 2


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


def given_fit(pdfs: np.ndarray, edges: np.ndarray, spacing: str, n_atoms: int, names: tuple[str, str]) -> Fit:
    """The :class:`Fit` of PDFs given already made, as Orchestrator takes them by default:
    ``pdfs`` (N, nbins), per training atom the probability mass of its errors in each
    bin (rows sum to 1), or its density (rows integrate to 1 over the bin widths, as
    Orchestrator's error_pdfs: converted, and said in the log), over ``edges`` (nbins + 1,) in eV/Å,
    strictly increasing. The midpoints follow ``spacing`` (ltau.bin_spacing), not a
    guess from the edges: geometric for log (edges > 0), arithmetic for linear, as when
    fitting, so PDFs made from the error logs score as the logs do (ltau_ff takes
    geometric midpoints whatever the spacing). ``names``: the PDFs' and the edges'
    files, for messages."""
    check_choice("ltau.bin_spacing", spacing, SPACINGS)
    edges = check_edges(edges, spacing, names[1])
    return Fit(edges, midpoints(edges, spacing), check_pdfs(pdfs, edges, n_atoms, names), 0)


def as_numbers(array: np.ndarray, name: str, what: str) -> np.ndarray:
    """``array`` as float64 if it holds real numbers; else :class:`InputError` naming ``name``."""
    array = np.asarray(array)
    if array.dtype.kind not in "iuf":
        raise InputError(f"{name}: expected {what} as real numbers, got dtype {array.dtype}")
    return array.astype(float)


def check_edges(edges: np.ndarray, spacing: str, name: str) -> np.ndarray:
    """Given bin edges, float64 (nbins + 1,): finite, strictly increasing, and > 0 with
    log spacing; else :class:`InputError` naming the file ``name``."""
    edges = as_numbers(edges, name, "bin edges")
    if edges.ndim != 1 or len(edges) < 2:
        raise InputError(f"{name}: expected bin edges of shape (nbins + 1,) with nbins >= 1, got shape {edges.shape}")
    if not np.all(np.isfinite(edges)):
        raise InputError(f"{name}: bin edges contain NaN or inf")
    down = np.flatnonzero(np.diff(edges) <= 0)
    if down.size:
        i = int(down[0])
        raise InputError(f"{name}: expected strictly increasing bin edges, got {edges[i]} then {edges[i + 1]} "
                         f"(edges {i} and {i + 1})")
    if spacing == "log" and not edges[0] > 0:
        raise InputError(f"{name}: ltau.bin_spacing=log takes geometric midpoints, so every edge must be > 0, got "
                         f"{edges[0]} first (edges from 0: ltau.bin_spacing=linear)")
    return edges


def check_pdfs(pdfs: np.ndarray, edges: np.ndarray, n_atoms: int, names: tuple[str, str]) -> np.ndarray:
    """Given PDFs, float64 (n_atoms, len(edges) - 1): finite, >= 0, rows summing to 1
    within PDF_SUM_TOL; else :class:`InputError` naming the file (densities, which
    integrate to 1 over the bin widths, are named as such)."""
    name, nbins = names[0], len(edges) - 1
    pdfs = as_numbers(pdfs, name, "PDFs")
    if pdfs.ndim != 2:
        raise InputError(f"{name}: expected PDFs of shape (N, nbins), got shape {pdfs.shape}")
    if pdfs.shape[1] != nbins:
        raise InputError(f"{name}: expected PDFs over {nbins} bins ({names[1]} has {nbins + 1} edges), "
                         f"got {pdfs.shape[1]} columns")
    if pdfs.shape[0] != n_atoms:
        raise InputError(f"{name}: expected one PDF (row) per training atom, {n_atoms}, got {pdfs.shape[0]}")
    if not np.all(np.isfinite(pdfs)):
        raise InputError(f"{name}: PDFs contain NaN or inf (row {int(np.argwhere(~np.isfinite(pdfs))[0, 0])})")
    if np.any(pdfs < 0):
        row, col = np.argwhere(pdfs < 0)[0]
        raise InputError(f"{name}: expected probabilities >= 0, got {pdfs[row, col]} (row {row}, bin {col})")
    sums = pdfs.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1) > PDF_SUM_TOL)
    if off.size and np.all(np.abs(pdfs @ np.diff(edges) - 1) <= PDF_SUM_TOL):
        log.info("%s: its rows integrate to 1 over the bin widths: densities, as Orchestrator's error_pdfs (ltau_ff's "
                 "logs_to_pdfs) are; read as masses, density × bin width", name)
        return pdfs * np.diff(edges)
    if off.size:
        row = int(off[0])
        raise InputError(f"{name}: expected each row to sum to 1 (the probability mass in each bin) or to integrate "
                         f"to 1 over the bin widths (a density), got a sum of {sums[row]:.9g} and an integral of "
                         f"{pdfs[row] @ np.diff(edges):.9g} in row {row} ({off.size} of {len(sums)} rows)")
    return pdfs


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
