"""Stage ``recommend``: which configurations to compute, and why, one row per candidate.

It reads what the other stages wrote and recomputes nothing: ``--images``
(outputs/hash/images.extxyz), ``--fims`` (outputs/fim_train/fims.npz), ``--zero``
(outputs/fim_train/zero_information.json), ``--target``
(outputs/fim_property/fim_property.json), ``--match`` (outputs/match/candidates.extxyz),
``--select`` (outputs/select/selected.extxyz), ``--quests``
(outputs/quests/delta_entropy.extxyz), ``--ltau`` (outputs/ltau/uncertainty.extxyz) and
``--outliers`` (outputs/energy_outlier/scores.json); a stage that was not run leaves
its columns blank. Outputs in ``--out`` (outputs/recommend), all or none:
recommendation.csv (every candidate, sorted: pipeline/scores/recommendation.py),
report.md and report.html (offline: the plot embedded), recommendation.png with its data
by_type.csv, metrics.json and summary.json.
"""

from pathlib import Path

import numpy as np

from pipeline.core import plots, report
from pipeline.core.atomic import staged
from pipeline.core.errors import InputError
from pipeline.core.outputs import (
    CANDIDATE,
    CONFIG_TYPE,
    ENERGY_OUTLIER_SCORE,
    FIM_MATCHING_REDUCED_COST,
    FIM_MATCHING_WEIGHT_SCORE,
    FIM_PROPERTY_SCORE,
    FIM_QUANTITY,
    IMAGE_HASH,
    LTAU_FORCES_UQ_SCORE,
    QUESTS_DELTA_ENTROPY_SCORE,
    SELECTION_RANK,
    SOURCE,
    SPLIT,
    mask_of,
)
from pipeline.core.timing import Timers
from pipeline.scores import recommendation as rec
from stages.common import (
    headline,
    json_bytes,
    read_images,
    read_json,
    stage_main,
    write_summary,
)
from stages.recommend_report import sections
from stages.schema import Config

OUTPUTS = ("recommendation.csv", "report.md", "report.html", "recommendation.png", "by_type.csv", "metrics.json",
           "summary.json")


def optional_images(path: Path) -> list:
    """The frames of a stage's extxyz output, none where the stage was not run (empty file)."""
    return read_images(path) if path.exists() and path.stat().st_size else []


def per_atom(path: Path, key: str) -> dict[str, tuple[float, float]]:
    return rec.per_image({a.info[IMAGE_HASH.key]: a.arrays[key] for a in optional_images(path) if key in a.arrays})


def load_fims(path: Path) -> tuple[list[str], np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return [str(c) for c in npz["candidate"]], np.asarray(npz["fim"], dtype=float)
    except (OSError, KeyError, ValueError) as err:
        raise InputError(f"{path}: cannot read the candidates' FIMs (run fim_train first): {err}") from err


def candidates_of(match: Path, select: Path, quests: Path, ltau: Path, outliers: Path, zero: Path,
                  images: Path, match_summary: Path | None = None) -> list[rec.Candidate]:
    """Every candidate of match's candidates.extxyz, with what the other stages said of it
    (``match_summary``: match's summary.json, which names candidates of equal FIMs)."""
    ranks = {a.info[CANDIDATE.key]: int(a.info[SELECTION_RANK.key]) for a in optional_images(select)}
    dh, sigma = per_atom(quests, QUESTS_DELTA_ENTROPY_SCORE.key), per_atom(ltau, LTAU_FORCES_UQ_SCORE.key)
    z = {h: v[ENERGY_OUTLIER_SCORE.key] for h, v in read_json(outliers, "the energy_outlier stage").items()}
    empty = read_json(zero, "the fim_train stage")
    kinds = {a.info[IMAGE_HASH.key]: a.info.get(CONFIG_TYPE) for a in read_images(images)}
    same = read_json(match_summary, "the match stage").get("same_fim_as", {}) if match_summary is not None else {}
    out = []
    for a in read_images(match):
        cid, h = a.info[CANDIDATE.key], a.info[IMAGE_HASH.key]
        out.append(rec.Candidate(
            cid, a.info.get(SOURCE.key, h), kinds.get(h, a.info.get(CONFIG_TYPE)), a.info[FIM_QUANTITY.key],
            mask_of(cid), len(a), float(a.info[FIM_MATCHING_WEIGHT_SCORE.key]),
            float(a.info.get(FIM_MATCHING_REDUCED_COST.key, 1.0)), ranks.get(cid), dh.get(h, (None,))[0],
            dh.get(h, (None, None))[1], sigma.get(h, (None,))[0], z.get(h),
            empty.get(cid, {}).get("cause"), str(a.info.get(SPLIT.key, "train")), same.get(cid)))
    return out


def run(cfg: Config, out: Path, images: Path, fims: Path, zero: Path, target: Path, match: Path, select: Path,
        quests: Path, ltau: Path, outliers: Path, match_summary: Path | None = None) -> dict:
    timers = Timers()
    cands = candidates_of(match, select, quests, ltau, outliers, zero, images, match_summary)
    ids, matrices = load_fims(fims)
    order = {c: i for i, c in enumerate(ids)}
    missing = [c.id for c in cands if c.id not in order]
    if missing:
        raise InputError(f"{fims}: no FIM of candidate {missing[0]} ({len(missing)} in all) of {match}; "
                         "run fim_train and match again")
    goal = read_json(target, "the fim_property stage")
    cov = block_diagonal([np.asarray(v, dtype=float) for v in goal["covariances"].values()])
    with timers("recommend"):
        rows = rec.recommend(cands, matrices[[order[c.id] for c in cands]], np.asarray(goal[FIM_PROPERTY_SCORE.key]),
                             np.asarray(goal["jacobian"]), cov, list(goal["values"]), cfg.energy_outlier.threshold)
    records, counts = rec.table(rows), rec.by_type(rows)
    metrics = {"candidates": len(rows), **{k.replace(" ", "_"): sum(r.recommendation == k for r in rows)
                                           for k in rec.ORDER}}
    with staged([out / n for n in OUTPUTS]) as (t_csv, t_md, t_html, t_png, t_types, t_metrics, t_summary):
        t_csv.write_text(report.csv_text(rec.COLUMNS, records))
        plots.recommendation(counts, np.array([r.information_gain for r in rows]),
                             np.array([np.nan if r.candidate.dh_max is None else r.candidate.dh_max for r in rows]),
                             [r.recommendation for r in rows], [r.candidate.config_type or "(none)" for r in rows],
                             [Path(r.candidate.source).name for r in rows], t_png, f"{metrics['compute']} of {len(rows)} candidates to compute")
        parts = sections(records, counts, cfg, Path(out / "recommendation.png"), goal["values"])
        t_md.write_text(report.markdown("Which configurations to compute, and why", parts))
        t_html.write_text(report.html_page("Which configurations to compute, and why", parts, "recommendation",
                                           {"recommendation.png": t_png.read_bytes()}))
        t_types.write_text(report.csv_text(("config_type", *rec.ORDER),
                                           [{"config_type": k, **v} for k, v in counts.items()]))
        t_metrics.write_bytes(json_bytes(headline(metrics, ("compute", "check_label", "consider", "no_information"))))
        done = write_summary(t_summary, "recommend", {"energy_outlier_threshold": cfg.energy_outlier.threshold},
                             metrics, timers, {"by_type": counts})
    return done


def block_diagonal(blocks: list[np.ndarray]) -> np.ndarray:
    size = sum(len(b) for b in blocks)
    out, start = np.zeros((size, size)), 0
    for b in blocks:
        out[start:start + len(b), start:start + len(b)] = b
        start += len(b)
    return out


def main() -> None:
    stage_main("recommend", run, "outputs/recommend", images="outputs/hash/images.extxyz",
               fims="outputs/fim_train/fims.npz", zero="outputs/fim_train/zero_information.json",
               target="outputs/fim_property/fim_property.json", match="outputs/match/candidates.extxyz",
               select="outputs/select/selected.extxyz", quests="outputs/quests/delta_entropy.extxyz",
               ltau="outputs/ltau/uncertainty.extxyz", outliers="outputs/energy_outlier/scores.json",
               match_summary="outputs/match/summary.json")


if __name__ == "__main__":
    main()
