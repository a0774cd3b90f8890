"""Stage ``select``: exactly ``selection.budget`` candidates (or a cost budget), by
simulated annealing of ``selection.objective`` (pipeline/scores/selection.py), beside
the baselines computed in the same run: greedy forward selection, information
matching's weights rounded to the top K, and scikit-matter's farthest-point sampling
on the candidates' mean descriptors.

The candidates are ``matching.candidates`` (the train split, or all). Inputs ``--fims`` (outputs/fim_train/fims.extxyz), ``--target``
(outputs/fim_property/fim_property.json) and ``--descriptors``
(outputs/descriptors/descriptors.npz), or FIMs from elsewhere as ``match`` reads them
(``atomsieve select`` on files: without structures, the candidates are counted, not
weighed by atoms, the farthest-point baseline is left out and summary.json names the
selection by id). Outputs in ``--out`` (outputs/select), all or
none: selected.extxyz (info ``selection_rank``: 1 is the candidate whose removal costs
the objective most), metrics.json, objective.png with its data in objective.csv, and
summary.json. Ctrl-C (SIGINT) while annealing stops it with the best subset found;
the outputs are written for it (``interrupted: true``, ``stopped_by: SIGINT``) to look
at, but the stage exits non-zero, so DVC does not record a partial answer as the result:
run it again. A time-limited answer is asked for with ``selection.schedule: auto`` and
``selection.seconds``: that one is the result, and says so (``stopped_by: time limit``).
"""

import logging
from pathlib import Path

import numpy as np

from pipeline.core import annealing, extxyz, plots
from pipeline.core.atomic import staged
from pipeline.core.errors import ConfigError, Interrupted, check_choice
from pipeline.core.outputs import DESCRIPTORS, IMAGE_HASH, SELECTION_RANK
from pipeline.core.timing import Timers
from pipeline.scores import selection as sel
from pipeline.scores.brought_fims import check_pair, read_target
from pipeline.scores.matching import match
from stages.common import (
    as_dict,
    json_bytes,
    load_descriptors,
    matching_options,
    reproducible,
    stage_main,
    write_summary,
)
from stages.match import load
from stages.schema import Config

log = logging.getLogger(__name__)
OUTPUTS = ("selected.extxyz", "metrics.json", "objective.png", "objective.csv", "summary.json")


def objective_of(cfg: Config, fims, target, per_image):
    s = cfg.selection
    check_choice("selection.objective", s.objective, sel.OBJECTIVES)
    if s.objective == "diversity":
        return sel.Diversity(per_image, cfg.quests.bandwidth)
    return sel.Information(fims, s.epsilon, target if s.objective == "target" else None)


def schedule_of(cfg: Config, p, objective, start) -> annealing.Schedule:
    s = cfg.selection
    check_choice("selection.schedule", s.schedule, sel.SCHEDULES)
    if s.schedule == "manual":
        return annealing.Schedule(s.t_max, s.t_min, s.steps, 100)
    return annealing.auto_schedule(start, objective.energy, sel.move(p), s.seconds, s.seed, objective.delta,
                                   max_steps=sel.enough_steps(p))


def disabled(cfg: Config, out: Path) -> dict:
    """``selection.enabled: false``: every output, saying the stage was not asked to run."""
    with staged([out / name for name in OUTPUTS]) as (t_xyz, t_metrics, t_png, t_csv, t_summary):
        t_xyz.write_bytes(b"")
        t_metrics.write_bytes(json_bytes({"enabled": False}))
        plots.note(t_png, "Budgeted selection", "Not run: choose a preset and a budget, e.g.\n"
                   "atomsieve compose selection=information selection.budget=20")
        t_csv.write_text("step,temperature,current,best,acceptance\n")
        return write_summary(t_summary, "select", as_dict(cfg.selection), {"enabled": False}, Timers())


def run(cfg: Config, out: Path, fims: Path, target: Path, descriptors: Path | None) -> dict:
    if not cfg.selection.enabled:
        return disabled(cfg, out)
    s, timers = cfg.selection, Timers()
    cands, _, _ = load(cfg.matching, fims)
    goal = read_target(target)
    for note in check_pair(cands, goal, fims, target):
        log.warning(note)
    rows, f, f_target = cands.frames, cands.fims, goal.fim
    per_image = environments(cands, descriptors)
    if per_image is None and s.objective == "diversity":
        raise ConfigError(f"selection.objective=diversity needs each candidate's environments: {fims} holds FIMs "
                          "only; give frames with descriptors, or choose information or target")
    keep = [i for i, a in enumerate(rows or []) if bool(a.info.get(s.keep_key, False))]
    sel.check_options(s.budget, s.cost, s.cost_budget)
    if rows is None and s.cost != "count":
        raise ConfigError(f"selection.cost={s.cost} counts atoms, and {fims} holds FIMs without structures; "
                          "use selection.cost=count")
    p = sel.problem(len(f), s.budget, sel.costs_of([len(a) for a in rows] if rows else [1] * len(f), s.cost),
                    s.cost_budget, keep)
    objective = objective_of(cfg, f, f_target, per_image)
    with timers("baselines"):
        baselines = {"greedy": sel.greedy(p, objective)}
        if per_image is not None:
            baselines["fps"] = sel.top_k(p, sel.fps_order(np.stack([x.mean(axis=0) for x in per_image]),
                                                          keep[0] if keep else 0))
        else:
            log.info("no descriptors for %s: the farthest-point-sampling baseline is left out", fims)
        weights = match(f, f_target, **matching_options(cfg.matching)).weights
        baselines["matching_top_k"] = sel.top_k(p, list(np.argsort(-weights, kind="stable")))
    with timers("schedule"):
        schedule = schedule_of(cfg, p, objective, baselines["greedy"])
    with timers("anneal"):
        start = baselines["greedy"]
        done = annealing.anneal(start, objective.energy, sel.move(p), schedule, s.seed, objective.delta,
                                desc=f"selecting ({s.objective})")
    best = done.state if done.energy <= objective.energy(start) else start
    scores = {name: objective.score(state) for name, state in baselines.items()}
    scores["annealing"] = objective.score(best)
    rank = _ranks(best, objective)
    better = "lower" if s.objective == "target" else "higher"
    log.info("selected %s (by rank): %s %.6g by annealing; baselines %s (%s is better)",
             ", ".join(cands.ids[i] for _, i in sorted((r, i) for i, r in rank.items())), s.objective,
             scores["annealing"], ", ".join(f"{k} {v:.6g}" for k, v in scores.items() if k != "annealing"), better)
    chosen = []
    for r, i in sorted((r, i) for i, r in rank.items()) if rows is not None else ():
        atoms = rows[i].copy()
        atoms.info[SELECTION_RANK.key] = r
        chosen.append(atoms)
    metrics = {"enabled": True, "objective": s.objective, "selected": len(best), "cost": float(p.costs[list(best)].sum()),
               "interrupted": done.interrupted, "stopped_by": done.reason or "schedule",
               **{f"objective_{k}": v for k, v in scores.items()},
               "kept": len(keep), "candidates": len(f)}
    with staged([out / name for name in OUTPUTS]) as (t_xyz, t_metrics, t_png, t_csv, t_summary):
        extxyz.write(t_xyz, chosen)
        t_metrics.write_bytes(json_bytes(reproducible(metrics)))
        sign = 1.0 if s.objective == "target" else -1.0  # score = sign × energy
        plots.annealing(done.trace, {k: v for k, v in scores.items() if k != "annealing"}, sign,
                        _label(s.objective), t_png, t_csv)
        counts = {"candidates": len(f), "selected": len(best), "steps": done.steps, "t_max": schedule.t_max,
                  "t_min": schedule.t_min}
        done_summary = write_summary(t_summary, "select", as_dict(s), counts, timers,
                                     {"selected": [cands.ids[i] for i in best],
                                      "selection_rank": {cands.ids[i]: r for i, r in sorted(rank.items())}})
    if done.reason == "SIGINT":
        raise Interrupted(f"select: stopped by Ctrl-C after {done.steps} steps; the best selection found so far is in "
                          f"{out} to look at, but DVC does not record it as the result: run `dvc repro select` again "
                          "(for an answer within a time limit: selection.schedule=auto, selection.seconds=N)")
    return done_summary


def environments(cands, descriptors: Path | None) -> list[np.ndarray] | None:
    """Each candidate's environments (n_atoms, d): from atomsieve's descriptors.npz by
    image hash, or from the frames' own per-atom ``descriptors`` (Orchestrator's key);
    None where there are none (FIMs without structures, or no descriptors given)."""
    rows = cands.frames
    if rows is None:
        return None
    if descriptors is not None and all(IMAGE_HASH.key in a.info for a in rows):
        return load_descriptors(descriptors, [a.info[IMAGE_HASH.key] for a in rows])
    if all(DESCRIPTORS.key in a.arrays for a in rows):
        return [np.asarray(a.arrays[DESCRIPTORS.key], dtype=float) for a in rows]
    return None


def _ranks(state, objective) -> dict[int, int]:
    """1 for the candidate whose removal raises the energy most, and so on."""
    if len(state) == 1:
        return {state[0]: 1}
    e = objective.energy(state)
    loss = {i: objective.energy(tuple(j for j in state if j != i)) - e for i in state}
    return {i: r + 1 for r, i in enumerate(sorted(state, key=lambda i: (-loss[i], i)))}


def _label(objective: str) -> str:
    return {"information": "log det(Σ F + εI)  (higher: more information)",
            "target": "λ_max((Σ F + εI)⁻¹ F_target)  (lower: closer to the target)",
            "diversity": "QUESTS entropy H (nats; higher: more diverse)"}[objective]


def main() -> None:
    stage_main("select", run, "outputs/select", fims="outputs/fim_train/fims.extxyz",
               target="outputs/fim_property/fim_property.json", descriptors="outputs/descriptors/descriptors.npz")


if __name__ == "__main__":
    main()
