"""Every key a stage writes on configurations or atoms, or as a dataset score, declared
once: what it is attached to, its shape, unit and meaning (as ASE's ``ase/outputs.py``
declares calculator results). Keys are Orchestrator's where it has one, so its users
read atomsieve's outputs with the code they have. README's output table is made from
this list (tests/test_outputs.py keeps them equal).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Output:
    key: str
    per: str  # image | candidate | atom | dataset
    shape: str
    unit: str
    meaning: str
    stage: str  # the stage that writes it, and where


IMAGE_HASH = Output("image_hash", "image", "string", "", "identity of the structure (`v1-` + 40 hex digits)",
                    "hash: images.extxyz info")
SOURCE = Output("source", "image", "string", "", "`file@frame` of its first occurrence", "hash: images.extxyz info")
SPLIT = Output("split", "image", "string", "", "`train` or `test`", "hash: images.extxyz info")
CANDIDATE = Output("candidate", "candidate", "string", "", "`<image_hash>:<quantity>[:<mask digest>]`",
                   "fim_train: fims.extxyz info")
FIM_QUANTITY = Output("fim_quantity", "candidate", "string", "", "the quantity of its FIM: energy, forces or stress",
                      "fim_train: fims.extxyz info")
FIM_PARAMETERS = Output("fim_parameters", "candidate", "string", "",
                        "the FIM's rows and columns, `name:extent` comma-separated", "fim_train: fims.extxyz info")
FIM_TRAINING_SET_SCORE = Output("fim_training_set_score", "candidate", "(P, P)", "(quantity unit / θ unit)²",
                                "Fisher information of the candidate in the transformed parameters θ",
                                "fim_train: fims.extxyz info, fims.npz `fim`")
FIM_PROPERTY_SCORE = Output("fim_property_score", "dataset", "(P, P)", "1 / (θ unit)²",
                            "Fisher information of the target properties", "fim_property: fim_property.json")
FIM_MATCHING_WEIGHT_SCORE = Output("fim_matching_weight_score", "candidate", "scalar", "",
                                   "weight of the candidate's data in the matched training set (0: not selected)",
                                   "match: candidates.extxyz, selected.extxyz info; learn: selected.extxyz info "
                                   "(accumulated over iterations)")
FIM_MATCHING_REDUCED_COST = Output("fim_matching_reduced_cost", "candidate", "scalar", "",
                                   "the dual of its w ≥ 0 constraint over its cost: 0 where the matching uses it, "
                                   "up to 1 for a candidate that adds nothing the target needs",
                                   "match: candidates.extxyz info")
SELECTION_RANK = Output("selection_rank", "candidate", "integer", "",
                        "rank in the budgeted selection: 1 is the candidate whose removal costs the objective most",
                        "select: selected.extxyz info")
LEARN_ITERATION = Output("learn_iteration", "candidate", "integer", "",
                         "the first iteration of the active-learning loop that selected the candidate",
                         "learn: selected.extxyz info")
DESCRIPTORS = Output("descriptors", "atom", "(d,)", "descriptor units",
                     "the atom's descriptor (QUESTS: 2k − 1 values in 1/Å; or soap, acsf, or the data's own array)",
                     "descriptors: descriptors.extxyz array, descriptors.npz")
QUESTS_DELTA_ENTROPY_SCORE = Output("quests_delta_entropy_score", "atom", "scalar", "nats",
                                    "dH: how new the environment is to the reference set",
                                    "quests: delta_entropy.extxyz array")
QUESTS_DELTA_ENTROPY_STDERR = Output("quests_delta_entropy_stderr", "atom", "scalar", "nats",
                                     "sampling standard error of dH (0 where exact; the truncation bound where "
                                     "the sample is too sparse for one)", "quests: delta_entropy.extxyz array")
QUESTS_EFFICIENCY_SCORE = Output("quests_efficiency_score", "dataset", "scalar", "",
                                 "entropy / ln N: 1 when no two environments overlap", "quests: metrics.json")
QUESTS_DIVERSITY_SCORE = Output("quests_diversity_score", "dataset", "scalar", "nats",
                                "D = ln Σ 1/p(x_i): the log effective number of distinct environments",
                                "quests: metrics.json")
LTAU_FORCES_UQ_SCORE = Output("ltau_forces_uq_score", "atom", "scalar", "eV/Å",
                              "expected force error from the nearest training atoms' error distributions",
                              "ltau: uncertainty.extxyz array")

ENERGY_OUTLIER_SCORE = Output("energy_outlier_score", "image", "scalar", "",
                              "robust z-score of the energy per atom (|z| > threshold: look before training)",
                              "energy_outlier: scores.json")

CONFIG_TYPE = "config_type"  # the data's own info key naming a configuration's kind (extxyz convention), if any


def candidate_id(image_hash: str, quantity: str, mask_digest: str | None) -> str:
    """A candidate's id, the value of ``candidate``: ``<image_hash>:<quantity>[:<mask digest>]``."""
    return f"{image_hash}:{quantity}" + (f":{mask_digest}" if mask_digest else "")


def mask_of(candidate: str) -> str | None:
    """The mask digest in a candidate id, or None for an unmasked candidate."""
    parts = candidate.split(":")
    return parts[2] if len(parts) > 2 else None


OUTPUTS = (IMAGE_HASH, SOURCE, SPLIT, CANDIDATE, FIM_QUANTITY, FIM_PARAMETERS, FIM_TRAINING_SET_SCORE,
           FIM_PROPERTY_SCORE, FIM_MATCHING_WEIGHT_SCORE, FIM_MATCHING_REDUCED_COST, LEARN_ITERATION, SELECTION_RANK, DESCRIPTORS, QUESTS_DELTA_ENTROPY_SCORE,
           QUESTS_DELTA_ENTROPY_STDERR, QUESTS_EFFICIENCY_SCORE, QUESTS_DIVERSITY_SCORE, LTAU_FORCES_UQ_SCORE, ENERGY_OUTLIER_SCORE)


def table() -> str:
    """The README's output table, in Markdown."""
    rows = ["| key | per | shape | unit | meaning | written by |", "| --- | --- | --- | --- | --- | --- |"]
    rows += [f"| `{o.key}` | {o.per} | {o.shape} | {o.unit or '—'} | {o.meaning} | {o.stage} |" for o in OUTPUTS]
    return "\n".join(rows)
