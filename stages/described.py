"""Descriptors as the config names them, for the stages that compute or consume them
(descriptors, quests, ltau_fit): the chosen descriptor's settings, and descriptor sets
named by a file-valued param (a file of frames, or a ``.npy`` array)."""

from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline.atoms.dataset import expand_paths, read_checked
from pipeline.atoms.descriptor_set import DescriptorSet, descriptor_set
from pipeline.atoms.hashing import image_hashes
from pipeline.core.errors import InputError
from pipeline.scores.entropy import check_descriptors
from stages.runtime import store_of
from stages.schema import Config, DescriptorConfig

ARRAY_SUFFIX = ".npy"


def descriptor_args(d: DescriptorConfig) -> tuple[str, dict]:
    """``(name, settings)`` of the chosen descriptor: only its own settings, so that the
    store's keys change with them and with nothing else."""
    settings = {"quests": {"k": d.k, "cutoff": d.cutoff}, "array": {"key": d.key}}
    if d.name in ("soap", "acsf"):
        return d.name, asdict(getattr(d, d.name))
    return d.name, settings.get(d.name, {})


def describe_frames(cfg: Config, frames, hashes, wheres, executor=None) -> DescriptorSet:
    name, settings = descriptor_args(cfg.descriptors)
    return descriptor_set(frames, hashes, name, settings, store_of(cfg), executor, wheres)


def read_array(path: Path, key: str) -> np.ndarray:
    """A ``.npy`` of descriptors, (N, d), finite."""
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{key}={path}: cannot read a .npy array of descriptors: {err}") from err
    return check_descriptors(x, f"{key}={path}")


def descriptors_of_file(cfg: Config, value: str, key: str, check=None) -> tuple[np.ndarray, int]:
    """The descriptors (N, d) of the file param ``key`` names (under ``dataset.root``):
    a ``.npy`` array as it is, or a file of frames described by ``cfg.descriptors``
    (``check(hashes, where)`` called on their image hashes first, if given); and how
    many of its images were computed now."""
    path, = expand_paths([value], cfg.dataset.root, key)
    if path.suffix == ARRAY_SUFFIX:
        return read_array(path, key), 0
    frames = read_checked(path, cfg.dataset.min_distance)
    hashes = image_hashes(frames)
    if check is not None:
        check(hashes, f"{key}={path}")
    found = describe_frames(cfg, frames, hashes, [f"{key}={path}: frame {i}" for i in range(len(frames))])
    return check_descriptors(found.values, f"{key}={path}"), found.computed


def check_width(x: np.ndarray, d: int, what: str, against: str) -> np.ndarray:
    if x.shape[1] != d:
        raise InputError(f"{what}: expected descriptors of width {d} (those of {against}), got {x.shape[1]}")
    return x
