"""QUESTS information entropy of descriptor sets (Gaussian kernel, bandwidth h).

With log p(y) = log Σ_j exp(−‖y − x_j‖² / 2h²) over a reference set x of N points:

- entropy H = −mean_i [log p(x_i) − ln N]  (x its own reference; nats)
- efficiency H / ln N, in [0, 1]
- diversity D = ln Σ_i 1 / p(x_i)
- delta entropy dH(y) = −log p(y), per point of y against x.

Sums are formed as log-sum-exp, so dH stays finite for outliers whose plain kernel sum
underflows to zero (``legacy=True`` reproduces the quests package's +inf there).

``exact``: blocked matrix products, memory bounded by ``batch_size`` (two blocks of
batch_size² floats per thread). ``knn``: the sum over each point's k nearest reference
points only (FAISS); the error bound reported is the largest possible contribution of
the omitted points, (N − k) exp(−d_k² / 2h²) relative to the kept sum, with d_k the
k-th neighbour distance.
"""

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pipeline.errors import BackendMissing, ConfigError, InputError, check_choice

METHODS = ("exact", "knn")
THREADS = 2


def check_descriptors(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise InputError(f"{what}: expected a non-empty (N, d) array of descriptors, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        rows = np.flatnonzero(~np.all(np.isfinite(x), axis=1))
        raise InputError(f"{what}: descriptors contain NaN or inf (rows {rows[:5].tolist()}...)")
    return x


def _block_lse(y: np.ndarray, x: np.ndarray, x_sq: np.ndarray, h: float, batch: int) -> np.ndarray:
    """log Σ_j exp(−‖y_i − x_j‖² / 2h²) for one block of rows y."""
    out = np.full(len(y), -np.inf)
    y_sq = np.einsum("ij,ij->i", y, y)
    for start in range(0, len(x), batch):
        xb = x[start:start + batch]
        z = y @ xb.T
        z *= 2.0
        z -= y_sq[:, None]
        z -= x_sq[None, start:start + batch]
        np.minimum(z, 0.0, out=z)  # −‖y − x‖², clipped at 0 against round-off
        z *= 1.0 / (2.0 * h * h)
        top = z.max(axis=1)
        np.exp(z - top[:, None], out=z)
        out = np.logaddexp(out, top + np.log(z.sum(axis=1)))
    return out


def log_kernel_sums(y: np.ndarray, x: np.ndarray, h: float, batch_size: int = 4096) -> np.ndarray:
    """log p(y_i) against reference x, exactly, in blocks on two threads. (M,)"""
    if not h > 0 or batch_size < 1:
        raise ConfigError(f"quests: expected bandwidth > 0 and batch_size >= 1, got {h}, {batch_size}")
    if y.shape[1] != x.shape[1]:
        raise InputError(f"descriptors: dimension {y.shape[1]} does not match the reference's {x.shape[1]}")
    x_sq = np.einsum("ij,ij->i", x, x)
    starts = range(0, len(y), batch_size)
    with ThreadPoolExecutor(THREADS) as pool:
        parts = pool.map(lambda s: _block_lse(y[s:s + batch_size], x, x_sq, h, batch_size), starts)
        return np.concatenate(list(parts))


@dataclass(frozen=True)
class KnnSums:
    log_p: np.ndarray  # (M,) log of the truncated kernel sums
    max_rel_error: float  # bound on (full − truncated) / truncated over all points


def knn_log_kernel_sums(y: np.ndarray, x: np.ndarray, h: float, k: int, exclude_self: bool = False) -> KnnSums:
    """log p(y_i) from each point's k nearest reference points (exact search, FAISS)."""
    try:
        import faiss
    except ImportError as err:
        raise BackendMissing("quests.method=knn needs FAISS: pip install faiss-cpu") from err
    if y.shape[1] != x.shape[1]:
        raise InputError(f"descriptors: dimension {y.shape[1]} does not match the reference's {x.shape[1]}")
    k = min(k, len(x))
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(np.ascontiguousarray(x, dtype=np.float32))
    d2, _ = index.search(np.ascontiguousarray(y, dtype=np.float32), k)
    z = -np.maximum(d2.astype(np.float64), 0.0) / (2 * h * h)
    top = z[:, :1]
    log_p = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    omitted = (len(x) - k) * np.exp(z[:, -1] - log_p) if len(x) > k else np.zeros(len(y))
    return KnnSums(log_p, float(omitted.max()))


def log_p(y: np.ndarray, x: np.ndarray, h: float, method: str, batch_size: int, k: int) -> tuple[np.ndarray, float]:
    """log kernel sums by ``method``, with the bound on the relative error (0 if exact)."""
    check_choice("quests.method", method, METHODS)
    if method == "exact":
        return log_kernel_sums(y, x, h, batch_size), 0.0
    sums = knn_log_kernel_sums(y, x, h, k)
    return sums.log_p, sums.max_rel_error


def entropy(log_p_self: np.ndarray) -> float:
    """H = −mean(log p(x_i) − ln N), from the log kernel sums of x against itself."""
    return float(-np.mean(log_p_self - math.log(len(log_p_self))))


def diversity(log_p_self: np.ndarray) -> float:
    """D = ln Σ 1/p(x_i), as a log-sum-exp."""
    top = float(np.max(-log_p_self))
    return top + math.log(float(np.sum(np.exp(-log_p_self - top))))


def delta_entropy(log_p_y: np.ndarray, legacy: bool = False) -> np.ndarray:
    """dH(y) = −log p(y); with ``legacy`` the plain sum's underflow gives +inf, as in quests."""
    if legacy:
        with np.errstate(divide="ignore"):
            return -np.log(np.exp(log_p_y))
    return -log_p_y
