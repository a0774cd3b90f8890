"""Stage ``ltau_fit``: per-atom error PDFs of the training atoms and their FAISS index.

Inputs ``ltau.train_images`` and ``ltau.error_logs``. Outputs in ``--out``
(outputs/ltau_fit), all or none: fit.npz (``edges``, ``midpoints``, ``pdfs``),
index.faiss (the training descriptors' index) and summary.json.
"""

from pathlib import Path

import numpy as np

from pipeline.atoms.dataset import expand_paths, read_checked
from pipeline.atoms.descriptor_set import descriptor_set
from pipeline.atoms.hashing import image_hashes
from pipeline.core.atomic import staged
from pipeline.core.errors import InputError
from pipeline.core.timing import Timers
from pipeline.scores import ltau
from pipeline.scores.entropy import check_descriptors
from stages.common import as_dict, stage_main, write_summary
from stages.models import index_args_of
from stages.runtime import store_of
from stages.schema import Config

OUTPUTS = ("fit.npz", "index.faiss", "summary.json")


def load_log(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read an error log (.npy): {err}") from err


def run(cfg: Config, out: Path) -> dict:
    c, d, timers = cfg.ltau, cfg.descriptors, Timers()
    images, = expand_paths([c.train_images], cfg.dataset.root, "ltau.train_images")
    logs = expand_paths(c.error_logs, cfg.dataset.root, "ltau.error_logs")
    frames = read_checked(images, cfg.dataset.min_distance)
    with timers("descriptors"):
        described = descriptor_set(frames, image_hashes(frames), d.name, d.k, d.cutoff, store_of(cfg))
    train = check_descriptors(described.values, c.train_images)
    errors = ltau.error_samples([load_log(p) for p in logs], len(train), [str(p) for p in logs])
    lo, hi = c.range if c.range is not None else (None, None)
    with timers("fit"):
        fit = ltau.fit_pdfs(errors, c.nbins, c.bin_spacing, lo, hi)
        index = ltau.build_index(train, c.index, index_args_of(c.index, c.index_args))
    counts = {"training_atoms": len(train), "samples_per_atom": errors.shape[1], "bins": c.nbins,
              "computed": described.computed, "cached": len(frames) - described.computed,
              "clipped_samples": fit.clipped}
    with staged([out / name for name in OUTPUTS]) as (t_npz, t_index, t_summary):
        with open(t_npz, "wb") as fh:
            np.savez(fh, edges=fit.edges, midpoints=fit.midpoints, pdfs=fit.pdfs)
        ltau.write_index(index, t_index)
        done = write_summary(t_summary, "ltau_fit", {"ltau": as_dict(c), "descriptors": as_dict(d)}, counts, timers)
    return done


def main() -> None:
    stage_main("ltau_fit", run, "outputs/ltau_fit")


if __name__ == "__main__":
    main()
