"""QUESTS information entropy of descriptor sets (Gaussian kernel, bandwidth h).

With log p(y) = log Σ_j exp(−‖y − x_j‖² / 2h²) over a reference set x of N points:

- entropy H = −mean_i [log p(x_i) − ln N]  (x its own reference; nats)
- efficiency H / ln N, in [0, 1]
- diversity D = ln Σ_i 1 / p(x_i)
- delta entropy dH(y) = −log p(y), per point of y against x.

Sums are formed as log-sum-exp, so dH stays finite for outliers whose plain kernel sum
underflows to zero (``legacy=True`` reproduces the quests package's +inf there).

``exact``: blocked matrix products, memory bounded by ``batch_size`` (two blocks of
batch_size² floats per thread). ``knn``: each point's k nearest reference points (FAISS)
are summed exactly and the rest of the sum is estimated from a uniform random sample of
the reference set, with standard errors for log p, H and D (see ``knn_sums``). At the
default bandwidth the kernel is wide on near-equilibrium data (rattled Si: 99.9 % of a
median environment's mass is spread over half of 100,000 environments), so dropping
the rest outright, ``far_samples=0``, is biased there; it reports a rigorous bound
instead.
"""

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from pipeline.core.errors import ConfigError, InputError, check_choice
from pipeline.core.faiss_backend import load_faiss

METHODS = ("exact", "knn")
THREADS = 2
CLOSE = 1e-6  # exact: pairs with ‖y − x‖² below this times the block's largest ‖y‖² + ‖x‖², by differences
FAR_BLOCK = 256  # knn: queries sharing one far-field sample
FAR_ELEMENTS = 1 << 23  # knn: at most this many query x sample kernel terms at once per thread (32 MB)
ESS_MIN = 30  # knn: fewest effective far-field terms a query's sample must hold for its standard error
FAR_GROWTH, FAR_ROUNDS = 4, 2  # knn: queries short of ESS_MIN get samples 4x larger, up to 2 times
IVF_FROM = 50_000  # knn with sampling: reference sets this large are searched by an inverted file
NPROBE = 8


SPLIT_REFERENCES = ("train", "all")  # quests.reference values that name a part of the dataset, not a file


def split_reference(per_image: list[np.ndarray], splits: list[str], which: str) -> np.ndarray:
    """The reference environments (n, d) that ``which`` names: every image's (``all``)
    or the train split's (``train``)."""
    check_choice("quests.reference", which, SPLIT_REFERENCES)
    chosen = [x for x, split in zip(per_image, splits) if which == "all" or split == "train"]
    if not chosen:
        raise InputError("quests.reference=train: no image is in the train split")
    return np.concatenate(chosen)


def check_descriptors(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise InputError(f"{what}: expected a non-empty (N, d) array of descriptors, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        rows = np.flatnonzero(~np.all(np.isfinite(x), axis=1))
        raise InputError(f"{what}: descriptors contain NaN or inf (rows {rows[:5].tolist()}...)")
    return x


def _threads(fn, items, desc: str = "entropy") -> list:
    """fn over items on THREADS threads, BLAS single-threaded meanwhile (no oversubscription),
    with a progress bar."""
    items = list(items)
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(THREADS) as pool:
        return list(tqdm(pool.map(fn, items), total=len(items), desc=desc, leave=False, disable=None if len(items) >= 4 else True))


def _resolve_close(z: np.ndarray, top: np.ndarray, y: np.ndarray, xb: np.ndarray, threshold: float) -> None:
    """Recompute from differences, in place, the entries of z = −‖y − x‖² above
    ``threshold``: pairs (self pairs, copies) closer than the expansion resolves. Only rows
    whose largest entry ``top`` is above it are searched; ``top`` follows."""
    rows = np.flatnonzero(top > threshold)
    if not rows.size:
        return
    r, c = np.nonzero(z[rows] > threshold)
    diff = y[rows[r]] - xb[c]
    z[rows[r], c] = -np.einsum("ij,ij->i", diff, diff)
    top[rows] = z[rows].max(axis=1)


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
        top = z.max(axis=1)
        _resolve_close(z, top, y, xb, -CLOSE * (y_sq.max() + x_sq[start:start + batch].max()))
        z *= 1.0 / (2.0 * h * h)
        top *= 1.0 / (2.0 * h * h)
        np.exp(z - top[:, None], out=z)
        out = np.logaddexp(out, top + np.log(z.sum(axis=1)))
    return out


MIN_BANDWIDTH = 1e-8  # descriptor units: a narrower kernel underflows for any two distinct environments


def check_bandwidth(h: float) -> None:
    if not h >= MIN_BANDWIDTH:
        raise ConfigError(f"quests.bandwidth: expected a width >= {MIN_BANDWIDTH:g} in descriptor units (1/Å for "
                          f"QUESTS), got {h}")


def log_kernel_sums(y: np.ndarray, x: np.ndarray, h: float, batch_size: int) -> np.ndarray:
    """log p(y_i) against reference x, exactly, in blocks on two threads. (M,)"""
    check_bandwidth(h)
    if batch_size < 1:
        raise ConfigError(f"quests.batch_size: expected a count >= 1, got {batch_size}")
    if y.shape[1] != x.shape[1]:
        raise InputError(f"descriptors: dimension {y.shape[1]} does not match the reference's {x.shape[1]}")
    centre = x.mean(axis=0)  # ‖y‖² + ‖x‖² − 2 y·x loses the digits of the norms: keep them small
    y, x = y - centre, x - centre
    x_sq = np.einsum("ij,ij->i", x, x)
    starts = range(0, len(y), batch_size)
    return np.concatenate(_threads(lambda s: _block_lse(y[s:s + batch_size], x, x_sq, h, batch_size), starts,
                                   "kernel sums"))


@dataclass(frozen=True)
class KernelSums:
    """log p(y_i) = log Σ_j exp(−‖y_i − x_j‖² / 2h²) of M query points, and their errors."""

    log_p: np.ndarray  # (M,)
    stderr: np.ndarray  # (M,) standard error of each log p (0 where computed exactly)
    truncation_bound: float  # pure truncation: bound on (full − kept) / kept over all points; else 0
    sum_var: tuple[float, float] = (0.0, 0.0)  # variances of Σ_i δp_i / p_i and Σ_i δp_i / p_i² (sampling)
    resampled: int = 0  # knn: queries given far-field samples larger than far_samples
    sparse: int = 0  # knn: queries whose sample still held fewer than ESS_MIN effective terms
    bound: np.ndarray | None = None  # knn: (M,) for those, the truncation bound on log p (else 0)

    @property
    def error(self) -> np.ndarray:
        """The error to report per query: its standard error, and where its sample was too
        sparse to give one, at least the truncation bound. (M,)"""
        return self.stderr if self.bound is None else np.maximum(self.stderr, self.bound)


def exact_sums(y: np.ndarray, x: np.ndarray, h: float, batch_size: int) -> KernelSums:
    lp = log_kernel_sums(y, x, h, batch_size)
    return KernelSums(lp, np.zeros(len(lp)), 0.0)


def nearest(y: np.ndarray, x: np.ndarray, k: int, approximate_from: int = IVF_FROM) -> np.ndarray:
    """Indices (M, k) of each y's k nearest x; -1 where fewer were found.

    Exact (FAISS IndexFlatL2) below ``approximate_from`` reference points, else an
    inverted file (IndexIVFFlat, 4√N lists, NPROBE probed), whose misses only move
    terms from the exact near field to the sampled far field.
    """
    faiss, d = load_faiss("quests.method=knn"), x.shape[1]
    x32, y32 = (np.ascontiguousarray(a, dtype=np.float32) for a in (x, y))
    if len(x) < approximate_from:
        index = faiss.IndexFlatL2(d)
    else:
        lists = max(1, min(int(4 * math.sqrt(len(x))), len(x) // 39))  # FAISS wants 39 points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, lists)
        index.cp.max_points_per_centroid, index.cp.niter = 32, 10
        index.train(x32)
        index.nprobe = NPROBE
    index.add(x32)
    return index.search(y32, min(k, len(x)))[1]


def _near_field(y: np.ndarray, x: np.ndarray, idx: np.ndarray, h: float) -> np.ndarray:
    """z_ij = −‖y_i − x_idx(ij)‖² / 2h² in float64 (−inf where idx < 0), on two threads. (M, k)"""
    def block(s):
        j = idx[s:s + 2048]
        diff = x[np.maximum(j, 0)] - y[s:s + 2048, None, :]
        return np.where(j >= 0, np.einsum("ijk,ijk->ij", diff, diff) / (-2.0 * h * h), -np.inf)

    return np.concatenate(_threads(block, range(0, len(y), 2048)))


def _far_terms(y, xs, xs_sq, idx, sample, h):
    """Kernel terms (B, m) of a block of queries against a sample of the reference set,
    float32, those of near-field points drawn into the sample zeroed (they count once),
    and their sums Σt and Σt² (B,)."""
    m = len(sample)
    z = y @ xs.T
    z *= 2.0
    z -= np.einsum("ij,ij->i", y, y)[:, None]
    z -= xs_sq[None, :]
    np.minimum(z, 0.0, out=z)
    z *= np.float32(1.0 / (2.0 * h * h))
    np.exp(z, out=z)
    cols = np.minimum(np.searchsorted(sample, idx), m - 1)
    hit = (sample[cols] == idx) & (idx >= 0)
    z[np.nonzero(hit)[0], cols[hit]] = 0.0
    return z, z.sum(axis=1, dtype=np.float64), np.einsum("ij,ij->i", z, z, dtype=np.float64)


def _effective_terms(s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """(Σt)² / Σt²: how many terms of a sample carry its sum (0 where it holds none)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s2 > 0, s1 * s1 / s2, 0.0)


def _far_block(y, xs, xs_sq, idx, sample, log_near, h, n):
    """Sampled far field of one block of queries: corrected log p (B,), relative variance of p
    (B,), the sample's effective number of terms (B,), and the variances (2,) of
    Σ_i δp_i / p_i and Σ_i δp_i / p_i² from the sample variances of g_j = Σ_i z_ij / p_i
    and Σ_i z_ij / p_i²."""
    m = len(sample)
    z, s1, s2 = _far_terms(y, xs, xs_sq, idx, sample, h)
    with np.errstate(divide="ignore"):
        log_p = np.logaddexp(log_near, np.log(n / m * s1))
    inv_p = np.exp(np.minimum(-log_p, 150.0))  # beyond, every float32 far term is 0 anyway
    spread = np.maximum(s2 - s1 * s1 / m, 0.0) / max(m - 1, 1)  # sample variance of the terms
    rel_var = n * n * (1.0 - m / n) / m * spread * inv_p * inv_p
    w = np.minimum(inv_p, 1e17)  # float32-safe squares; each z_ij <= p_i, so only far outliers are clipped
    g = z.T @ np.stack([w, w * w], axis=1).astype(np.float32)  # (m, 2)
    g_var = g.var(axis=0, ddof=1, dtype=np.float64) * (1.0 - m / n) * n * n / m if m > 1 else np.zeros(2)
    return log_p + rel_var / 2.0, rel_var, _effective_terms(s1, s2), g_var


def _blocks(queries: np.ndarray, m: int) -> list[np.ndarray]:
    """Queries in blocks that share one far-field sample of size m: FAR_BLOCK, fewer for
    large samples (FAR_ELEMENTS terms at once)."""
    rows = min(FAR_BLOCK, max(1, FAR_ELEMENTS // m))
    return [queries[s:s + rows] for s in range(0, len(queries), rows)]


def knn_sums(y: np.ndarray, x: np.ndarray, h: float, k: int, far_samples: int, seed: int,
             approximate_from: int = IVF_FROM) -> KernelSums:
    """log p(y_i): each point's k nearest x exactly, plus the rest of the sum estimated.

    far_samples = 0: pure truncation (exact FAISS search) with its bound,
    (N − k) exp(−d_k² / 2h²) relative to the kept sum. far_samples = S > 0: every
    block of FAR_BLOCK queries draws S reference points uniformly without replacement
    (numpy Generator seeded by ``seed``); their kernel terms, less those already in
    the near field, times N / S estimate the rest without bias. log p gets the
    delta-method correction +Var / 2p² and its standard error sqrt(Var) / p.

    The sample variance is a trustworthy error only where the sample holds enough
    effective terms, (Σt)² / Σt². For an environment in a sparse region the rest of the
    sum lies in a few hundred reference points beyond the k nearest, which a small
    uniform sample mostly misses, and the variance it shows is far too small (at
    1,000,000 environments such errors were 14 standard errors wide). So the sample
    size is chosen per query first: S, or FAR_GROWTH times more where a pilot sample of
    S / FAR_GROWTH predicts fewer than ESS_MIN effective terms at S, and so on up to
    FAR_ROUNDS times (or the whole set, exactly). The estimate then comes from a fresh
    sample of the chosen size, so that the choice does not bias it. Where even that
    sample holds fewer than ESS_MIN effective terms, the standard error reported is at
    least the truncation bound log(1 + (N − k) exp(−d_k² / 2h²) / p): every term the
    sample may have missed is at most the k-th neighbour's (rigorous with exact kNN, below
    IVF_FROM). Returned with how many queries were given larger samples (``resampled``)
    and how many are bounded so (``sparse``). Far-field distances are float32 products
    about the reference mean. (M,)
    """
    check_bandwidth(h)
    if k < 1 or far_samples < 0:
        raise ConfigError(f"quests: expected knn_k >= 1 and knn_far_samples >= 0, got {k}, {far_samples}")
    if y.shape[1] != x.shape[1]:
        raise InputError(f"descriptors: dimension {y.shape[1]} does not match the reference's {x.shape[1]}")
    centre = x.mean(axis=0)
    x32, y32 = ((a - centre).astype(np.float32) for a in (x, y))  # distances are unchanged by the shift
    idx = nearest(y32, x32, k, approximate_from if far_samples else len(x) + 1)
    z_near = _near_field(y, x, idx, h)
    log_near = logsumexp(z_near, axis=1)
    if not far_samples:
        omitted = (len(x) - idx.shape[1]) * np.exp(z_near[:, -1] - log_near) if len(x) > idx.shape[1] else 0.0
        return KernelSums(log_near, np.zeros(len(y)), float(np.max(omitted)))
    n = len(x)
    x_sq = np.einsum("ij,ij->i", x32, x32)
    rng = np.random.default_rng(seed)

    def sampled(queries: np.ndarray, m: int, fn) -> list:
        blocks = _blocks(queries, m)
        samples = [np.arange(n) if m == n else np.sort(rng.choice(n, m, replace=False)) for _ in blocks]
        return list(zip(blocks, _threads(lambda i: fn(blocks[i], samples[i]), range(len(blocks)))))

    def pilot(q, sample):
        _, s1, s2 = _far_terms(y32[q], x32[sample], x_sq[sample], idx[q], sample, h)
        return _effective_terms(s1, s2)

    m = min(far_samples, n)
    size, short = np.full(len(y), m), np.arange(len(y))
    for _ in range(FAR_ROUNDS):  # each query's sample size, from pilots a FAR_GROWTH-th of the size they test
        if m == n or not len(short):
            break
        trial = max(1, m // FAR_GROWTH)  # effective terms grow about in proportion to the sample
        short = np.concatenate([q[e * (m / trial) < ESS_MIN] for q, e in sampled(short, trial, pilot)])
        m = min(n, m * FAR_GROWTH)
        size[short] = m
    def estimate(q, sample):
        return _far_block(y32[q], x32[sample], x_sq[sample], idx[q], sample, log_near[q], h, n)

    log_p, rel_var, ess, g_var = np.zeros(len(y)), np.zeros(len(y)), np.zeros(len(y)), np.zeros(2)
    for m in np.unique(size):  # the estimates, each from a fresh sample
        for q, (lp, rv, e, gv) in sampled(np.nonzero(size == m)[0], int(m), estimate):
            log_p[q], rel_var[q], ess[q] = lp, rv, e
            g_var += gv
    resampled = int(np.count_nonzero(size > min(far_samples, n)))
    sparse, bound = (ess < ESS_MIN) & (size < n), np.zeros(len(y))  # the whole set is no sample
    if sparse.any():  # what the sample may have missed: every far term is at most the k-th neighbour's
        kth = np.where(idx[sparse, -1] >= 0, np.exp(z_near[sparse, -1]), 1.0)  # one missing: the kernel's maximum
        bound[sparse] = np.log1p((n - idx.shape[1]) * kth * np.exp(-log_p[sparse]))
    return KernelSums(log_p, np.sqrt(rel_var), 0.0, (float(g_var[0]), float(g_var[1])), resampled,
                      int(np.count_nonzero(sparse)), bound)


def kernel_sums(y: np.ndarray, x: np.ndarray, h: float, method: str, batch_size: int, k: int,
                far_samples: int, seed: int) -> KernelSums:
    """log kernel sums of y against x by ``method`` (exact | knn)."""
    check_choice("quests.method", method, METHODS)
    if method == "exact":
        return exact_sums(y, x, h, batch_size)
    return knn_sums(y, x, h, k, far_samples, seed)


def entropy(log_p_self: np.ndarray) -> float:
    """H = −mean(log p(x_i) − ln N), from the log kernel sums of x against itself."""
    return float(-np.mean(log_p_self - math.log(len(log_p_self))))


def diversity(log_p_self: np.ndarray) -> float:
    """D = ln Σ 1/p(x_i), as a log-sum-exp."""
    return float(logsumexp(-log_p_self))


@dataclass(frozen=True)
class Scores:
    entropy: float  # H, nats
    entropy_stderr: float  # sampling standard error of H (knn with far_samples; else 0)
    efficiency: float  # H / ln N
    diversity: float  # D, nats
    diversity_stderr: float


def scores(sums: KernelSums) -> Scores:
    """H, H / ln N and D of a set from its kernel sums against itself.

    Sampled sums: D uses 1/p ≈ exp(−log p − stderr²/2), first-order unbiased as log p
    already carries +stderr²/2; standard errors sqrt(Var Σ δp/p) / N and
    sqrt(Var Σ δp/p²) / Σ 1/p.
    """
    n, h = len(sums.log_p), entropy(sums.log_p)
    d = diversity(sums.log_p + sums.stderr ** 2 / 2)
    d_err = math.exp(0.5 * math.log(sums.sum_var[1]) - d) if sums.sum_var[1] > 0 else 0.0
    return Scores(h, math.sqrt(sums.sum_var[0]) / n, h / math.log(n) if n > 1 else 0.0, d, d_err)


BANDWIDTH_RATIO = (0.1, 10.0)  # h / median nearest-neighbour distance outside this: the scores say little


def neighbour_distances(x: np.ndarray, n_queries: int, seed: int) -> np.ndarray:
    """Distances (≤ n_queries,) from environments of x drawn with ``seed`` to their nearest
    other environment of x (0 for an exact copy): exact search, float64 distances."""
    if len(x) < 2:
        return np.zeros(0)
    picks = np.sort(np.random.default_rng(seed).choice(len(x), min(n_queries, len(x)), replace=False))
    idx = nearest(x[picks], x, 2, approximate_from=len(x) + 1)
    other = np.where(idx[:, 0] == picks, idx[:, 1], idx[:, 0])  # with copies, self need not come first
    return np.linalg.norm(x[other] - x[picks], axis=1)


def bandwidth_advice(h: float, distances: np.ndarray) -> str | None:
    """A warning when ``h`` is far from the environments' nearest-neighbour distances,
    where H and D measure the bandwidth rather than the data; else None."""
    if not len(distances) or not np.median(distances) > 0:
        return None
    median, (lo, hi) = float(np.median(distances)), BANDWIDTH_RATIO
    if h < lo * median:
        return (f"quests.bandwidth={h} is {h / median:.3g} x the median nearest-neighbour distance {median:.3g} of "
                "these descriptors: every environment is alone in its kernel, so H = ln N and efficiency 1 whatever "
                "the data; choose h for this descriptor (README, 'Choosing the bandwidth')")
    if h > hi * median:
        return (f"quests.bandwidth={h} is {h / median:.3g} x the median nearest-neighbour distance {median:.3g} of "
                "these descriptors: the kernel merges most environments into one; choose h for this descriptor "
                "(README, 'Choosing the bandwidth')")
    return None


def delta_entropy(log_p_y: np.ndarray, legacy: bool = False) -> np.ndarray:
    """dH(y) = −log p(y); with ``legacy`` the plain sum's underflow gives +inf, as in quests."""
    if legacy:
        with np.errstate(divide="ignore"):
            return -np.log(np.exp(log_p_y))
    return -log_p_y
