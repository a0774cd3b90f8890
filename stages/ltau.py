"""Stage ``ltau``: every atom's force uncertainty ``ltau_forces_uq_score`` (eV/Å).

Inputs ``--fit`` (outputs/ltau_fit), ``--descriptors``
(outputs/descriptors/descriptors.npz) and ``--images`` (outputs/hash/images.extxyz).
Outputs in ``--out`` (outputs/ltau), all or none: uncertainty.extxyz (per-atom
``ltau_forces_uq_score``), metrics.json, uncertainty.png and summary.json.
"""

from pathlib import Path

import numpy as np

from pipeline.core import extxyz, plots
from pipeline.core.atomic import staged
from pipeline.core.errors import InputError
from pipeline.core.outputs import IMAGE_HASH, LTAU_FORCES_UQ_SCORE, SPLIT
from pipeline.core.timing import Timers
from pipeline.scores import ltau
from pipeline.scores.entropy import check_descriptors
from stages.common import headline, json_bytes, load_descriptors, read_images, stage_main, write_summary
from stages.schema import Config

OUTPUTS = ("uncertainty.extxyz", "metrics.json", "uncertainty.png", "uncertainty.csv", "summary.json")


def load_fit(path: Path) -> ltau.Fit:
    try:
        with np.load(path / "fit.npz", allow_pickle=False) as npz:
            return ltau.Fit(npz["edges"], npz["midpoints"], npz["pdfs"], 0)
    except (OSError, KeyError, ValueError) as err:
        raise InputError(f"{path}/fit.npz: cannot read the LTAU fit (run ltau_fit first): {err}") from err


def disabled(cfg: Config, out: Path) -> dict:
    """``ltau.enabled: false``: every output, saying LTAU was not run and how to run it."""
    with staged([out / name for name in OUTPUTS]) as (t_xyz, t_metrics, t_png, t_csv, t_summary):
        t_xyz.write_bytes(b"")
        t_metrics.write_bytes(json_bytes({"enabled": False}))
        plots.note(t_png, "LTAU force uncertainty", "Not run (ltau=disabled): it needs the per-atom force errors of your\n"
                   "model's training run (README, 'LTAU from your own training run').")
        t_csv.write_text("bin,train,test\n")
        return write_summary(t_summary, "ltau", {"k": cfg.ltau.k}, {"enabled": False}, Timers())


def run(cfg: Config, out: Path, fit: Path, descriptors: Path, images: Path) -> dict:
    if not cfg.ltau.enabled:
        return disabled(cfg, out)
    timers = Timers()
    frames = read_images(images, unique=True)
    per_image = load_descriptors(descriptors, [a.info[IMAGE_HASH.key] for a in frames])
    query = check_descriptors(np.concatenate(per_image), str(descriptors))
    pdfs, index = load_fit(fit), ltau.read_index(fit / "index.faiss")
    with timers("search"):
        found = ltau.neighbours(index, query, cfg.ltau.k)
    with timers("score"):
        score = ltau.uncertainty(pdfs, found)
    metrics = {"atoms": len(score), "mean": float(score.mean()), "max": float(score.max()), "k": cfg.ltau.k}
    with staged([out / name for name in OUTPUTS]) as (t_xyz, t_metrics, t_png, t_csv, t_summary):
        start = 0
        for atoms in frames:
            atoms.arrays[LTAU_FORCES_UQ_SCORE.key] = score[start:start + len(atoms)]
            start += len(atoms)
        extxyz.write(t_xyz, frames)
        t_metrics.write_bytes(json_bytes(headline(metrics, ("mean", "max"))))
        plots.histogram(plots.by_split(frames, score, SPLIT.key), t_png, "LTAU force uncertainty (eV/Å)",
                        f"Expected force error per atom ({cfg.ltau.k} nearest training atoms)", t_csv)
        done = write_summary(t_summary, "ltau", {"k": cfg.ltau.k}, metrics, timers)
    return done


def main() -> None:
    stage_main("ltau", run, "outputs/ltau", fit="outputs/ltau_fit", descriptors="outputs/descriptors/descriptors.npz",
               images="outputs/hash/images.extxyz")


if __name__ == "__main__":
    main()
