"""What every stage module shares: config loading, logging, atomic JSON, exit codes."""

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline import __version__
from pipeline.atomic import write_bytes
from pipeline.errors import AtomsieveError, ConfigError
from stages.schema import Config, mergeable, validate

log = logging.getLogger("atomsieve")


def load_config(params: Path | str = "params.yaml", overrides: list[str] = ()) -> Config:
    """params.yaml (plus dotted ``key=value`` overrides) validated against the schema."""
    try:
        raw = OmegaConf.load(params)
        merged = OmegaConf.merge(mergeable(Config), raw, OmegaConf.from_dotlist(list(overrides)))
        return validate(OmegaConf.to_object(merged))
    except FileNotFoundError as err:
        raise ConfigError(f"{params}: no such file (run `atomsieve compose` to make it)") from err
    except OmegaConfBaseException as err:
        raise ConfigError(f"{params}: {str(err).splitlines()[0]} (key: {getattr(err, 'full_key', '?')})") from err


def json_bytes(data: dict) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, json_bytes(data))


def summary(stage: str, params: dict, counts: dict, timings: dict) -> dict:
    """The small JSON every stage writes: what it was asked, what it did, how long."""
    return {"stage": stage, "version": __version__, "params": params, "counts": counts, "timings": timings}


def as_dict(cfg) -> dict:
    return asdict(cfg)


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def stage_main(name: str, run: Callable[[Config, Path], dict], default_out: str) -> None:
    """Entry point of a stage module: ``python -m stages.NAME [--params P] [--out DIR]``.

    An :class:`AtomsieveError` becomes one ``error:`` line on stderr and exit code 1.
    """
    parser = argparse.ArgumentParser(prog=f"python -m stages.{name}")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default=default_out)
    args = parser.parse_args()
    try:
        cfg = load_config(args.params)
        setup_logging(cfg.runtime.log_level)
        run(cfg, Path(args.out))
    except AtomsieveError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
