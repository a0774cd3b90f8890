"""Stage ``ltau_fit``: per-atom error PDFs of the training atoms and their FAISS index.

Inputs: the training atoms (``ltau.train_images``, frames whose descriptors are
computed or read as ``descriptors`` says, each of them an image of the dataset
``--images`` (outputs/hash/images.extxyz), or ``ltau.train_descriptors``, a .npy
(N, d)) and their errors: ``ltau.error_logs``, fitted into PDFs here, or
``ltau.pdfs`` with ``ltau.bins``, made elsewhere (Orchestrator's default), checked and
taken as they are. Outputs in ``--out`` (outputs/ltau_fit), all or none, the same
either way: fit.npz (``edges``, ``midpoints``, ``pdfs``), index.faiss (the training
descriptors' index) and summary.json. With ``ltau.enabled: false`` (``ltau=disabled``)
the outputs say LTAU was not run.
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


def load_npy(path: Path, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read {what} (.npy): {err}") from err


def training_source(c) -> tuple[str, str]:
    """``(key, path)`` of the training atoms' source: exactly one of ``ltau.train_images``
    and ``ltau.train_descriptors``."""
    given = [(k, v) for k, v in (("ltau.train_images", c.train_images),
                                 ("ltau.train_descriptors", c.train_descriptors)) if v is not None]
    if len(given) != 1:
        raise ConfigError("ltau: expected exactly one of train_images (frames) and train_descriptors (.npy (N, d)), "
                          f"got {[k for k, _ in given] or 'neither'}")
    return given[0]


def error_source(c) -> str:
    """Where the training atoms' errors come from: ``"error_logs"`` (fitted here) or
    ``"pdfs"`` (``ltau.pdfs`` with ``ltau.bins``, given); exactly one. ``ltau.range``
    bounds fitted bins only, so with pdfs it is refused rather than ignored."""
    logs, given = bool(c.error_logs), (c.pdfs is not None or c.bins is not None)
    if logs == given:
        raise ConfigError("ltau: expected exactly one of error_logs (.npy logs, fitted into PDFs here) and pdfs with "
                          "bins (.npy PDFs and their bin edges), got "
                          + ("both (to use the PDFs: ltau.error_logs=[])" if logs else "neither"))
    if given and (c.pdfs is None or c.bins is None):
        have, lack = ("pdfs", "bins") if c.bins is None else ("bins", "pdfs")
        raise ConfigError(f"ltau.{lack}: ltau.pdfs and ltau.bins go together (PDFs over those edges), "
                          f"got ltau.{have} only")
    if given and c.range is not None:
        raise ConfigError(f"ltau.range: bounds the bins fitted from error_logs; with pdfs the edges are ltau.bins, "
                          f"expected null, got {list(c.range)}")
    return "pdfs" if given else "error_logs"


def error_files(cfg: Config) -> tuple[str, list[Path]]:
    """:func:`error_source` and its files, each under dataset.root (which DVC tracks):
    the error logs, or the PDFs and their bin edges."""
    c, root = cfg.ltau, cfg.dataset.root
    if error_source(c) == "pdfs":
        return "pdfs", [*expand_paths([c.pdfs], root, "ltau.pdfs"), *expand_paths([c.bins], root, "ltau.bins")]
    return "error_logs", expand_paths(c.error_logs, root, "ltau.error_logs")


def fit_errors(c, source: str, files: list[Path], n_atoms: int) -> tuple[ltau.Fit, dict]:
    """The training atoms' PDFs, fitted to the error logs or given, and their counts."""
    if source == "pdfs":
        pdfs, bins = files
        fit = ltau.given_fit(load_npy(pdfs, "PDFs"), load_npy(bins, "bin edges"), c.bin_spacing, n_atoms,
                             (str(pdfs), str(bins)))
        return fit, {"errors_from": source}
    errors = ltau.error_samples([load_npy(p, "an error log") for p in files], n_atoms, [str(p) for p in files])
    lo, hi = c.range if c.range is not None else (None, None)
    fit = ltau.fit_pdfs(errors, c.nbins, c.bin_spacing, lo, hi)
    return fit, {"errors_from": source, "samples_per_atom": errors.shape[1], "clipped_samples": fit.clipped}


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
    source, files = error_files(cfg)  # a bad key or file fails before the descriptors are computed
    with timers("descriptors"):  # training frames (not a .npy) must be images of the dataset
        train, computed = descriptors_of_file(cfg, value, key, lambda hashes, where: ltau.check_training_images(
            hashes, (a.info[IMAGE_HASH.key] for a in read_images(images)), where))
    with timers("fit"):
        fit, fitted = fit_errors(c, source, files, len(train))
        index = ltau.build_index(train, c.index, index_args_of(c.index, c.index_args))
    counts = {"training_atoms": len(train), "dimension": train.shape[1], "bins": len(fit.midpoints),
              "descriptors_computed": computed, **fitted}
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
