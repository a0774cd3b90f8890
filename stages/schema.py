"""Config schemas: one frozen dataclass per Hydra group of ``conf/``.

Every default is defined here and only here; the YAML files under ``conf/`` set just
what a preset changes. :func:`register` puts the schemas in Hydra's ConfigStore (as
``<group>/schema``); ``hydra_plugins/atomsieve_schema`` calls it so that DVC's own
Hydra composition (``dvc exp run -S``) sees them too.
"""

from dataclasses import dataclass, field

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from pipeline.dataset import LABELS, ON_CONFLICT
from pipeline.errors import check_choice
from pipeline.executors import EXECUTORS


@dataclass(frozen=True)
class DatasetConfig:
    paths: list[str] = MISSING  # extxyz, .traj or .db files, or globs, under root
    root: str = "data"  # the folder DVC tracks for the hash stage
    require: list[str] = field(default_factory=list)  # labels every frame must have
    test_fraction: float = 0.2
    seed: int = 0
    on_conflict: str = "error"  # error | drop


@dataclass(frozen=True)
class DaskConfig:
    address: str | None = None  # e.g. tcp://10.0.0.5:8786; None: a local cluster


@dataclass(frozen=True)
class RuntimeConfig:
    executor: str = "process"  # serial | process | dask
    workers: int = 0  # 0: one per core
    dask: DaskConfig = field(default_factory=DaskConfig)
    log_level: str = "INFO"


@dataclass(frozen=True)
class StoreConfig:
    path: str = ".atomsieve/store"


@dataclass(frozen=True)
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    store: StoreConfig = field(default_factory=StoreConfig)


CHOICES = {  # option -> allowed values, checked whenever a config is loaded
    ("dataset", "on_conflict"): ON_CONFLICT,
    ("runtime", "executor"): EXECUTORS,
    ("runtime", "log_level"): ("DEBUG", "INFO", "WARNING", "ERROR"),
}

GROUPS = {"dataset": DatasetConfig, "runtime": RuntimeConfig, "store": StoreConfig}


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


def register() -> None:
    """Store every group schema in Hydra's ConfigStore as ``<group>/schema``."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for group, schema in GROUPS.items():
        cs.store(group=group, name="schema", node=mergeable(schema))


def validate(cfg: Config) -> Config:
    """Check every option with a fixed set of values; return ``cfg``."""
    for (group, key), allowed in CHOICES.items():
        check_choice(f"{group}.{key}", getattr(getattr(cfg, group), key), allowed)
    for label in cfg.dataset.require:
        check_choice("dataset.require", label, LABELS)
    return cfg
