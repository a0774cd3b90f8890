"""Stage ``match``: information matching of the target FIM by the training FIMs.

Inputs ``--fims`` (outputs/fim_train/fims.extxyz) and ``--target``
(outputs/fim_property/fim_property.json), or FIMs brought from elsewhere in any form
:mod:`pipeline.scores.brought_fims` reads (Orchestrator's extxyz and json, .npz/.npy);
``atomsieve match`` runs the same on files, without a pipeline. Outputs in ``--out`` (outputs/match), all
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
    FIM_PARAMETERS,
    FIM_QUANTITY,
    IMAGE_HASH,
    SOURCE,
    mask_of,
)
from pipeline.core.timing import Timers
from pipeline.scores.brought_fims import (
    Candidates,
    check_pair,
    check_suffix,
    read_candidates,
    read_frames,
    read_target,
)
from pipeline.scores.matching import candidate_rows, match
from stages.common import as_dict, headline, json_bytes, matching_options, stage_main, write_summary
from stages.schema import Config

log = logging.getLogger("atomsieve")
HEADLINE = ("selected", "sum_weights", "dropped_weight_mass")  # metrics.json; the rest in summary.json
OUTPUTS = ("weights.json", "selected.extxyz", "candidates.extxyz", "metrics.json", "weights.png", "weights.csv",
           "spectra.png", "summary.json")


def run(cfg: Config, out: Path, fims: Path, target: Path) -> dict:
    return write(cfg.matching, out, fims, target)


def load(m, fims: Path) -> tuple[Candidates, list | None, int]:
    """The candidates of ``fims`` (:mod:`pipeline.scores.brought_fims`), the frames they
    came with (None for .npz) and how many rows the file holds."""
    check_suffix(fims)
    if fims.suffix == ".npz":
        cands = read_candidates(fims)
        return cands, None, len(cands.ids)
    rows = read_frames(fims)
    ours = rows and all(CANDIDATE.key in a.info and FIM_PARAMETERS.key in a.info for a in rows)
    frames = candidate_rows(rows, m.candidates, str(fims)) if ours else rows
    return read_candidates(fims, frames, m.weight_upper_bound_key), rows, len(rows)


def bounds_of(m, cands: Candidates):
    """The weight bound: ``matching.weight_upper_bound``, the candidates' own, or the
    smaller of the two for each."""
    if cands.upper_bounds is None:
        return m.weight_upper_bound
    scalar = np.inf if m.weight_upper_bound is None else m.weight_upper_bound
    return np.minimum(cands.upper_bounds, scalar)


def write(m, out: Path, fims: Path, target: Path) -> dict:
    """Match the candidates of ``fims`` to the target of ``target`` (either in any form
    :mod:`pipeline.scores.brought_fims` reads) and write the outputs in ``out``."""
    timers = Timers()
    cands, rows, n_rows = load(m, fims)
    goal = read_target(target)
    for note in check_pair(cands, goal, fims, target):
        log.warning(note)
    with timers("match"):
        result = match(cands.fims, goal.fim, weight_upper_bound=bounds_of(m, cands),
                       **{k: v for k, v in matching_options(m).items() if k != "weight_upper_bound"})
    frames = cands.frames
    if frames is not None and len(frames) < n_rows:
        log.info("matching sees %d of %d candidates: the %s split (matching.candidates=all for every one)",
                 len(frames), n_rows, m.candidates)
    bound = bounds_of(m, cands)
    explain(result, cands.ids, goal.fim.shape[0], m, bound)
    weights = {cands.ids[i]: {**described(cands, i), "weight": float(result.weights[i])} for i in result.selected}
    metrics = {"candidates": len(cands.ids), "selected": len(result.selected), "sum_weights": float(result.weights.sum()),
               "dropped": len(result.dropped), "dropped_weight_mass": result.dropped_weight_mass}
    checks = {"not_candidates": n_rows - len(cands.ids), "min_eigenvalue_rel": result.min_eigenvalue,
              "rescaled_by": result.rescaled_by, "target_rank": result.target_rank,
              "target_condition": result.target_condition, "optimality_gap": result.optimality_gap,
              "solver": result.solver, "status": result.status, "candidates_from": cands.kind,
              "target_from": goal.kind, "per_candidate_bounds": cands.upper_bounds is not None,
              "same_fim_as_another": len(result.same_as),
              "more_than_an_optimum_needs": len(result.selected) > most_needed(goal.fim.shape[0])}
    chosen, everyone = [], []
    if frames is not None:
        weight_of = dict(zip(cands.ids, result.weights.tolist()))
        dual_of = dict(zip(cands.ids, result.duals.tolist()))
        id_of = {id(a): name for a, name in zip(frames, cands.ids)}
        for atoms in rows:  # every row, as Orchestrator writes it: 0 where not selected or not a candidate
            name = id_of.get(id(atoms))
            atoms.info[FIM_MATCHING_WEIGHT_SCORE.key] = float(weight_of.get(name, 0.0))
            atoms.info[FIM_MATCHING_REDUCED_COST.key] = float(dual_of.get(name, 1.0))
        chosen, everyone = [frames[i] for i in result.selected], rows
        for i in result.selected:
            atoms = frames[i]
            if atoms.pbc.any() and atoms.cell.rank < 3:
                log.warning("selected %s is periodic (pbc %s) but has no full cell (its frame names %s): check it "
                            "before sending it to DFT", cands.ids[i], atoms.pbc.tolist(), sorted(atoms.info))
    else:
        log.info("%s holds FIMs without structures: selected.extxyz and candidates.extxyz are left empty; "
                 "weights.json and weights.csv name the candidates by their ids", fims)
    labels = [plot_label(cands, i) for i in result.selected]
    values = np.array([w["weight"] for w in weights.values()])
    with staged([out / name for name in OUTPUTS]) as (t_w, t_xyz, t_all, t_metrics, t_png, t_csv, t_spectra,
                                                      t_summary):
        t_w.write_bytes(json_bytes(weights))
        extxyz.write(t_xyz, chosen)
        extxyz.write(t_all, everyone)
        t_metrics.write_bytes(json_bytes(headline(metrics, HEADLINE)))
        plots.weights(labels, values, t_png, f"{len(chosen) or len(values)} of {len(cands.ids)} candidates selected\n"
                      f"sum of weights {values.sum():.4g}, |F_target| = {np.linalg.norm(goal.fim):.3g}",
                      m.weight_upper_bound)
        t_csv.write_text("candidate,weight\n" + "".join(f"{lab},{float(v)!r}\n" for lab, v in zip(labels, values)))
        plots.spectra(cands.fims, result.weights > 0, goal.fim, t_spectra,
                      "Candidate FIMs (selected in orange) against the target's eigenvalues", fims.name)
        done = write_summary(t_summary, "match", as_dict(m), {**metrics, **checks}, timers,
                             {"solver_seconds": result.seconds,
                              "same_fim_as": {cands.ids[i]: cands.ids[j] for i, j in result.same_as.items()}})
    return done


def described(cands: Candidates, i: int) -> dict:
    """What weights.json says of candidate ``i`` beside its weight: for atomsieve's own
    candidates their image_hash, quantity and mask digest (None where unmasked)."""
    if cands.kind != "atomsieve":
        return {}
    info = cands.frames[i].info
    return {"image_hash": info[IMAGE_HASH.key], "quantity": info[FIM_QUANTITY.key], "mask": mask_of(cands.ids[i])}


def plot_label(cands: Candidates, i: int) -> str:
    if cands.kind != "atomsieve":
        return cands.ids[i]
    info = cands.frames[i].info
    return f"{info.get(SOURCE.key, info[IMAGE_HASH.key][:11])} {info[FIM_QUANTITY.key]}"


def most_needed(parameters: int) -> int:
    """P(P+1)/2: an optimal selection with at most this many candidates always exists
    (a basic solution of the semidefinite program); more means the optimum is not unique."""
    return parameters * (parameters + 1) // 2


def explain(result, ids, parameters: int, m, bound=None) -> None:
    """Say in the log what the numbers mean: the target's directions, the noise dropped,
    any rescaling."""
    log.info("the target needs information in %d of %d parameter directions (its eigenvalues span %.1e)%s",
             result.target_rank, parameters, result.target_condition,
             "" if result.target_rank == parameters else "; the others it does not depend on")
    short = -min(result.min_eigenvalue, 0.0)
    log.info("selected %d of %d candidates: with their weights they hold the target's information in every direction "
             "it needs%s", len(result.selected), len(ids),
             f", short by at most {short:.1e} of it (matching.max_violation={m.max_violation:g})" if short else "")
    if result.optimality_gap is not None:
        log.info("the sum of weights is within %.1e of the optimum (a lower bound from the solver's dual)",
                 result.optimality_gap)
    elif bound is not None:
        log.info("with a weight bound no certificate of the optimum is computed here (optimality_gap: null)")
    if bound is not None:
        caps = np.broadcast_to(np.asarray(bound, dtype=float), result.weights.shape)
        at = [ids[i] for i in result.selected if result.weights[i] >= caps[i] * (1 - 1e-6)]
        if at:
            log.info("%d weights sit at their bound (%s): the target would take more of them", len(at),
                     ", ".join(at[:5]) + (", ..." if len(at) > 5 else ""))
    if len(result.selected) > most_needed(parameters):
        log.warning("selected %d candidates, more than P(P+1)/2 = %d: the optimum is not unique (an optimal selection "
                    "of at most %d exists), and these weights are one of many optimal ones; for a set of K: "
                    "atomsieve select with selection.objective=target and selection.budget=K", len(result.selected),
                    most_needed(parameters), most_needed(parameters))
    if result.dropped:
        log.info("dropped %d weights as solver noise (below matching.weight_tol=%g of the largest, or a reduced cost "
                 "above matching.dual_tol=%g): %.2g of the solver's total weight", len(result.dropped), m.weight_tol,
                 m.dual_tol, result.dropped_weight_mass)
    if result.same_as:
        i, j = next(iter(result.same_as.items()))
        log.info("%d candidates have the same FIM as an earlier one (e.g. %s as %s: symmetry-equivalent "
                 "configurations); each group is matched once, as its first, so that no weight is split between "
                 "equals (summary.json: same_fim_as)", len(result.same_as), ids[i], ids[j])
    if result.status != "optimal":
        log.warning("matching.solver=%s answered %r; taken because its kept weights, verified here, miss at most "
                    "%.1e of the target's information (matching.max_violation=%g); the status is in summary.json",
                    result.solver, result.status, -min(result.min_eigenvalue, 0.0), m.max_violation)
    if result.rescaled_by > 1 + 1e-3:
        log.warning("the kept weights were scaled by %.4g to cover the target after the noise was dropped; a "
                    "lower matching.weight_tol keeps more", result.rescaled_by)


def main() -> None:
    stage_main("match", run, "outputs/match", fims="outputs/fim_train/fims.extxyz",
               target="outputs/fim_property/fim_property.json")


if __name__ == "__main__":
    main()
