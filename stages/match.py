"""Stage ``match``: information matching of the target FIM by the training FIMs.

Inputs ``--fims`` (outputs/fim_train/fims.extxyz) and ``--target``
(outputs/fim_property/fim_property.json). Outputs in ``--out`` (outputs/match), all
or none: weights.json (candidate → image_hash, quantity, mask digest and weight, the
selected candidates in input order), selected.extxyz (those candidates, info
``candidate``, ``fim_quantity``, ``fim_matching_weight_score``), candidates.extxyz
(every candidate with its ``fim_matching_weight_score``, 0 where not selected, as
Orchestrator writes it), metrics.json, weights.png and summary.json.
"""

import logging
from pathlib import Path

import numpy as np

from pipeline.core import extxyz, plots
from pipeline.core.atomic import staged
from pipeline.core.outputs import (
    CANDIDATE,
    FIM_MATCHING_REDUCED_COST,
    FIM_MATCHING_WEIGHT_SCORE,
    FIM_PROPERTY_SCORE,
    FIM_QUANTITY,
    IMAGE_HASH,
    SOURCE,
)
from pipeline.core.timing import Timers
from pipeline.scores.matching import candidate_fims, candidate_rows, match, selection
from stages.common import (
    as_dict,
    headline,
    json_bytes,
    matching_options,
    read_images,
    read_json,
    stage_main,
    write_summary,
)
from stages.schema import Config

log = logging.getLogger("atomsieve")
HEADLINE = ("selected", "sum_weights", "dropped_weight_mass")  # metrics.json; the rest in summary.json
OUTPUTS = ("weights.json", "selected.extxyz", "candidates.extxyz", "metrics.json", "weights.png", "weights.csv",
           "spectra.png", "summary.json")


def run(cfg: Config, out: Path, fims: Path, target: Path) -> dict:
    m, timers = cfg.matching, Timers()
    rows = read_images(fims)
    frames = candidate_rows(rows, m.candidates, str(fims))
    goal = read_json(target, "the fim_property stage")
    f_target = np.array(goal[FIM_PROPERTY_SCORE.key], dtype=float)
    candidates = candidate_fims(frames, f_target, goal["labels"], str(fims))
    with timers("match"):
        result = match(candidates, f_target, **matching_options(m))
    weights, chosen = selection(frames, result), [frames[i] for i in result.selected]
    if len(frames) < len(rows):
        log.info("matching sees %d of %d candidates: the %s split (matching.candidates=all for every one)",
                 len(frames), len(rows), m.candidates)
    explain(result, frames, f_target.shape[0], m)
    metrics = {"candidates": len(frames), "selected": len(chosen), "sum_weights": float(result.weights.sum()),
               "dropped": len(result.dropped), "dropped_weight_mass": result.dropped_weight_mass}
    checks = {"not_candidates": len(rows) - len(frames), "min_eigenvalue_rel": result.min_eigenvalue,
              "rescaled_by": result.rescaled_by, "target_rank": result.target_rank,
              "target_condition": result.target_condition, "optimality_gap": result.optimality_gap,
              "solver": result.solver, "status": result.status}
    weight_of = {a.info[CANDIDATE.key]: float(w) for a, w in zip(frames, result.weights)}
    dual_of = {a.info[CANDIDATE.key]: float(d) for a, d in zip(frames, result.duals)}
    for atoms in rows:  # every candidate, as Orchestrator does: 0 where not selected or not a candidate
        atoms.info[FIM_MATCHING_WEIGHT_SCORE.key] = weight_of.get(atoms.info[CANDIDATE.key], 0.0)
        atoms.info[FIM_MATCHING_REDUCED_COST.key] = dual_of.get(atoms.info[CANDIDATE.key], 1.0)
    labels = [f"{a.info.get(SOURCE.key, a.info[IMAGE_HASH.key][:11])} {a.info[FIM_QUANTITY.key]}" for a in chosen]
    values = np.array([w["weight"] for w in weights.values()])
    with staged([out / name for name in OUTPUTS]) as (t_w, t_xyz, t_all, t_metrics, t_png, t_csv, t_spectra,
                                                      t_summary):
        t_w.write_bytes(json_bytes(weights))
        extxyz.write(t_xyz, chosen)
        extxyz.write(t_all, rows)
        t_metrics.write_bytes(json_bytes(headline(metrics, HEADLINE)))
        plots.weights(labels, values, t_png, f"{len(chosen)} of {len(frames)} candidates selected\nsum of weights "
                      f"{values.sum():.4g}, |F_target| = {np.linalg.norm(f_target):.3g}", m.weight_upper_bound)
        t_csv.write_text("candidate,weight\n" + "".join(f"{lab},{float(v)!r}\n" for lab, v in zip(labels, values)))
        plots.spectra(candidates, result.weights > 0, f_target, t_spectra,
                      "Candidate FIMs (selected in orange) against the target's eigenvalues")
        done = write_summary(t_summary, "match", as_dict(m), {**metrics, **checks}, timers,
                             {"solver_seconds": result.seconds})
    return done


def explain(result, frames, parameters: int, m) -> None:
    """Say in the log what the numbers mean: the target's directions, the noise dropped,
    any rescaling."""
    log.info("the target needs information in %d of %d parameter directions (its eigenvalues span %.1e)%s",
             result.target_rank, parameters, result.target_condition,
             "" if result.target_rank == parameters else "; the others it does not depend on")
    short = -min(result.min_eigenvalue, 0.0)
    log.info("selected %d of %d candidates: with their weights they hold the target's information in every direction "
             "it needs%s", len(result.selected), len(frames),
             f", short by at most {short:.1e} of it (matching.max_violation={m.max_violation:g})" if short else "")
    if result.optimality_gap is not None:
        log.info("the sum of weights is within %.1e of the optimum (a lower bound from the solver's dual)",
                 result.optimality_gap)
    if result.dropped:
        log.info("dropped %d weights as solver noise (below matching.weight_tol=%g of the largest, or a reduced cost "
                 "above matching.dual_tol=%g): %.2g of the solver's total weight", len(result.dropped), m.weight_tol,
                 m.dual_tol, result.dropped_weight_mass)
    if result.rescaled_by > 1 + 1e-3:
        log.warning("the kept weights were scaled by %.4g to cover the target after the noise was dropped; a "
                    "lower matching.weight_tol keeps more", result.rescaled_by)


def main() -> None:
    stage_main("match", run, "outputs/match", fims="outputs/fim_train/fims.extxyz",
               target="outputs/fim_property/fim_property.json")


if __name__ == "__main__":
    main()
