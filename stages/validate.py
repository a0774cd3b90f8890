"""Every check a stage will make of its options, made at once when ``atomsieve
compose`` writes params.yaml, so that a bad config fails at compose time with the key
named, not minutes later in one stage.

Stages do not import this module (it imports the whole library, which would put every
library module in every stage's code closure); each library function checks the
options it uses, with the same messages.
"""

import json
from pathlib import Path

from pipeline.atoms.dataset import LABELS, ON_CONFLICT, expand_paths, format_of, read_frames
from pipeline.atoms.descriptors import DESCRIPTORS, check_settings
from pipeline.atoms.hashing import image_hashes
from pipeline.core.annealing import Schedule, check_schedule
from pipeline.core.dask_backend import check as dask_check
from pipeline.core.errors import ConfigError, check_choice
from pipeline.core.executors import EXECUTORS
from pipeline.core.store import check_place
from pipeline.models import parameters
from pipeline.models.derivatives import METHODS, numdifftools_jacobian
from pipeline.models.potential import POTENTIALS, QUANTITIES, make_potential
from pipeline.models.transforms import TRANSFORMS
from pipeline.scores import selection
from pipeline.scores.entropy import METHODS as ENTROPY_METHODS
from pipeline.scores.entropy import check_bandwidth
from pipeline.scores.learn import FIT_METHODS, check_loop
from pipeline.scores.ltau import INDEXES, SPACINGS, check_k, check_training_images
from pipeline.scores.matching import CANDIDATES, PRECONDITIONS, SOLVERS, check_options
from pipeline.scores.property_fim import check_species
from stages.common import LOG_LEVELS
from stages.described import descriptor_args
from stages.ltau_fit import error_source, training_source
from stages.models import index_args_of, potential_of, targets_of
from stages.runtime import dask_of, workers_of
from stages.schema import Config

CHOICES = {  # option -> allowed values
    ("dataset", "on_conflict"): ON_CONFLICT,
    ("runtime", "executor"): EXECUTORS,
    ("runtime", "log_level"): LOG_LEVELS,
    ("potential", "type"): tuple(POTENTIALS),
    ("fim", "quantity"): QUANTITIES,
    ("matching", "candidates"): CANDIDATES,
    ("matching", "precondition"): PRECONDITIONS,
    ("matching", "solver"): SOLVERS,
    ("descriptors", "name"): tuple(DESCRIPTORS),
    ("quests", "method"): ENTROPY_METHODS,
    ("ltau", "bin_spacing"): SPACINGS,
    ("ltau", "index"): INDEXES,
    ("learn", "fit_method"): FIT_METHODS,
    ("selection", "objective"): selection.OBJECTIVES,
    ("selection", "schedule"): selection.SCHEDULES,
}


def validate(cfg: Config) -> Config:
    """Check every option of ``cfg`` as the stages will; return it unchanged."""
    for (group, key), allowed in CHOICES.items():
        check_choice(f"{group}.{key}", getattr(getattr(cfg, group), key), allowed)
    for label in cfg.dataset.require:
        check_choice("dataset.require", label, LABELS)
    check_choice("potential.transform.type", cfg.potential.transform.type, TRANSFORMS)
    check_choice("fim.derivative.method", cfg.fim.derivative.method, METHODS)
    check_choice("target.derivative.method", cfg.target.derivative.method, METHODS)
    if not cfg.potential.skin >= 0:
        raise ConfigError(f"potential.skin: expected a length >= 0 Å, got {cfg.potential.skin}")
    spec = parameters.parse(cfg.potential.parameters_optimize)
    model = make_potential(potential_of(cfg.potential))
    spec.check(model.parameter_extents(), cfg.potential.kim_id or cfg.potential.calculator)
    spec.check_defaults(model.defaults)
    if cfg.target.properties:
        check_species(targets_of(cfg.target.properties, cfg.target.lammps.executable), potential_of(cfg.potential))
    m = cfg.matching
    check_options(m.weight_tol, m.max_violation, m.weight_upper_bound, m.dual_tol)
    check_settings(*descriptor_args(cfg.descriptors))
    check_bandwidth(cfg.quests.bandwidth)
    if cfg.ltau.enabled:
        training_source(cfg.ltau)
        error_source(cfg.ltau)
        check_k(cfg.ltau.k)
    check_loop(cfg.learn.warmup, cfg.learn.max_iterations, cfg.learn.rtol)
    s = cfg.selection
    selection.check_options(s.budget, s.cost, s.cost_budget)
    check_schedule(Schedule(s.t_max, s.t_min, s.steps, 1) if s.schedule == "manual" else Schedule(2.0, 1.0, 1, 1))
    if s.schedule == "auto" and not s.seconds > 0:
        raise ConfigError(f"selection.seconds: expected a time > 0 s, got {s.seconds}")
    if cfg.ltau.enabled:
        index_args_of(cfg.ltau.index, cfg.ltau.index_args)
    if cfg.fim.derivative.method == "numdifftools":
        numdifftools_jacobian(None, json.dumps(cfg.fim.derivative.numdifftools))
    workers_of(cfg.runtime.workers)
    if cfg.runtime.executor == "dask":
        dask_check(dask_of(cfg.runtime.dask))
    if cfg.dataset.min_distance < 0:
        raise ConfigError(f"dataset.min_distance: expected a distance >= 0 Å (0: no check), got {cfg.dataset.min_distance}")
    store = Path(cfg.store.path).expanduser()
    check_place(store)
    if store.exists() and not store.is_dir():
        raise ConfigError(f"store.path: {store} is a file; expected a folder (made on first use)")
    check_root(cfg.dataset.root)
    files(cfg)
    check_data(cfg)
    return cfg


def check_root(root: str) -> None:
    """DVC tracks dataset.root as a dependency of the stages: it cannot hold their outputs."""
    if (Path.cwd() / "outputs").resolve().is_relative_to(Path(root).resolve()):
        raise ConfigError(f"dataset.root: {root!r} holds the pipeline's outputs/, so DVC would see a stage's outputs "
                          "among its own dependencies; keep the data in a folder of their own (the default: data)")


COMPOSE_READS = 50e6  # bytes: datasets up to this size are read at compose time (larger: checked by the stages)


def check_data(cfg: Config) -> None:
    """What the stages check of the data against the config, at compose time: every
    element is one the potential computes, and LTAU's training images are the
    dataset's. Datasets past COMPOSE_READS bytes are left to the stages."""
    paths = expand_paths(cfg.dataset.paths, cfg.dataset.root, "dataset.paths")
    if sum(p.stat().st_size for p in paths) > COMPOSE_READS:
        return
    frames = [a for p in paths for a in read_frames(p)]
    if cfg.potential.type == "kim":
        allowed = set(cfg.potential.species)
        extra = sorted({s for a in frames for s in a.get_chemical_symbols()} - allowed)
        if extra:
            raise ConfigError(f"dataset.paths: the data hold {extra}, which potential.species {sorted(allowed)} "
                              f"({cfg.potential.kim_id}) does not compute")
    if cfg.ltau.enabled and cfg.ltau.train_images is not None:
        path, = expand_paths([cfg.ltau.train_images], cfg.dataset.root, "ltau.train_images")
        check_training_images(image_hashes(read_frames(path)), image_hashes(frames), f"ltau.train_images={path}")


def files(cfg: Config) -> list[Path]:
    """Every file a param names; each must exist and lie under ``dataset.root`` (what DVC
    tracks)."""
    root = cfg.dataset.root
    out = expand_paths(cfg.dataset.paths, root, "dataset.paths")
    for path in out:
        format_of(path)
    out += expand_paths(cfg.fim.mask_files, root, "fim.mask_files")
    if cfg.quests.reference not in ("train", "all"):
        out += expand_paths([cfg.quests.reference], root, "quests.reference")
    if not cfg.ltau.enabled:
        return out
    out += expand_paths([v for v in (cfg.ltau.train_images,) if v is not None], root, "ltau.train_images")
    out += expand_paths([v for v in (cfg.ltau.train_descriptors,) if v is not None], root, "ltau.train_descriptors")
    out += expand_paths([v for v in (cfg.ltau.pdfs,) if v is not None], root, "ltau.pdfs")
    out += expand_paths([v for v in (cfg.ltau.bins,) if v is not None], root, "ltau.bins")
    return out + expand_paths(cfg.ltau.error_logs, root, "ltau.error_logs")
