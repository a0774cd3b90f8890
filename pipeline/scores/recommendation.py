"""The answer: which configurations to compute, and why, one row per candidate.

Nothing is recomputed here: the inputs are what the stages wrote (FIMs, the target
FIM with its Jacobian and covariances, matching weights and reduced costs, selection
ranks, per-atom delta entropies and LTAU uncertainties, energy z-scores, the
zero-information causes). What is derived, and how:

- ``information_gain``, nats: ½ ln det(I + Sᵀ F S) over the directions the target
  needs (S whitens the target there, :func:`pipeline.scores.matching_geometry.whitening`):
  what the candidate's data at weight 1 tells about the target properties, in units of
  what they need. ½ r ln 2 for a candidate that holds exactly the target's information.
- ``target_share``: a selected candidate's part of the selection's information about
  the target, w tr(Sᵀ F S) / Σ w tr(Sᵀ F S) (the shares of the selection sum to 1).
- ``needed_by`` and its σ factor: each target value k (e.g. ``elastic.C44``) has a
  whitened gradient g_k, row k of Σ^-½ J; its predicted variance from the selection
  A = Σ wᵢ Fᵢ is g_kᵀ A⁺ g_k (≤ 1: within the target's σ). A selected candidate is
  needed by the value whose σ grows most without it, sqrt(g_kᵀ A₋ᵢ⁺ g_k / g_kᵀ A⁺ g_k)
  (infinite when the rest leaves k undetermined).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipeline.scores.matching_geometry import congruent, whitening

COMPUTE, CHECK, CONSIDER, TEST, NOT_NEEDED, NO_INFORMATION = (
    "compute", "check label", "consider", "test set", "not needed", "no information")
ORDER = (COMPUTE, CHECK, CONSIDER, TEST, NOT_NEEDED, NO_INFORMATION)
NEW_ENVIRONMENTS = 1.0  # nats of dH on some atom above which an unselected candidate is worth a look
NULL = 1e-10  # a gradient's share outside a matrix's range beyond this: the value is undetermined


@dataclass(frozen=True)
class Candidate:
    """What the stages wrote about one candidate (None where a stage did not run)."""

    id: str
    source: str
    config_type: str | None
    quantity: str
    mask: str | None
    atoms: int
    weight: float  # matching weight, 0 when not selected
    reduced_cost: float  # matching dual over cost: 0 used, up to 1
    selection_rank: int | None = None  # select's rank, 1 most important
    dh_max: float | None = None  # nats
    dh_mean: float | None = None
    ltau_max: float | None = None  # eV/Å
    energy_z: float | None = None
    zero_information: str | None = None  # the cause, where its FIM carries nothing
    split: str = "train"  # train: may be selected; test: held out (matching.candidates=train)
    same_as: str | None = None  # the candidate with the same FIM that matching weighed instead (match: same_fim_as)


@dataclass(frozen=True)
class Row:
    candidate: Candidate
    recommendation: str
    reason: str
    information_gain: float  # nats
    target_share: float = 0.0
    needed_by: str | None = None
    sigma_factor: float | None = None  # how much needed_by's σ grows without it
    rank: int = 0  # 1-based, in ORDER then by importance


def needed_blocks(fims: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Sᵀ Fᵢ S (n, r, r) on the r directions the target needs (S whitens it there)."""
    white = whitening(target)
    return congruent(fims, white.s)[:, :white.rank, :white.rank]


def information_gains(blocks: np.ndarray) -> np.ndarray:
    """½ ln det(I + Sᵀ Fᵢ S) (n,), nats, of :func:`needed_blocks`."""
    sign, logdet = np.linalg.slogdet(np.eye(blocks.shape[1]) + blocks)
    return np.where(sign > 0, 0.5 * logdet, 0.0)


def target_shares(blocks: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each candidate's share (n,) of the weighted selection's trace of Sᵀ A S (blocks:
    :func:`needed_blocks`)."""
    traces = np.trace(blocks, axis1=1, axis2=2)
    total = float(np.dot(weights, traces))
    return weights * traces / total if total > 0 else np.zeros(len(weights))


def whitened_gradients(jacobian: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """Rows g_k (m, P) of Σ^-½ J: each target value's gradient in units of its σ."""
    lam, vec = np.linalg.eigh(covariance)
    return (vec / np.sqrt(lam)) @ vec.T @ jacobian


def predicted_variance(matrix: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """g_kᵀ M⁺ g_k (m,), inf where g_k leaves M's range (its value is undetermined)."""
    lam, vec = np.linalg.eigh((matrix + matrix.T) / 2)
    inside = lam > 1e-12 * max(lam.max(), 0.0) if lam.max() > 0 else np.zeros_like(lam, dtype=bool)
    proj = gradients @ vec
    var = (proj[:, inside] ** 2 / lam[inside]).sum(axis=1)
    outside = (proj[:, ~inside] ** 2).sum(axis=1) > NULL * (proj ** 2).sum(axis=1)
    return np.where(outside, np.inf, var)


def needed_by(fims: np.ndarray, weights: np.ndarray, gradients: np.ndarray,
              names: Sequence[str]) -> dict[int, tuple[str, float]]:
    """For each selected candidate i: the target value whose σ grows most without it,
    and by what factor."""
    total = np.einsum("i,ijk->jk", weights, fims)
    base = predicted_variance(total, gradients)
    out = {}
    for i in np.flatnonzero(weights):
        without = predicted_variance(total - weights[i] * fims[i], gradients)
        ratio = np.where(np.isinf(without), np.inf, without / np.maximum(base, 1e-300))
        k = int(np.argmax(ratio))
        out[int(i)] = (names[k], float(np.sqrt(ratio[k])))
    return out


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def classify(c: Candidate, gain: float, threshold: float, selected_by_budget: bool) -> tuple[str, str]:
    """``(recommendation, reason)`` of a candidate; a selected one's reason is only the
    label warning, if any (the selection's reasons are added by :func:`recommend`)."""
    odd = c.energy_z is not None and abs(c.energy_z) > threshold
    label = (f"its energy per atom sits {_fmt(c.energy_z)} robust σ from the median of its "
             f"{c.config_type or 'dataset'} configurations: look at its label (a wrong unit, a failed run?) before "
             "training on it") if odd else ""
    if selected_by_budget or c.weight > 0:
        return COMPUTE, label
    if odd:
        return CHECK, label
    if c.zero_information:
        return NO_INFORMATION, f"no information: {c.zero_information}"
    if c.same_as is not None:
        return NOT_NEEDED, (f"not needed: its FIM is that of {c.same_as} (a symmetry-equivalent configuration), "
                            "which matching weighed instead; one of the two is enough")
    if c.split != "train":
        return TEST, ("held out for testing (split=test; matching.candidates=train): compute it to measure the "
                      "model's error, not to train on")
    if c.dh_max is not None and c.dh_max > NEW_ENVIRONMENTS:
        return CONSIDER, (f"not needed by the target, but adds new environments (dH up to {_fmt(c.dh_max)} nats): "
                          "worth it for transferability")
    return NOT_NEEDED, (f"not needed: the selected configurations give the target's information for less weight "
                        f"(reduced cost {_fmt(c.reduced_cost)}; its own gain {_fmt(gain)} nats)")


def selected_reason(c: Candidate, share: float, need: tuple[str, float] | None) -> str:
    parts = []
    if c.selection_rank is not None:
        parts.append(f"rank {c.selection_rank} of the budgeted selection")
    if c.weight > 0 and need is not None:
        name, factor = need
        grow = f"{name} is left undetermined" if not np.isfinite(factor) else f"{name}'s σ grows ×{factor:.3g}"
        parts.append(f"needed by {name} at weight {_fmt(c.weight)} (without it, {grow})")
    if share > 0:
        parts.append(f"{100 * share:.0f}% of the selection's information about the target")
    if c.dh_max is not None and c.dh_max > NEW_ENVIRONMENTS:
        parts.append(f"adds new environments (dH up to {_fmt(c.dh_max)} nats)")
    return "; ".join(parts)


def recommend(cands: Sequence[Candidate], fims: np.ndarray, target: np.ndarray, jacobian: np.ndarray,
              covariance: np.ndarray, value_names: Sequence[str], outlier_threshold: float) -> list[Row]:
    """One row per candidate (``fims`` (n, P, P) in the same order), sorted: compute (by
    selection rank, else weight), check label, consider, not needed (by information
    gain), no information; each with its reason and rank."""
    weights, blocks = np.array([c.weight for c in cands]), needed_blocks(fims, target)
    gains, shares = information_gains(blocks), target_shares(blocks, weights)
    needs = needed_by(fims, weights, whitened_gradients(jacobian, covariance), value_names) if weights.any() else {}
    budget = any(c.selection_rank is not None for c in cands)
    rows = []
    for i, c in enumerate(cands):
        kind, reason = classify(c, gains[i], outlier_threshold, budget and c.selection_rank is not None)
        if kind == COMPUTE:
            reason = "; ".join(r for r in (selected_reason(c, shares[i], needs.get(i)), reason) if r)
        need = needs.get(i)
        rows.append(Row(c, kind, reason, float(gains[i]), float(shares[i]), need[0] if need else None,
                        need[1] if need else None))
    rows.sort(key=_order)
    return [replace(r, rank=k + 1) for k, r in enumerate(rows)]


def _order(row: Row):
    c = row.candidate
    return (ORDER.index(row.recommendation), c.selection_rank if c.selection_rank is not None else np.inf,
            -c.weight, -row.information_gain, c.source)


def by_type(rows: Sequence[Row]) -> dict[str, dict[str, int]]:
    """``{config_type: {recommendation: count}}`` (``(none)`` where a candidate has none)."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        kind = r.candidate.config_type or "(none)"
        out.setdefault(kind, {k: 0 for k in ORDER})[r.recommendation] += 1
    return dict(sorted(out.items()))


def per_image(values: Mapping[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """``{image_hash: (max, mean)}`` of per-atom values, finite ones only (None-free)."""
    out = {}
    for h, v in values.items():
        finite = np.asarray(v, dtype=float)
        finite = finite[np.isfinite(finite)]
        out[h] = (float(finite.max()), float(finite.mean())) if len(finite) else (float("nan"), float("nan"))
    return out


COLUMNS = ("rank", "recommendation", "source", "config_type", "quantity", "atoms", "weight", "selection_rank",
           "target_share", "needed_by", "sigma_factor", "information_gain_nats", "dH_max", "dH_mean", "ltau_max",
           "energy_z", "reduced_cost", "mask", "candidate", "reason")


def table(rows: Sequence[Row]) -> list[dict]:
    """The rows as plain records, keyed by :data:`COLUMNS` (None where not known)."""
    out = []
    for r in rows:
        c = r.candidate
        out.append({"rank": r.rank, "recommendation": r.recommendation, "source": c.source,
                    "config_type": c.config_type, "quantity": c.quantity, "atoms": c.atoms, "weight": c.weight,
                    "selection_rank": c.selection_rank, "target_share": r.target_share, "needed_by": r.needed_by,
                    "sigma_factor": r.sigma_factor, "information_gain_nats": r.information_gain, "dH_max": c.dh_max,
                    "dH_mean": c.dh_mean, "ltau_max": c.ltau_max, "energy_z": c.energy_z,
                    "reduced_cost": c.reduced_cost, "mask": c.mask, "candidate": c.id, "reason": r.reason})
    return out
