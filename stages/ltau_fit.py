"""Stage ``ltau_fit``: per-atom error PDFs of the training atoms and their FAISS index.

Inputs: the training atoms (``ltau.train_images``, frames whose descriptors are
computed or read as ``descriptors`` says, each of them an image of the dataset
``--images`` (outputs/hash/images.extxyz), or ``ltau.train_descriptors``, a .npy
(N, d)) and ``ltau.error_logs``. Outputs in ``--out``
(outputs/ltau_fit), all or none: fit.npz (``edges``, ``midpoints``, ``pdfs``),
index.faiss (the training descriptors' index) and summary.json. With
``ltau.enabled: false`` (``ltau=disabled``) the outputs say LTAU was not run.
"""

from pathlib import Path

import numpy as np

from pipeline.atoms.dataset import expand_paths
from pipeline.core.atomic import staged
from pipeline.core.errors import ConfigError, InputError
from pipeline.core.outputs import IMAGE_HASH
from pipeline.core.timing import Timers
from pipeline.scores import ltau
from stages.common import as_dict, read_images, stage_main, write_summary
from stages.described import descriptors_of_file
from stages.models import index_args_of
from stages.schema import Config

OUTPUTS = ("fit.npz", "index.faiss", "summary.json")


def load_log(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read an error log (.npy): {err}") from err


def training_source(c) -> tuple[str, str]:
    """``(key, path)`` of the training atoms' source: exactly one of ``ltau.train_images``
    and ``ltau.train_descriptors``."""
    given = [(k, v) for k, v in (("ltau.train_images", c.train_images),
                                 ("ltau.train_descriptors", c.train_descriptors)) if v is not None]
    if len(given) != 1:
        raise ConfigError("ltau: expected exactly one of train_images (frames) and train_descriptors (.npy (N, d)), "
                          f"got {[k for k, _ in given] or 'neither'}")
    return given[0]


def disabled(cfg: Config, out: Path) -> dict:
    """``ltau.enabled: false``: every output, empty, saying LTAU was not run."""
    with staged([out / name for name in OUTPUTS]) as (t_npz, t_index, t_summary):
        t_npz.write_bytes(b"")
        t_index.write_bytes(b"")
        return write_summary(t_summary, "ltau_fit", {"ltau": as_dict(cfg.ltau)}, {"enabled": False}, Timers())


def run(cfg: Config, out: Path, images: Path) -> dict:
    c, timers = cfg.ltau, Timers()
    if not c.enabled:
        return disabled(cfg, out)
    key, value = training_source(c)
    logs = expand_paths(c.error_logs, cfg.dataset.root, "ltau.error_logs")
    with timers("descriptors"):  # training frames (not a .npy) must be images of the dataset
        train, computed = descriptors_of_file(cfg, value, key, lambda hashes, where: ltau.check_training_images(
            hashes, (a.info[IMAGE_HASH.key] for a in read_images(images)), where))
    errors = ltau.error_samples([load_log(p) for p in logs], len(train), [str(p) for p in logs])
    lo, hi = c.range if c.range is not None else (None, None)
    with timers("fit"):
        fit = ltau.fit_pdfs(errors, c.nbins, c.bin_spacing, lo, hi)
        index = ltau.build_index(train, c.index, index_args_of(c.index, c.index_args))
    counts = {"training_atoms": len(train), "dimension": train.shape[1], "samples_per_atom": errors.shape[1],
              "bins": c.nbins, "descriptors_computed": computed, "clipped_samples": fit.clipped}
    with staged([out / name for name in OUTPUTS]) as (t_npz, t_index, t_summary):
        with open(t_npz, "wb") as fh:
            np.savez(fh, edges=fit.edges, midpoints=fit.midpoints, pdfs=fit.pdfs)
        ltau.write_index(index, t_index)
        done = write_summary(t_summary, "ltau_fit", {"ltau": as_dict(c), "descriptors": as_dict(cfg.descriptors)}, counts, timers)
    return done


def main() -> None:
    stage_main("ltau_fit", run, "outputs/ltau_fit", images="outputs/hash/images.extxyz")


if __name__ == "__main__":
    main()
