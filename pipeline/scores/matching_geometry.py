"""The coordinates information matching is solved and verified in, and its certificates.

Verification. The target F_T needs information in the directions where its eigenvalues
exceed ``RCOND`` times the largest (its rank r); S = U Λ^-½ on those makes it the
identity there. The other directions (nuisance combinations the target does not
depend on) must still be estimated from the same data, so what the selection holds
about the needed directions is the Schur complement of M = Sᵀ (Σ wᵢ Fᵢ) S,
M_rr − M_rn M_nn⁺ M_nr, and the selection matches the target when that is ⪰ I. Its
smallest eigenvalue minus 1, :func:`shortfall`, is the share of the target's
information it misses in its worst direction: scale-free, and the same in any
coordinates of the nuisance directions.

Solving. Equivalent problems in other coordinates (any congruence) have the same
optimum but not the same numerics: a target whose eigenvalues span ten decades is
resolved only in its stiff directions when solved as it is. :func:`balancing` turns
the target into the identity on its needed directions, rotates them to the
eigenvectors of the candidates' total information μ there, and scales each by μ^-¼:
target and total information meet halfway (μ^-½ and μ^½, their product 1), so both
span half the decades either did; the nuisance directions are scaled to unit total
information.

Certificate. Any Z ⪰ 0 of the dual, max tr(Z F_T) subject to tr(Z Fᵢ) ≤ cᵢ, gives a
lower bound on the optimal Σ cᵢ wᵢ: :func:`lower_bound` takes the solver's dual,
projected onto the PSD cone and scaled to feasibility.
"""

from dataclasses import dataclass

import numpy as np

RCOND = 1e-12  # target eigenvalues below this times the largest: directions the target does not need
MAX_RESCALE = 1e6  # kept weights that need a larger factor than this cannot cover the target
PINV_RCOND = 1e-12  # of the nuisance block M_nn, relative to its largest eigenvalue


@dataclass(frozen=True)
class Whitening:
    """S (P, P): the target's needed directions first, as the identity; then the rest."""

    s: np.ndarray
    rank: int
    condition: float  # largest over smallest needed eigenvalue of the target


def whitening(target: np.ndarray) -> Whitening:
    lam, vec = np.linalg.eigh((target + target.T) / 2)
    need = lam > RCOND * lam.max()
    s = np.hstack([vec[:, need] / np.sqrt(lam[need]), vec[:, ~need] / np.sqrt(lam.max())])
    return Whitening(s, int(need.sum()), float(lam[need].max() / lam[need].min()))


def congruent(fims: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Sᵀ F S of every FIM of ``fims`` (..., P, P), symmetrised."""
    out = np.einsum("ji,...jk,kl->...il", s, fims, s)
    return (out + np.swapaxes(out, -1, -2)) / 2


def balancing(white_candidates: np.ndarray, white: Whitening) -> np.ndarray:
    """The congruence (P, P) the problem is solved in (module docstring), from the
    candidates already in the target's whitened coordinates."""
    total = white_candidates.sum(axis=0)
    p, r = len(white.s), white.rank
    rotate = np.zeros((p, p))
    for block, power in ((slice(0, r), 0.25), (slice(r, p), 0.5)):
        sub = total[block, block]
        if not sub.size:
            continue
        mu, vec = np.linalg.eigh(sub)
        floor = mu.max() * 1e-16 if mu.max() > 0 else 1.0
        rotate[block, block] = vec / np.maximum(mu, floor) ** power
    return white.s @ rotate


def shortfall(weights: np.ndarray, white: np.ndarray, rank: int) -> float:
    """λ_min of the Schur complement of Σ wᵢ Gᵢ on the first ``rank`` (needed) directions,
    minus 1: ≥ 0 where the weights hold the target's information; −x where they miss x
    of it in the worst direction. ``white`` (n, P, P) in the target's whitened coordinates."""
    m = np.einsum("i,ijk->jk", weights, white)
    a, b, c = m[:rank, :rank], m[:rank, rank:], m[rank:, rank:]
    if c.size:
        lam, vec = np.linalg.eigh(c)
        keep = lam > PINV_RCOND * max(lam.max(), 0.0) if lam.max() > 0 else np.zeros(len(lam), dtype=bool)
        a = a - (b @ vec[:, keep]) @ np.diag(1 / lam[keep]) @ (b @ vec[:, keep]).T
    return float(np.linalg.eigvalsh((a + a.T) / 2).min() - 1.0)


def rescale_factor(weights: np.ndarray, white: np.ndarray, rank: int, max_violation: float) -> float:
    """The smallest s ≥ 1 with shortfall(s w) ≥ −max_violation (bisection: it grows with
    s), or inf if no s up to MAX_RESCALE gives it."""
    def ok(s):
        return shortfall(s * weights, white, rank) >= -max_violation

    if ok(1.0):
        return 1.0
    if not ok(MAX_RESCALE):
        return float("inf")
    lo, hi = 1.0, MAX_RESCALE
    while hi / lo > 1 + 1e-12:
        mid = np.sqrt(lo * hi) if hi / lo > 2 else (lo + hi) / 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def lower_bound(z: np.ndarray, candidates: np.ndarray, target: np.ndarray, costs: np.ndarray) -> float:
    """A lower bound on min Σ cᵢ wᵢ s.t. Σ wᵢ Fᵢ ⪰ F_T, w ≥ 0, from a dual matrix ``z``:
    Z⁺ (its PSD part) scaled so that tr(Z Fᵢ) ≤ cᵢ for every candidate; 0 if it says nothing."""
    lam, vec = np.linalg.eigh((z + z.T) / 2)
    zp = (vec * np.clip(lam, 0.0, None)) @ vec.T
    ratio = np.einsum("jk,ijk->i", zp, candidates) / costs
    value = float(np.trace(zp @ target))
    return value / ratio.max() if ratio.max() > 0 and value > 0 else 0.0
