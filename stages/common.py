"""What every stage module shares: config loading, logging, atomic JSON, exit codes."""

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline import __version__
from pipeline.core.errors import AtomsieveError, ConfigError, InputError, check_choice
from pipeline.core.outputs import IMAGE_HASH
from pipeline.core.timing import Timers
from stages.schema import Config, mergeable

log = logging.getLogger("atomsieve")


EXPERIMENT_DIR = (".dvc", "tmp", "exps")  # where DVC makes an experiment's workspace


def project_root(cwd: Path | None = None) -> Path:
    """The project a working directory belongs to: the folder holding ``.dvc/tmp/exps``
    for a DVC experiment's workspace (queued, ``--temp``), else the directory itself."""
    cwd = (cwd or Path.cwd()).resolve()
    for parent in cwd.parents:
        if parent.parts[-len(EXPERIMENT_DIR):] == EXPERIMENT_DIR:
            return parent.parents[len(EXPERIMENT_DIR) - 1]
    return cwd


def untracked_hint(message: str, cwd: Path | None = None) -> str:
    """For a missing file in a DVC experiment's workspace, why and what to run."""
    cwd = (cwd or Path.cwd()).resolve()
    root = project_root(cwd)
    if root == cwd or "no such file" not in message:
        return ""
    return (" (this is a DVC experiment's temporary workspace, which holds only what git or DVC "
            f"tracks in {root}: commit the file with `git add <file> && git commit`, or for large data "
            "`dvc add <file>` and commit the .dvc file it writes, then queue the experiment again)")


def load_config(params: Path | str = "params.yaml", overrides: list[str] = (), name: str | None = None) -> Config:
    """params.yaml (plus dotted ``key=value`` overrides) checked against the schema (keys
    and types). Option values are checked by the library functions that use them, and
    all at once by ``atomsieve compose`` (:mod:`stages.validate`)."""
    import yaml

    try:
        raw = OmegaConf.load(params)
        merged = OmegaConf.merge(mergeable(Config), raw, OmegaConf.from_dotlist(list(overrides)))
        check_finite(OmegaConf.to_container(merged), name or str(params))
        return OmegaConf.to_object(merged)
    except FileNotFoundError as err:
        raise ConfigError(f"{params}: no such file (run `atomsieve compose` to make it)") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{params}: not valid YAML: {' '.join(str(err).split())}") from err
    except OmegaConfBaseException as err:
        raise ConfigError(f"{params}: {str(err).splitlines()[0]} (key: {getattr(err, 'full_key', '?')})") from err


def check_finite(node, where: str, key: str = "") -> None:
    """Raise :class:`ConfigError` naming the key of any NaN or infinite number."""
    if isinstance(node, dict):
        for k, v in node.items():
            check_finite(v, where, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            check_finite(v, where, f"{key}[{i}]")
    elif isinstance(node, float) and not np.isfinite(node):
        raise ConfigError(f"{where}: {key}: expected a finite number, got {node}")


METRIC_DIGITS = 10  # significant digits of metrics that reruns reproduce (BLAS sums differ in the 15th)
RESIDUAL_DIGITS = 2  # of residuals near zero (a solver's tolerance), e.g. min_eigenvalue_rel


def headline(metrics: dict, keys: tuple[str, ...]) -> dict:
    """The few ``metrics`` a user compares across experiments (each stage's HEADLINE, its
    metrics.json, what `dvc exp show` and `atomsieve show` list), rounded as
    :func:`reproducible`; the rest stay in the stage's summary.json."""
    return reproducible({k: metrics[k] for k in keys})


def reproducible(metrics: dict, residuals: tuple[str, ...] = ()) -> dict:
    """``metrics`` with floats rounded to the digits a rerun reproduces, so that a
    rerun leaves the tracked metrics.json unchanged."""
    def round_to(value, digits):
        return float(f"{value:.{digits - 1}e}") if isinstance(value, float) and np.isfinite(value) else value
    return {k: round_to(v, RESIDUAL_DIGITS if k in residuals else METRIC_DIGITS) for k, v in metrics.items()}


def json_bytes(data: dict) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


def read_images(path: Path, unique: bool = False) -> list:
    """The frames of a stage's extxyz input, each with info ``image_hash``; with
    ``unique``, the first row of each image only (an image has several rows when its
    copies ask for several FIM candidates)."""
    import ase.io

    try:
        frames = ase.io.read(path, ":", format="extxyz")
    except FileNotFoundError as err:
        raise InputError(f"{path}: no such file (run the stage that makes it first)") from err
    except Exception as err:  # ASE raises many types for malformed input
        raise InputError(f"{path}: cannot read as extxyz: {type(err).__name__}: {err}") from err
    for i, atoms in enumerate(frames):
        if not isinstance(atoms.info.get(IMAGE_HASH.key), str):
            raise InputError(f"{path}: frame {i}: expected info {IMAGE_HASH.key!r} (a string), "
                             f"got {atoms.info.get(IMAGE_HASH.key)!r}")
    if not frames:
        raise InputError(f"{path}: no images")
    if unique:
        frames = list({a.info[IMAGE_HASH.key]: a for a in reversed(frames)}.values())[::-1]
    return frames


def read_json(path: Path, made_by: str) -> dict:
    """A stage's JSON input; a missing or malformed file is an :class:`InputError`
    saying what makes it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise InputError(f"{path}: no such file (run {made_by} first)") from err
    except ValueError as err:
        raise InputError(f"{path}: not JSON: {err}") from err


def load_descriptors(path: Path, hashes: list[str]) -> list[np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            index = {h: i for i, h in enumerate(npz["image_hash"])}
            offsets, values = npz["offsets"], npz["descriptors"]
    except (OSError, KeyError, ValueError) as err:
        raise InputError(f"{path}: cannot read descriptors (run the descriptors stage first): {err}") from err
    missing = [h for h in hashes if h not in index]
    if missing:
        raise InputError(f"{path}: no descriptors for image {missing[0]} (and {len(missing) - 1} more)")
    return [values[offsets[index[h]]:offsets[index[h] + 1]] for h in hashes]


def write_summary(path: Path, stage: str, params: dict, counts: dict, timers: Timers,
                  extra: dict | None = None) -> dict:
    """Write the small JSON every stage writes (what it was asked, what it did, how long,
    and any ``extra`` keys) to ``path``; return it."""
    done = {"stage": stage, "version": __version__, "params": params, "counts": counts, "timings": timers.as_dict(),
            **(extra or {})}
    path.write_bytes(json_bytes(done))
    return done


def as_dict(cfg) -> dict:
    return asdict(cfg)


def matching_options(m) -> dict:
    """``matching`` (MatchingConfig) as the keyword arguments of
    :func:`pipeline.scores.matching.match`: every key but ``candidates`` and
    ``weight_upper_bound_key`` (read with the candidates)."""
    return {k: v for k, v in asdict(m).items() if k not in ("candidates", "weight_upper_bound_key")}


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def setup_logging(level: str) -> None:
    check_choice("runtime.log_level", level, LOG_LEVELS)
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # FAISS logs its fallback from the AVX2 build as a ModuleNotFoundError at INFO, which alarms
    logging.getLogger("faiss.loader").setLevel(max(logging.WARNING, logging.getLogger().level))


def fingerprints(paths) -> dict[str, tuple]:
    """``{file: (size, mtime_ns, inode)}`` of every file of ``paths`` (folders walked):
    what tells a file replaced or rewritten, without reading it."""
    out = {}
    for path in map(Path, paths):
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            try:
                st = f.stat()
            except OSError:
                out[str(f)] = None
                continue
            if f.is_file():
                out[str(f)] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def check_unchanged(before: dict[str, tuple], paths) -> None:
    """What a stage used is what DVC records: refuse when the params or an input changed
    while the stage ran (its outputs would mix the old and the new)."""
    after = fingerprints(paths)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        raise InputError(f"{', '.join(changed[:5])}{' and more' if len(changed) > 5 else ''} changed while the "
                         "stage ran, so its outputs may mix the old and the new; run it again (`dvc repro`)")


def stage_main(name: str, run: Callable[..., dict], default_out: str, watch: Callable | None = None,
               **inputs: str) -> None:
    """Entry point of a stage module:
    ``python -m stages.NAME [--params P] [--out DIR] [--INPUT PATH ...]``, calling
    ``run(cfg, out, **inputs)`` with every path as a :class:`Path`.

    The params file, the inputs and the files ``watch(cfg)`` names are fingerprinted
    before and after: a change while the stage ran fails it (:func:`check_unchanged`).
    An :class:`AtomsieveError` becomes one ``error:`` line on stderr and exit code 1.
    """
    parser = argparse.ArgumentParser(prog=f"python -m stages.{name}")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default=default_out)
    for key, default in inputs.items():
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, default=default)
    args = parser.parse_args()
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        watched = [args.params, *(getattr(args, key) for key in inputs)]
        before = fingerprints(watched)
        cfg = load_config(args.params)
        setup_logging(cfg.runtime.log_level)
        named = list(watch(cfg)) if watch is not None else []  # files the params name, known once they are read
        before.update(fingerprints(named))
        watched += named
        with logging_redirect_tqdm():  # log lines go above a progress bar, never through it
            run(cfg, Path(args.out), **{key: Path(getattr(args, key)) for key in inputs})
        check_unchanged(before, watched)
    except AtomsieveError as err:
        print(f"error: {err}{untracked_hint(str(err))}", file=sys.stderr)
        raise SystemExit(1) from None
    except OSError as err:  # a full disk, a folder that cannot be written: outputs are all or none
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: stage {name}: {where}{err.strerror or err}; nothing of its outputs was written",
              file=sys.stderr)
        raise SystemExit(1) from None
