"""Stage ``learn``: the information-matching active-learning loop
(:mod:`pipeline.scores.learn`) over the candidates of ``--images``
(outputs/hash/images.extxyz, labelled), to the targets of ``target.properties``.

Outputs in ``--out`` (outputs/learn), all or none: iterations.json (every iteration's
parameters, weights, fit cost, target values and σ), selected.extxyz (the final
selection, info ``fim_matching_weight_score`` and ``learn_iteration``, the first
iteration that selected it), metrics.json, learn.png with its data in iterations.csv
and targets.csv (DVC plots), and summary.json.
"""

import logging
from pathlib import Path

import numpy as np

from pipeline.core import extxyz, plots
from pipeline.core.atomic import staged
from pipeline.core.outputs import FIM_MATCHING_WEIGHT_SCORE, IMAGE_HASH, LEARN_ITERATION, SOURCE
from pipeline.core.timing import Timers
from pipeline.models import parameters
from pipeline.scores.learn import Loop, Matching, final_report, learn
from pipeline.scores.matching import candidate_rows
from pipeline.scores.training_fim import candidates, masks, quantities
from stages.common import as_dict, json_bytes, matching_options, read_images, reproducible, stage_main, write_summary
from stages.models import derivative_of, potential_of, targets_of, transform_of
from stages.runtime import executor_factory, store_of
from stages.schema import Config

log = logging.getLogger(__name__)
CHI2_WARN = 3.0  # a final fit's reduced chi^2 above this is reported as model error
OUTPUTS = ("iterations.json", "selected.extxyz", "metrics.json", "learn.png", "iterations.csv", "targets.csv",
           "summary.json")


def disabled(cfg: Config, out: Path) -> dict:
    """``learn.enabled: false``: every output, saying the loop was not asked to run."""
    with staged([out / name for name in OUTPUTS]) as (t_json, t_xyz, t_metrics, t_png, t_iter, t_targets, t_summary):
        t_json.write_bytes(json_bytes({"enabled": False}))
        t_xyz.write_bytes(b"")
        t_metrics.write_bytes(json_bytes({"enabled": False}))
        plots.note(t_png, "Active learning", "Not run: set learn.enabled=true, or run a preset\n"
                   "(atomsieve experiment sw_si_elastic).")
        t_iter.write_text("iteration,selected,sum_weights,max_relative_sigma\n")
        t_targets.write_text("target,predicted,sigma,reference\n")
        return write_summary(t_summary, "learn", {"learn": as_dict(cfg.learn)}, {"enabled": False}, Timers())


def run(cfg: Config, out: Path, images: Path) -> dict:
    if not cfg.learn.enabled:
        return disabled(cfg, out)
    timers, f, m, c = Timers(), cfg.fim, cfg.matching, cfg.learn
    frames = candidate_rows(read_images(images), m.candidates, str(images))
    hashes = [a.info[IMAGE_HASH.key] for a in frames]
    cands = candidates(frames, hashes, quantities(frames, hashes, f.quantity, f.quantity_key),
                       masks(frames, hashes, f.mask_key, []))
    targets, potential = targets_of(cfg.target.properties, cfg.target.lammps.executable), potential_of(cfg.potential)
    spec = parameters.parse(cfg.potential.parameters_optimize)
    loop = Loop(c.warmup, c.max_iterations, c.rtol, c.fit_method, c.energy_shift, c.max_nfev)
    matching = Matching(**matching_options(m))
    with timers("learn"):
        its = learn(frames, cands, potential, spec, transform_of(cfg.potential.transform), derivative_of(f.derivative),
                    targets, derivative_of(cfg.target.derivative), matching, loop, store_of(cfg),
                    executor_factory(cfg.runtime))
    with timers("report"):
        report = final_report(its, targets, potential, spec, transform_of(cfg.potential.transform), c.truth_kim_id)
    first = {}
    for it in its:
        for cid in it.accumulated:
            first.setdefault(cid, it.k)
    chosen = []
    for cand in cands:
        if cand.id in its[-1].accumulated:
            atoms = frames[cand.row].copy()
            atoms.info.update({FIM_MATCHING_WEIGHT_SCORE.key: its[-1].accumulated[cand.id],
                               LEARN_ITERATION.key: first[cand.id], "candidate": cand.id})
            chosen.append(atoms)
    if its[-1].reduced_chi2 > CHI2_WARN:
        log.warning("learn: the final fit has reduced chi^2 = %.3g: the potential cannot reproduce the selected data "
                    "to the precision the targets ask (model error); the propagated sigma assume it can, so read "
                    "them as lower bounds", its[-1].reduced_chi2)
    metrics = {"enabled": True, "iterations": len(its), "converged": its[-1].converged, "selected": len(chosen),
               "fit_cost": its[-1].fit_cost, "fit_reduced_chi2": its[-1].reduced_chi2,
               "energy_shift": its[-1].energy_shift, **report.metrics()}
    with staged([out / name for name in OUTPUTS]) as (t_json, t_xyz, t_metrics, t_png, t_iter, t_targets, t_summary):
        t_json.write_bytes(json_bytes({"labels": spec.labels(), "iterations": [it.as_dict() for it in its],
                                       "final": report.as_dict()}))
        extxyz.write(t_xyz, chosen)
        t_metrics.write_bytes(json_bytes(reproducible(metrics)))
        ids = sorted(its[-1].accumulated)
        names = {cand.id: f"{frames[cand.row].info.get(SOURCE.key, '?').split('/')[-1]} {cand.quantity}"
                 for cand in cands}
        plots.learning(np.array([it.k for it in its]),
                       np.array([[it.accumulated.get(i, 0.0) for i in ids] for it in its]), [names[i] for i in ids],
                       np.array([it.sigma / np.maximum(np.abs(it.targets), 1e-300) for it in its]),
                       list(report.labels), report.predicted, report.sigma, report.truth,
                       f"{c.truth_kim_id} (reference)", t_png, t_iter, t_targets)
        done = write_summary(t_summary, "learn", {"learn": as_dict(c), "matching": as_dict(m)},
                             {"candidates": len(cands), "iterations": len(its), "selected": len(chosen),
                              "fims_computed": sum(it.computed for it in its)}, timers)
    return done


def main() -> None:
    stage_main("learn", run, "outputs/learn", images="outputs/hash/images.extxyz")


if __name__ == "__main__":
    main()
