"""Stage ``quests``: entropy, efficiency and diversity of the dataset's environments,
and every atom's delta entropy against a reference set.

Inputs ``--descriptors`` (outputs/descriptors/descriptors.npz) and ``--images``
(outputs/hash/images.extxyz). Outputs in ``--out`` (outputs/quests), all or none:
metrics.json (DVC metrics), delta_entropy.extxyz (per-atom
``quests_delta_entropy_score`` and its sampling standard error ``quests_delta_entropy_stderr``,
0 where exact), delta_entropy.png and summary.json.
"""

from pathlib import Path

import ase.io
import numpy as np

from pipeline.atoms.dataset import expand_paths, read_checked
from pipeline.atoms.descriptor_set import descriptor_set
from pipeline.atoms.hashing import image_hashes
from pipeline.core import plots
from pipeline.core.atomic import staged
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
from stages.common import as_dict, json_bytes, load_descriptors, read_images, reproducible, stage_main, write_summary
from stages.runtime import store_of
from stages.schema import Config

OUTPUTS = ("metrics.json", "delta_entropy.extxyz", "delta_entropy.png", "delta_entropy.csv", "summary.json")


def reference(cfg: Config, frames, per_image) -> np.ndarray:
    q = cfg.quests
    if q.reference in entropy.SPLIT_REFERENCES:
        return entropy.split_reference(per_image, [a.info.get(SPLIT.key, "train") for a in frames], q.reference)
    path, = expand_paths([q.reference], cfg.dataset.root, "quests.reference")
    ref = read_checked(path, cfg.dataset.min_distance)
    d = cfg.descriptors
    return descriptor_set(ref, image_hashes(ref), d.name, d.k, d.cutoff, store_of(cfg)).values


def run(cfg: Config, out: Path, descriptors: Path, images: Path) -> dict:
    q, timers = cfg.quests, Timers()
    frames = read_images(images, unique=True)
    per_image = load_descriptors(descriptors, [a.info[IMAGE_HASH.key] for a in frames])
    x = entropy.check_descriptors(np.concatenate(per_image), str(descriptors))
    ref = entropy.check_descriptors(reference(cfg, frames, per_image), f"quests.reference={q.reference}")
    args = (q.bandwidth, q.method, q.batch_size, q.knn_k, q.knn_far_samples, q.seed)
    with timers("entropy"):
        own = entropy.kernel_sums(x, x, *args)
    with timers("delta_entropy"):
        against = entropy.kernel_sums(x, ref, *args)
    d_h = entropy.delta_entropy(against.log_p, q.legacy_inf)
    sc = entropy.scores(own)
    metrics = {"entropy": sc.entropy, "entropy_stderr": sc.entropy_stderr, QUESTS_EFFICIENCY_SCORE.key: sc.efficiency,
               QUESTS_DIVERSITY_SCORE.key: sc.diversity, "diversity_stderr": sc.diversity_stderr,
               "environments": len(x), "reference_environments": len(ref),
               "delta_entropy_mean": float(np.mean(d_h[np.isfinite(d_h)])), "delta_entropy_max": float(np.max(d_h)),
               "delta_entropy_stderr_max": float(np.max(against.stderr)), "method": q.method,
               "knn_truncation_bound": max(own.truncation_bound, against.truncation_bound)}
    with staged([out / name for name in OUTPUTS]) as (t_metrics, t_xyz, t_png, t_csv, t_summary), timers("write"):
        t_metrics.write_bytes(json_bytes(reproducible(metrics)))
        start = 0
        for atoms in frames:
            atoms.arrays[QUESTS_DELTA_ENTROPY_SCORE.key] = d_h[start:start + len(atoms)]
            atoms.arrays[QUESTS_DELTA_ENTROPY_STDERR.key] = against.stderr[start:start + len(atoms)]
            start += len(atoms)
        ase.io.write(t_xyz, frames, format="extxyz")
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
