"""Stage ``energy_outlier``: a robust z-score of every labelled image's energy per atom.

Input ``--images`` (outputs/hash/images.extxyz). Images with a ``config_type`` are
scored within their type (pipeline/scores/energy_outlier.py). Outputs in ``--out``
(outputs/energy_outlier), all or none: scores.json (image_hash → z, source,
config_type and the group it was scored in), metrics.json and summary.json.
"""

import logging
from pathlib import Path

import numpy as np

from pipeline.core.atomic import staged
from pipeline.core.errors import InputError
from pipeline.core.outputs import CONFIG_TYPE, ENERGY_OUTLIER_SCORE, IMAGE_HASH, SOURCE
from pipeline.core.timing import Timers
from pipeline.scores.energy_outlier import outliers, robust_z, robust_z_by_group
from stages.common import as_dict, headline, json_bytes, read_images, stage_main, write_summary
from stages.schema import Config

log = logging.getLogger(__name__)
OUTPUTS = ("scores.json", "metrics.json", "summary.json")


def z_scores(frames) -> tuple[np.ndarray, list[str], str]:
    """Each labelled frame's z-score, what it was scored within, and why none was scored
    (empty when some were): too few labelled frames, or all of one energy per atom."""
    energies, sizes = np.array([a.calc.results["energy"] for a in frames]), np.array([len(a) for a in frames])
    try:
        if any(CONFIG_TYPE in a.info for a in frames):
            z, basis = robust_z_by_group(energies, sizes, [str(a.info.get(CONFIG_TYPE, "(none)")) for a in frames])
        else:
            z, basis = robust_z(energies, sizes), ["all"] * len(frames)
    except InputError as err:
        return np.full(len(frames), np.nan), ["not scored"] * len(frames), str(err)
    return z, basis, "" if np.isfinite(z).any() else "no configuration type has enough frames for a robust spread"


def run(cfg: Config, out: Path, images: Path) -> dict:
    c, timers = cfg.energy_outlier, Timers()
    frames = [a for a in read_images(images, unique=True) if a.calc is not None and "energy" in a.calc.results]
    z, basis, note = z_scores(frames) if frames else (np.zeros(0), [], "no image has an energy label")
    if note:  # unlabelled data are welcome: this score needs labels, the pipeline does not
        log.warning("energy_outlier: nothing scored (%s); the other stages do not need labels", note)
    elif not np.isfinite(z).all():
        unscored = sorted({b_type for b_type, v in zip((str(a.info.get(CONFIG_TYPE)) for a in frames), z)
                           if not np.isfinite(v)})
        log.info("energy_outlier: %d frames not scored, their configuration types (%s) having too few frames "
                 "for a robust spread", int((~np.isfinite(z)).sum()), ", ".join(unscored))
    flagged = outliers(z, c.threshold)
    scores = {a.info[IMAGE_HASH.key]: {ENERGY_OUTLIER_SCORE.key: float(v) if np.isfinite(v) else None,
                                       SOURCE.key: a.info.get(SOURCE.key),
                                       CONFIG_TYPE: a.info.get(CONFIG_TYPE), "scored_within": b}
              for a, v, b in zip(frames, z, basis)}
    scored = np.isfinite(z)
    metrics = {"labelled": len(frames), "outliers": len(flagged),
               "max_abs_z": float(np.abs(z[scored]).max()) if scored.any() else None}
    with staged([out / name for name in OUTPUTS]) as (t_scores, t_metrics, t_summary):
        t_scores.write_bytes(json_bytes(scores))
        t_metrics.write_bytes(json_bytes(headline(metrics, ("outliers", "max_abs_z"))))
        done = write_summary(t_summary, "energy_outlier", as_dict(c), {**metrics, "scored": int(scored.sum())},
                             timers, {"outliers": [frames[i].info.get(SOURCE.key) for i in flagged], "note": note})
    return done


def main() -> None:
    stage_main("energy_outlier", run, "outputs/energy_outlier", images="outputs/hash/images.extxyz")


if __name__ == "__main__":
    main()
