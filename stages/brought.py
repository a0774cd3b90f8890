"""``atomsieve match`` and ``atomsieve select``: on FIM files a user has, without a pipeline.

``atomsieve match --fims F --target T --out DIR [matching.KEY=VALUE ...]`` reads the
candidates and the target in any form :mod:`pipeline.scores.brought_fims` reads
(Orchestrator's FIMTrainingSetScore extxyz and FIMPropertyScore json, a .npz and a
.npy, atomsieve's own outputs) and writes what the ``match`` stage writes, all or
none: weights.json keyed by the candidates' ids, weights.csv, metrics.json,
summary.json (which says where each input came from), weights.png, spectra.png and,
where the FIMs came with structures, candidates.extxyz with Orchestrator's
``fim_matching_weight_score`` on every frame and selected.extxyz.

``atomsieve select --fims F --target T --out DIR [--descriptors D] [selection.KEY=VALUE
matching.KEY=VALUE quests.bandwidth=H ...]`` is the ``select`` stage on such files: a
budget of exactly ``selection.budget`` candidates by annealing, beside its baselines.
"""
from pathlib import Path
from types import SimpleNamespace

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.core.errors import ConfigError
from stages import overrides as recorded
from stages.common import check_finite, setup_logging
from stages.schema import MatchingConfig, QuestsConfig, SelectionConfig, mergeable


def group_configs(overrides: list[str], groups: dict, command: str, params: Path | None = None) -> dict:
    """``{group: its config}``: the defaults, updated by the group's section of the YAML
    file ``params`` if given (a params.yaml; its other sections do not apply here), then
    by ``GROUP.KEY=VALUE`` overrides of ``groups`` (any other key refused: it would change
    nothing here, and saying nothing would hide that)."""
    sections = _sections(params, command) if params is not None else {}
    others = [o for o in overrides if "=" not in o or o.lstrip("+").split(".", 1)[0] not in groups]
    if others:
        raise ConfigError(f"atomsieve {command}: expected overrides {'|'.join(groups)}.KEY=VALUE (e.g. "
                          f"matching.solver=SDPA), got {others}")
    for override in overrides:
        twice = recorded.duplicate_keys(override)
        if twice:
            raise ConfigError(f"atomsieve {command}: {override!r} gives the key {twice[0]!r} twice; give it once")
    keys = [o.split("=", 1)[0] for o in overrides]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"atomsieve {command}: a key is given twice in {overrides}; give each once")
    out = {}
    for group, schema in groups.items():
        mine = [o.lstrip("+").split(".", 1)[1] for o in overrides if o.lstrip("+").split(".", 1)[0] == group]
        try:
            merged = OmegaConf.merge(mergeable(schema), sections.get(group) or {}, OmegaConf.from_dotlist(mine))
            check_finite(OmegaConf.to_container(merged), f"atomsieve {command}")
            out[group] = OmegaConf.to_object(merged)
        except OmegaConfBaseException as err:
            raise ConfigError(f"atomsieve {command}: {str(err).splitlines()[0]} (key: {group}."
                              f"{getattr(err, 'full_key', '?')})") from None
    return out


def _sections(params: Path, command: str) -> dict:
    import yaml

    try:
        loaded = OmegaConf.to_container(OmegaConf.load(params))
    except FileNotFoundError:
        raise ConfigError(f"atomsieve {command} --params {params}: no such file") from None
    except (yaml.YAMLError, OmegaConfBaseException) as err:
        raise ConfigError(f"atomsieve {command} --params {params}: not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"atomsieve {command} --params {params}: expected a mapping of sections, got "
                          f"{type(loaded).__name__}")
    return loaded


def matching_config(overrides: list[str], params: Path | None = None) -> MatchingConfig:
    return group_configs(overrides, {"matching": MatchingConfig}, "match", params)["matching"]


def match_files(fims: Path, target: Path, out: Path, overrides: list[str], log_level: str = "INFO",
                params: Path | None = None) -> dict:
    """Run matching on the files (options: ``params``' matching section, then
    ``overrides``); the summary it wrote."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from stages.match import write

    m = matching_config(overrides, params)
    setup_logging(log_level)
    with logging_redirect_tqdm():
        return write(m, out, fims, target)


def select_files(fims: Path, target: Path, out: Path, descriptors: Path | None, overrides: list[str],
                 log_level: str = "INFO", params: Path | None = None) -> dict:
    """Run the select stage on the files (``selection.enabled`` implied); the summary."""
    from dataclasses import replace

    from tqdm.contrib.logging import logging_redirect_tqdm

    from stages.select import run

    groups = group_configs(overrides, {"selection": SelectionConfig, "matching": MatchingConfig,
                                       "quests": QuestsConfig}, "select", params)
    cfg = SimpleNamespace(**{**groups, "selection": replace(groups["selection"], enabled=True)})
    if descriptors is not None:  # a file the user named must be used, or said not to be
        from pipeline.core.errors import InputError
        from pipeline.core.outputs import IMAGE_HASH
        from stages.match import load

        if not descriptors.exists():
            raise InputError(f"--descriptors {descriptors}: no such file")
        frames = load(cfg.matching, fims)[0].frames
        if frames is None or not all(IMAGE_HASH.key in a.info for a in frames):
            raise InputError(f"--descriptors {descriptors}: atomsieve's descriptors are matched to frames by their "
                             f"info {IMAGE_HASH.key!r}, and {fims} has {'no frames' if frames is None else 'none'}; "
                             "leave --descriptors out (frames with a per-atom 'descriptors' array are described by it)")
    setup_logging(log_level)
    with logging_redirect_tqdm():
        return run(cfg, out, fims, target, descriptors)
