"""Stage ``quests``: entropy, efficiency and diversity of the dataset's environments,
and every atom's delta entropy against a reference set.

Inputs ``--descriptors`` (outputs/descriptors/descriptors.npz) and ``--images``
(outputs/hash/images.extxyz). Outputs in ``--out`` (outputs/quests), all or none:
metrics.json (DVC metrics: over the environments ``quests.mask_key`` selects, when
set, as Orchestrator's ``apply_mask``; every environment otherwise), delta_entropy.extxyz (per-atom
``quests_delta_entropy_score`` and its sampling standard error ``quests_delta_entropy_stderr``,
0 where exact), delta_entropy.png and summary.json.
"""

import logging
from pathlib import Path

import numpy as np

from pipeline.core import extxyz, plots
from pipeline.core.atomic import staged
from pipeline.core.errors import InputError
from pipeline.core.outputs import (
    IMAGE_HASH,
    QUESTS_DELTA_ENTROPY_SCORE,
    QUESTS_DELTA_ENTROPY_STDERR,
    QUESTS_DIVERSITY_SCORE,
    QUESTS_EFFICIENCY_SCORE,
    SPLIT,
)
from pipeline.core.timing import Timers
from pipeline.scores import entropy
from stages.common import as_dict, headline, json_bytes, load_descriptors, read_images, stage_main, write_summary
from stages.described import check_width, descriptors_of_file
from stages.schema import Config

log = logging.getLogger(__name__)
NN_QUERIES = 1000  # environments whose nearest-neighbour distance is measured (bandwidth advice)
HEADLINE = ("entropy", QUESTS_EFFICIENCY_SCORE.key, QUESTS_DIVERSITY_SCORE.key, "delta_entropy_max")  # the rest: summary
OUTPUTS = ("metrics.json", "delta_entropy.extxyz", "delta_entropy.png", "delta_entropy.csv", "summary.json")


def reference(cfg: Config, frames, per_image) -> np.ndarray:
    """The environments dH is measured against: a split of the dataset, or those of the
    file ``quests.reference`` names (frames, or a .npy array), of the dataset's width."""
    q = cfg.quests
    if q.reference in entropy.SPLIT_REFERENCES:
        return entropy.split_reference(per_image, [a.info.get(SPLIT.key, "train") for a in frames], q.reference)
    ref, _ = descriptors_of_file(cfg, q.reference, "quests.reference")
    return check_width(ref, per_image[0].shape[1], f"quests.reference={q.reference}", "the dataset")


def selection_mask(frames, key: str | None, where: Path) -> np.ndarray | None:
    """The environments the dataset scores are of: every frame's per-atom array ``key``
    (nonzero: selected), as one boolean array; None without a key. A frame without it,
    or fewer than two environments selected, is an InputError."""
    if key is None:
        return None
    parts = []
    for i, atoms in enumerate(frames):
        if key not in atoms.arrays:
            raise InputError(f"{where}: frame {i} ({atoms.info.get('source', atoms.info[IMAGE_HASH.key])}): expected "
                             f"the per-atom array {key!r} (quests.mask_key) on every frame; it has {sorted(atoms.arrays)}")
        parts.append(np.asarray(atoms.arrays[key]).astype(bool).ravel())
    mask = np.concatenate(parts)
    if mask.sum() < 2:
        raise InputError(f"{where}: quests.mask_key={key!r} selects {int(mask.sum())} environments; expected 2 or more")
    return mask


def run(cfg: Config, out: Path, descriptors: Path, images: Path) -> dict:
    q, timers = cfg.quests, Timers()
    frames = read_images(images, unique=True)
    per_image = load_descriptors(descriptors, [a.info[IMAGE_HASH.key] for a in frames])
    x_all = entropy.check_descriptors(np.concatenate(per_image), str(descriptors))
    mask = selection_mask(frames, q.mask_key, images)
    x = x_all if mask is None else x_all[mask]
    if mask is not None:
        log.info("quests.mask_key=%s: entropy, efficiency and diversity of %d of %d environments; delta entropy of "
                 "every atom", q.mask_key, len(x), len(x_all))
    ref = reference(cfg, frames, per_image)
    args = (q.bandwidth, q.method, q.batch_size, q.knn_k, q.knn_far_samples, q.seed)
    with timers("entropy"):
        own = entropy.kernel_sums(x, x, *args)
    with timers("delta_entropy"):
        against = entropy.kernel_sums(x_all, ref, *args)
    d_h = entropy.delta_entropy(against.log_p, q.legacy_inf)
    nn = entropy.neighbour_distances(x_all, NN_QUERIES, q.seed)
    advice = entropy.bandwidth_advice(q.bandwidth, nn)
    if advice:
        log.warning(advice)
    for what, sums in (("entropy", own), ("delta entropy", against)):
        if sums.sparse:
            log.warning("quests %s: %d of %d environments hold fewer than %d effective terms in their far-field "
                        "samples even %dx larger, too few for a standard error: their errors (per atom, "
                        "quests_delta_entropy_stderr) are the truncation bound instead, wider; raise "
                        "quests.knn_far_samples, or use quests.method=exact", what, sums.sparse, len(sums.log_p),
                        entropy.ESS_MIN, entropy.FAR_GROWTH ** entropy.FAR_ROUNDS)
    sc = entropy.scores(own)
    metrics = {"entropy": sc.entropy, "entropy_stderr": sc.entropy_stderr, QUESTS_EFFICIENCY_SCORE.key: sc.efficiency,
               QUESTS_DIVERSITY_SCORE.key: sc.diversity, "diversity_stderr": sc.diversity_stderr,
               "environments": len(x), "environments_masked_out": len(x_all) - len(x),
               "reference_environments": len(ref),
               "delta_entropy_mean": float(np.mean(d_h[np.isfinite(d_h)])), "delta_entropy_max": float(np.max(d_h)),
               "delta_entropy_stderr_max": float(np.max(against.error)), "method": q.method,
               "knn_truncation_bound": max(own.truncation_bound, against.truncation_bound),
               "knn_resampled_entropy": own.resampled, "knn_resampled_delta_entropy": against.resampled,
               "knn_sparse_entropy": own.sparse, "knn_sparse_delta_entropy": against.sparse,
               "nn_distance_median": float(np.median(nn)) if len(nn) else 0.0,
               "nn_distance_p10": float(np.percentile(nn, 10)) if len(nn) else 0.0,
               "bandwidth_over_nn_median": q.bandwidth / float(np.median(nn)) if len(nn) and np.median(nn) > 0 else None}
    with staged([out / name for name in OUTPUTS]) as (t_metrics, t_xyz, t_png, t_csv, t_summary), timers("write"):
        t_metrics.write_bytes(json_bytes(headline(metrics, HEADLINE)))
        start = 0
        for atoms in frames:
            atoms.arrays[QUESTS_DELTA_ENTROPY_SCORE.key] = d_h[start:start + len(atoms)]
            atoms.arrays[QUESTS_DELTA_ENTROPY_STDERR.key] = against.error[start:start + len(atoms)]
            start += len(atoms)
        extxyz.write(t_xyz, frames)
        plots.histogram(plots.by_split(frames, d_h, SPLIT.key), t_png, "delta entropy dH (nats)",
                        f"How new each atom's environment is to the reference ({q.reference})", t_csv)
        done = write_summary(t_summary, "quests", {"quests": as_dict(q), "descriptors": as_dict(cfg.descriptors)},
                             metrics, timers)
    return done


def main() -> None:
    stage_main("quests", run, "outputs/quests", descriptors="outputs/descriptors/descriptors.npz",
               images="outputs/hash/images.extxyz")


if __name__ == "__main__":
    main()
