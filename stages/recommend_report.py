"""The text of the recommend stage's report (report.md and report.html): the answer
first, then what to look at, the configuration types, every candidate and what the
columns mean."""

from pathlib import Path

from pipeline.core.report import Section
from pipeline.scores import recommendation as rec
from stages.schema import Config

BRIEF = ("rank", "source", "config_type", "quantity", "atoms", "weight", "needed_by", "target_share", "reason")
EVERY = ("rank", "recommendation", "source", "config_type", "quantity", "atoms", "weight", "selection_rank",
         "information_gain_nats", "dH_max", "ltau_max", "energy_z", "reason")
GLOSSARY = (
    "weight: how much of the configuration's data the target properties need (information matching; 0: not "
    "selected). needed_by: the target value whose uncertainty grows most without it, by sigma_factor. "
    "target_share: its part of the selection's information about the target. information_gain_nats: what its "
    "data at weight 1 tell about the target, in units of what the target needs (0: nothing). dH_max, dH_mean: how "
    "new its atoms' environments are to the reference set (QUESTS delta entropy, nats). ltau_max: the largest "
    "expected force error of its atoms (LTAU, eV/Å). energy_z: robust z-score of its energy per atom within its "
    "config_type. reduced_cost: 0 where the matching uses it, up to 1 where it adds nothing the target needs.",
)


def sections(records: list[dict], counts: dict, cfg: Config, png: Path, targets: dict[str, float]) -> list[Section]:
    by_kind = {k: [r for r in records if r["recommendation"] == k] for k in rec.ORDER}
    compute = by_kind[rec.COMPUTE]
    types = sorted({r["config_type"] or "(none)" for r in compute})
    how = ("ranked by the budgeted selection (select stage)" if any(r["selection_rank"] for r in compute)
           else "by information matching: the fewest data that pin down the target properties")
    target = ", ".join(f"{k} = {v:.4g}" for k, v in targets.items())
    out = [Section("The answer", (f"Compute {len(compute)} of {len(records)} candidates ({how}); configuration "
                                  f"types: {', '.join(types) or 'none'}.",
                                  f"The target properties, as the potential predicts them now: {target} "
                                  f"(target.properties: {', '.join(cfg.target.properties)}; set yours with "
                                  "`atomsieve compose target=...` or target.properties).",), BRIEF, tuple(compute))]
    if by_kind[rec.CHECK]:
        out.append(Section("Check these labels first", ("Their energies stand far from their configuration type's: "
                                                        "a wrong unit, a failed reference run or another energy "
                                                        "zero.",), BRIEF, tuple(by_kind[rec.CHECK])))
    if by_kind[rec.CONSIDER]:
        out.append(Section("Worth considering", ("Not needed by the target properties, but with environments the "
                                                 "rest of the data lack.",), BRIEF, tuple(by_kind[rec.CONSIDER])))
    if by_kind[rec.NO_INFORMATION]:
        out.append(Section("No information", ("Their data tell nothing about the parameters: do not compute them "
                                              "as they are.",), BRIEF, tuple(by_kind[rec.NO_INFORMATION])))
    out.append(Section("By configuration type", (), ("config_type", *rec.ORDER),
                       tuple({"config_type": k, **v} for k, v in counts.items()), png,
                       "Left: candidates of each type by recommendation. Right: each candidate's information about "
                       "the target against the newest environment it holds."))
    out.append(Section("Every candidate", (), EVERY, tuple(records)))
    out.append(Section("Reading the columns", GLOSSARY + not_run(cfg)))
    return out


def not_run(cfg: Config) -> tuple[str, ...]:
    notes = []
    if not cfg.selection.enabled:
        notes.append("The budgeted selection was not run (selection_rank blank): for exactly K configurations, "
                     "`atomsieve compose selection=information selection.budget=K`.")
    if not cfg.ltau.enabled:
        notes.append("LTAU was not run (ltau_max blank): it needs your model's training error logs (README, "
                     "'LTAU from your own training run').")
    return tuple(notes)


README_COLUMNS = ("rank", "configuration", "config_type", "quantity", "weight", "needed_by", "reason")


def readme_table(csv_text: str) -> str:
    """README's opening table: the configurations to compute, from recommendation.csv
    (tests/test_recommend.py keeps README equal to the committed run's)."""
    import csv
    import io

    from pipeline.core.report import markdown_table

    rows = [r for r in csv.DictReader(io.StringIO(csv_text)) if r["recommendation"] == rec.COMPUTE]
    records = [{"rank": r["rank"], "configuration": f"`{Path(r['source']).name}`", "config_type": r["config_type"],
                "quantity": r["quantity"], "weight": f"{float(r['weight']):.3g}", "needed_by": r["needed_by"],
                "reason": r["reason"]} for r in rows]
    return "\n".join(markdown_table(README_COLUMNS, records))
