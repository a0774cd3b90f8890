"""Config schemas: one frozen dataclass per Hydra group of ``conf/``.

Every default is defined here and only here; the YAML files under ``conf/`` set just
what a preset changes. This module imports nothing of the library, so that a stage's
code closure (and so its DVC deps) holds only what the stage runs; the checks of
option values live in :mod:`stages.validate` (run by ``atomsieve compose``) and in the
library functions that use each option. :func:`register` puts the schemas in Hydra's ConfigStore (as
``<group>/schema``); ``hydra_plugins/atomsieve_schema`` calls it so that DVC's own
Hydra composition (``dvc exp run -S``) sees them too.
"""

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf


@dataclass(frozen=True)
class DatasetConfig:
    paths: list[str] = MISSING  # extxyz, .traj or .db files, or globs, under root
    root: str = "data"  # the folder DVC tracks for the hash stage
    require: list[str] = field(default_factory=list)  # labels every frame must have
    test_fraction: float = 0.2
    seed: int = 0
    on_conflict: str = "error"  # error | drop
    min_distance: float = 0.5  # Å: closer atoms (or periodic images) are refused; the shortest bond, H2, is 0.74


@dataclass(frozen=True)
class DaskConfig:
    cluster: str = "local"  # local | address | ssh | slurm | pbs (pipeline/core/dask_backend.py)
    address: str | None = None  # cluster=address: a running scheduler, e.g. tcp://10.0.0.5:8786
    hosts: list[str] = field(default_factory=list)  # cluster=ssh: the first runs the scheduler, each one workers
    jobs: int = 1  # cluster=slurm|pbs: batch jobs to submit
    cluster_kwargs: dict[str, Any] = field(default_factory=dict)  # SSHCluster / SLURMCluster / PBSCluster arguments


@dataclass(frozen=True)
class RuntimeConfig:
    executor: str = "process"  # serial | process | dask
    workers: Any = "auto"  # auto: the batch system's allocation, else the affinity mask; or a count
    min_parallel_seconds: float = 2.0  # start-up cost of the workers: started only where they pay
    dask: DaskConfig = field(default_factory=DaskConfig)
    log_level: str = "INFO"


@dataclass(frozen=True)
class StoreConfig:
    path: str = ".atomsieve/store"


@dataclass(frozen=True)
class TransformConfig:
    type: str = "identity"  # identity | affine | log (information_matching.transform)
    a: list[float] = field(default_factory=list)  # affine y = a (x - x0) + b: 1, P or P*P values
    b: list[float] = field(default_factory=list)
    x0: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class PotentialConfig:
    type: str = "kim"  # kim | ase
    kim_id: str | None = None  # an installed KIM portable model
    species: list[str] = field(default_factory=list)
    calculator: str | None = None  # ASE calculator class, e.g. ase.calculators.lj.LennardJones
    calculator_kwargs: dict[str, Any] = field(default_factory=dict)
    parameters_optimize: dict[str, Any] = field(default_factory=dict)  # KLIFF format
    transform: TransformConfig = field(default_factory=TransformConfig)
    skin: float = 0.5  # Å, neighbour-list skin; speed only, never results


@dataclass(frozen=True)
class DerivativeConfig:
    method: str = "central"  # central | central4 | numdifftools
    rel_step: float = 1e-4  # step = max(rel_step * |theta|, min_step), transformed space
    min_step: float = 1e-6
    numdifftools: dict[str, Any] = field(default_factory=dict)  # options of numdifftools.Jacobian
    abs_step: float | None = None  # one absolute step instead of relative ones (Orchestrator: forward, 0.1)


@dataclass(frozen=True)
class FimConfig:
    quantity: str = "forces"  # energy | forces | stress
    quantity_key: str = "fim_quantity"  # an image's info key that overrides quantity
    mask_key: str | None = None  # a per-atom extxyz array of row weights
    mask_files: list[str] = field(default_factory=list)  # .txt/.npy: one per image, or one for all
    derivative: DerivativeConfig = field(default_factory=DerivativeConfig)


@dataclass(frozen=True)
class CovarianceConfig:
    """Exactly one of: a relative sigma (σ = relative · |value|), variances, or a matrix."""

    relative: Any = None  # a number; values are checked where they are used (pipeline/scores/property_fim.py)
    diagonal: Any = None  # a list of variances
    matrix: Any = None  # a list of rows


@dataclass(frozen=True)
class CubicPropertyConfig:
    """A property of a cubic crystal: ``lattice_constant`` (Å) or ``cohesive_energy`` (eV/atom)."""

    type: str = MISSING
    lattice: str = MISSING  # diamond | fcc | bcc
    species: str = MISSING
    covariance: CovarianceConfig = field(default_factory=CovarianceConfig)  # required: exactly one set
    a_guess: float | None = None  # Å, where the lattice-constant search starts; None: ASE's reference
    backend: str = "kimpy"  # kimpy | lammps (a cross-check)


@dataclass(frozen=True)
class ElasticConstantsConfig(CubicPropertyConfig):
    """``elastic_constants``: relaxed C11, C12, C44 (GPa)."""

    full: bool = False  # true is refused: see README


@dataclass(frozen=True)
class EnergyCurveConfig(CubicPropertyConfig):
    """``energy_curve``: E(a0 + Δa)/N − E(a0)/N (eV/atom) on a grid of Δa (Å)."""

    delta_range: list[float] = field(default_factory=lambda: [-0.5, 0.5])  # Å, about the zero-pressure a0
    points: int = 10  # evenly over delta_range; Δa = 0 (a change of 0 by definition) left out


@dataclass(frozen=True)
class PhononBandConfig(CubicPropertyConfig):
    """``phonon_band``: the lowest phonon branch (THz) from Γ (left out: 0 there) along a path."""

    path: str = "GX"  # GX | GK | GL: to that zone-boundary point of the cubic cell
    points: int = 8  # q-points after Γ
    supercell: int = 5  # odd repeats of the primitive cell for the force constants
    displacement: float = 0.01  # Å, of the force constants' central differences


PROPERTY_SCHEMAS = {"elastic_constants": ElasticConstantsConfig, "lattice_constant": CubicPropertyConfig,
                    "cohesive_energy": CubicPropertyConfig, "energy_curve": EnergyCurveConfig,
                    "phonon_band": PhononBandConfig}


@dataclass(frozen=True)
class FlatArgs:
    """``ltau.index: Flat`` (exact search) takes no arguments."""


@dataclass(frozen=True)
class HnswArgs:
    M: int = 32  # noqa: N815 - FAISS's names
    efConstruction: int = 64  # noqa: N815
    efSearch: int = 64  # noqa: N815


@dataclass(frozen=True)
class IvfpqArgs:
    nlist: int = 256
    m: int = 8  # sub-quantisers: must divide the descriptor dimension
    nbits: int = 8
    nprobe: int = 16


INDEX_ARGS = {"Flat": FlatArgs, "HNSW": HnswArgs, "IVFPQ": IvfpqArgs}


@dataclass(frozen=True)
class LammpsConfig:
    executable: str | None = None  # backend lammps: a path or a command on PATH (checked: LAMMPS with KIM); null: lmp


@dataclass(frozen=True)
class TargetConfig:
    # {name: {type, ...}}, each checked against PROPERTY_SCHEMAS[type] (typed_section)
    properties: dict[str, Any] = field(default_factory=dict)
    derivative: DerivativeConfig = field(default_factory=DerivativeConfig)
    lammps: LammpsConfig = field(default_factory=LammpsConfig)


@dataclass(frozen=True)
class MatchingConfig:
    candidates: str = "train"  # train | all: which images may be selected
    precondition: str = "balance"  # balance | max_frobenius | frobenius | none (pipeline/scores/matching.py)
    solver: str = "CLARABEL"  # CLARABEL | SCS | SDPA, or any installed cvxpy solver taking semidefinite constraints
    solver_options: dict[str, Any] = field(default_factory=dict)  # keywords of that solver (Orchestrator's solver_kwargs)
    weight_tol: float = 1e-4  # a weight below this times the largest is noise, dropped
    dual_tol: float = 1e-3  # a weight whose w >= 0 dual (reduced cost / cost) is not below this is noise, dropped
    weight_upper_bound: float | None = None
    weight_upper_bound_key: str | None = None  # an info key giving each candidate its own bound (npz: upper_bounds)
    max_violation: float = 1e-6  # share of the target's information the kept weights may miss in any direction


@dataclass(frozen=True)
class SoapConfig:
    """dscribe's SOAP (``descriptors.name: soap``)."""

    species: list[str] = field(default_factory=list)  # every element the data holds; fixes the feature layout
    r_cut: float = 5.0  # Å
    n_max: int = 8  # radial basis functions
    l_max: int = 6  # spherical harmonics degree
    sigma: float = 1.0  # Å, width of the atomic Gaussians
    rbf: str = "gto"  # gto | polynomial
    periodic: bool = True  # use each frame's cell and pbc


@dataclass(frozen=True)
class AcsfConfig:
    """dscribe's ACSF (``descriptors.name: acsf``): Behler-Parrinello symmetry functions."""

    species: list[str] = field(default_factory=list)
    r_cut: float = 6.0  # Å
    g2_params: list[list[float]] = field(default_factory=lambda: [[1.0, 0.0], [1.0, 2.0], [1.0, 4.0]])  # (η 1/Å², R_s Å)
    g3_params: list[float] = field(default_factory=list)  # κ (1/Å)
    g4_params: list[list[float]] = field(default_factory=lambda: [[0.005, 1.0, 1.0], [0.005, 1.0, -1.0]])  # (η, ζ, λ)
    g5_params: list[list[float]] = field(default_factory=list)  # (η, ζ, λ)
    periodic: bool = True


@dataclass(frozen=True)
class DescriptorConfig:
    name: str = "quests"  # quests | soap | acsf | array (pipeline.atoms.descriptors.DESCRIPTORS)
    k: int = 32  # quests: nearest neighbours
    cutoff: float = 5.0  # quests: Å
    key: str = "descriptors"  # array: the per-atom extxyz array every frame carries (Orchestrator's descriptors_key)
    soap: SoapConfig = field(default_factory=SoapConfig)
    acsf: AcsfConfig = field(default_factory=AcsfConfig)


@dataclass(frozen=True)
class QuestsConfig:
    bandwidth: float = 0.015  # Gaussian kernel bandwidth, in descriptor units (1/Å)
    method: str = "exact"  # exact | knn
    batch_size: int = 1024  # exact: rows per block (memory ~ 2 * 8 * batch_size^2 bytes per thread)
    knn_k: int = 32  # knn: nearest neighbours summed exactly per point
    knn_far_samples: int = 2048  # knn: reference points sampled per 256 queries for the rest; 0: truncate
    seed: int = 0  # knn: seed of the far-field samples
    reference: str = "train"  # train | all | a file of frames (their descriptors) | a .npy (N, d): what dH is against
    legacy_inf: bool = False  # dH = +inf where the plain kernel sum underflows (as the quests package)
    mask_key: str | None = None  # a per-atom array on every frame (Orchestrator: selection_mask): entropy, efficiency
    # and diversity of those environments only (Orchestrator's apply_mask); dH is still given for every atom


@dataclass(frozen=True)
class LtauConfig:
    enabled: bool = True  # false (conf ltau=disabled): the ltau stages write "not run"
    # the training atoms, the logs' columns; exactly one of: frames (their descriptors, by
    # descriptors.name), each an image of the dataset (its model's errors, not another's),
    # or a .npy (N, d) of their descriptors (Orchestrator's train_descriptors)
    train_images: str | None = None
    train_descriptors: str | None = None
    # their force errors; exactly one of: error_logs, fitted into PDFs here (nbins, range),
    # or pdfs with their bins, made elsewhere (Orchestrator's default, from_error_logs=False)
    error_logs: list[str] = field(default_factory=list)  # .npy (T, N) or (T, N, 3), eV/Å; several: an ensemble, pooled
    pdfs: str | None = None  # .npy (N, nbins): per training atom, the probability mass in each bin (rows sum to 1)
    bins: str | None = None  # .npy (nbins + 1,): the pdfs' bin edges in eV/Å, strictly increasing
    nbins: int = 100  # error_logs: bins of the fitted PDFs
    bin_spacing: str = "log"  # log | linear: geometric | arithmetic midpoints (and with error_logs, the bins)
    range: list[float] | None = None  # error_logs: [lo, hi], eV/Å; null: smallest positive (log) or smallest to largest
    index: str = "Flat"  # Flat | HNSW | IVFPQ (FAISS)
    index_args: dict[str, Any] = field(default_factory=dict)  # checked against INDEX_ARGS[index] (typed_section)
    k: int = 10  # nearest training atoms whose PDFs are averaged


@dataclass(frozen=True)
class LearnConfig:
    enabled: bool = False  # the loop runs only when asked (conf/experiment presets): it needs labelled data
    warmup: int = 1  # iterations before the weights accumulate (element-wise maximum)
    max_iterations: int = 10
    rtol: float = 1e-4  # accumulated weights equal to the previous ones within this: converged
    fit_method: str = "auto"  # auto (LM with enough residuals, else TRF) | lm | trf
    energy_shift: bool = True  # fit a per-atom energy offset beside the parameters (reference on another zero)
    max_nfev: int = 200  # residual evaluations per fit start
    truth_kim_id: str | None = None  # a reference KIM model whose target values the report compares against


@dataclass(frozen=True)
class SelectionConfig:
    enabled: bool = False  # runs only when asked (conf/selection presets): a budget is the user's to set
    objective: str = "information"  # information | target | diversity (pipeline/scores/selection.py)
    budget: int | None = 10  # candidates to choose; null with a cost_budget
    cost: str = "count"  # count | atoms | atoms3: the cost of a candidate (atoms³ ~ DFT)
    cost_budget: float | None = None  # total cost allowed, instead of a count (then budget: null)
    keep_key: str = "selection_keep"  # an image's info key: true keeps its candidates (already computed)
    epsilon: float = 1e-8  # information/target: ridge, relative to the mean tr(F)/P
    schedule: str = "auto"  # auto (explore, then anneal for seconds) | manual (t_max, t_min, steps)
    seconds: float = 10.0  # auto: annealing time
    t_max: float = 1.0  # manual
    t_min: float = 1e-4  # manual
    steps: int = 20000  # manual
    seed: int = 0


@dataclass(frozen=True)
class EnergyOutlierConfig:
    # |robust z| above which an image counts as an outlier: label errors (units, a failed run, another energy zero)
    # sit tens to thousands of robust sigma away, a type's natural spread (rattle amplitude, temperature) up to ~4.5
    threshold: float = 5.0


@dataclass(frozen=True)
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    potential: PotentialConfig = field(default_factory=PotentialConfig)
    fim: FimConfig = field(default_factory=FimConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    descriptors: DescriptorConfig = field(default_factory=DescriptorConfig)
    quests: QuestsConfig = field(default_factory=QuestsConfig)
    ltau: LtauConfig = field(default_factory=LtauConfig)
    energy_outlier: EnergyOutlierConfig = field(default_factory=EnergyOutlierConfig)
    learn: LearnConfig = field(default_factory=LearnConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    store: StoreConfig = field(default_factory=StoreConfig)


GROUPS = {"dataset": DatasetConfig, "potential": PotentialConfig, "fim": FimConfig, "target": TargetConfig,
          "matching": MatchingConfig, "descriptors": DescriptorConfig, "quests": QuestsConfig,
          "ltau": LtauConfig, "energy_outlier": EnergyOutlierConfig, "learn": LearnConfig, "selection": SelectionConfig,
          "runtime": RuntimeConfig, "store": StoreConfig}


def mergeable(schema) -> DictConfig:
    """The schema as a typed config that YAML and overrides can be merged into.

    OmegaConf marks frozen dataclasses read-only, which forbids composition; the frozen
    dataclass is what :func:`OmegaConf.to_object` returns at the end."""
    cfg = OmegaConf.structured(schema)
    _writable(cfg)
    return cfg


def _writable(node) -> None:
    OmegaConf.set_readonly(node, False)
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    for key in keys:
        child = node._get_node(key)  # the raw node: MISSING values are not resolved
        if isinstance(child, (DictConfig, ListConfig)) and not child._is_missing():
            _writable(child)


def typed_section(schema, raw, where: str):
    """``raw`` (a mapping) checked against the dataclass ``schema``, its defaults filled
    in: the frozen dataclass, or :class:`ConfigError` naming ``where`` and the key."""
    from omegaconf.errors import OmegaConfBaseException

    from pipeline.core.errors import ConfigError

    try:
        return OmegaConf.to_object(OmegaConf.merge(mergeable(schema), OmegaConf.create(dict(raw))))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", "") or ""
        raise ConfigError(f"{where}{'.' + key if key else ''}: {str(err).splitlines()[0]} "
                          f"(expected the keys of {schema.__name__}: {[f for f in schema.__dataclass_fields__]})") from err


def register() -> None:
    """Store every group schema in Hydra's ConfigStore as ``<group>/schema``."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for group, schema in GROUPS.items():
        cs.store(group=group, name="schema", node=mergeable(schema))
