"""The project's own overrides, applied on every route that composes params.yaml.

``atomsieve compose OVERRIDES...`` records its overrides in ``conf/overrides.yaml``
(tracked by git), and every Hydra composition of ``conf/`` reads them: atomsieve's
own, ``dvc exp run -S`` in the workspace, queued experiments (composed when queued)
and ``--temp`` runs. Overrides given to that composition (``-S``) come after the
recorded ones and win for the same key; so a sweep varies what it names and keeps the
user's data, potential and everything else they composed.

Two rules of Hydra's composition are changed here, by the Hydra plugin of this
repository (``hydra_plugins/atomsieve_schema``, loaded by DVC and by atomsieve):

- where the primary config directory holds ``overrides.yaml``, its overrides are put
  before the given ones;
- ``key={...}`` (and ``++key={...}``) on a dict-valued key (``parameters_optimize``,
  ``target.properties``, ``calculator_kwargs``, ``index_args``, covariances, ...)
  replaces the dict instead of merging into the preset's, so it sets exactly what it
  says. Keys of a schema section (``potential.transform={...}``) still merge.

Hydra offers no public hook for either, so both wrap methods of Hydra's
``ConfigLoaderImpl`` (hydra-core 1.3); tests/test_overrides.py fails if that changes.
"""

from pathlib import Path

import yaml

FILE = "overrides.yaml"
KEY = "atomsieve_overrides"
HEADER = ("# Written by `atomsieve compose`: the overrides params.yaml is composed with, on every\n"
          "# route (atomsieve compose, dvc exp run -S, queued and --temp experiments). Commit it.\n")
_state = {"installed": False, "ignore_recorded": False}


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader (no tags that build objects) refusing a key given twice."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        twice = sorted({k for k in keys if keys.count(k) > 1}, key=str)
        if twice:
            raise yaml.constructor.ConstructorError(None, None, f"found the key {twice[0]!r} twice", node.start_mark)
        return super().construct_mapping(node, deep=deep)


def read(conf_dir: Path) -> list[str] | None:
    """The recorded overrides of ``conf_dir``, or None if it records none (no file)."""
    path = Path(conf_dir) / FILE
    if not path.is_file():
        return None
    try:
        data = yaml.load(path.read_text(), Loader=UniqueKeyLoader) or {}
    except yaml.YAMLError as err:
        from pipeline.core.errors import ConfigError

        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())}); `atomsieve compose --reset` "
                          "writes it anew") from None
    values = data.get(KEY, []) if isinstance(data, dict) else None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        from pipeline.core.errors import ConfigError

        raise ConfigError(f"{path}: expected `{KEY}: [override, ...]` (strings), got {data!r}")
    return values


def duplicate_keys(override: str) -> list[str]:
    """Keys given twice in one ``{...}`` of an override (Hydra keeps the last one silently)."""
    stack: list[set] = []
    found, token, quote = [], "", ""
    for ch in override:
        if quote:
            quote = "" if ch == quote else quote
            continue
        if ch in "'\"":
            quote = ch
        elif ch == "{":
            stack.append(set())
            token = ""
        elif ch == "}":
            stack.pop() if stack else None
        elif ch == ":" and stack and token.strip():
            key = token.strip()
            found += [key] if key in stack[-1] else []
            stack[-1].add(key)
        if ch in "{[,":
            token = ""
        elif ch not in ":}":
            token += ch
    return found


def text(overrides: list[str]) -> str:
    return HEADER + yaml.safe_dump({KEY: list(overrides)}, default_flow_style=False, sort_keys=False)


def key_of(override: str) -> str:
    """The key (or config group) an override sets, as Hydra parses it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([override])[0]
    return parsed.key_or_group


def combined(recorded: list[str], given: list[str]) -> list[str]:
    """``recorded`` less those whose key ``given`` sets, then ``given``."""
    taken = {key_of(o) for o in given}
    return [o for o in recorded if key_of(o) not in taken] + list(given)


def changes(before: list[str], after: list[str]) -> list[str]:
    """Lines saying how the recorded overrides went from ``before`` to ``after``, by key."""
    old = {key_of(o): o for o in before}
    new = {key_of(o): o for o in after}
    lines = [f"recorded overrides ({FILE}):" if after else f"recorded overrides ({FILE}): none"]
    for key, o in new.items():
        mark = "=" if old.get(key) == o else ("~" if key in old else "+")
        note = {"=": "kept", "+": "new"}.get(mark, f"was {old.get(key)}")
        lines.append(f"  {mark} {o}    ({note})")
    lines += [f"  - {o}    (forgotten)" for key, o in old.items() if key not in new]
    return lines


def _primary_dir(loader) -> Path | None:
    for element in loader.get_search_path().get_path():
        if element.provider == "main" and not element.path.startswith("pkg://"):
            return Path(element.path.removeprefix("file://"))
    return None


def install() -> None:
    """Wrap Hydra's config loader with the two rules above (once per process)."""
    if _state["installed"]:
        return
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from omegaconf import DictConfig, OmegaConf

    load, apply = ConfigLoaderImpl.load_configuration, ConfigLoaderImpl._apply_overrides_to_config

    def load_configuration(self, config_name, overrides, *args, **kwargs):
        conf = _primary_dir(self)
        recorded = read(conf) if conf is not None and not _state["ignore_recorded"] else None
        if recorded:
            overrides = combined(recorded, list(overrides))
        return load(self, config_name, overrides, *args, **kwargs)

    def apply_overrides(overrides, cfg) -> None:
        for override in overrides:
            value = override.value() if not override.is_delete() else None
            node = OmegaConf.select(cfg, override.key_or_group, throw_on_missing=False)
            replace = (isinstance(value, dict) and isinstance(node, DictConfig) and OmegaConf.get_type(node) is dict
                       and not override.is_add() and not override.is_delete())
            if replace:
                OmegaConf.update(cfg, override.key_or_group, value, merge=False)
            else:
                apply([override], cfg)

    ConfigLoaderImpl.load_configuration = load_configuration
    ConfigLoaderImpl._apply_overrides_to_config = staticmethod(apply_overrides)
    _state["installed"] = True


class ignoring_recorded:
    """Within this block, compositions do not read ``overrides.yaml`` (atomsieve compose
    composes with the overrides it is about to record)."""

    def __enter__(self):
        _state["ignore_recorded"] = True

    def __exit__(self, *exc):
        _state["ignore_recorded"] = False
