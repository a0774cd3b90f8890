"""Stage ``fim_train``: the FIM of every training image (FIMTrainingSetScore).

Input ``--images`` (outputs/hash/images.extxyz). Outputs in ``--out``
(outputs/fim_train), all or none: fims.extxyz (every image with info
``fim_training_set_score``, P×P, and ``image_hash``), fims.npz (image_hash, fim,
quantity, parameter, extent), summary.json and eigenvalues.png.
"""

from pathlib import Path

import ase.io
import numpy as np

from pipeline import dataset, parameters
from pipeline.atomic import staged
from pipeline.errors import InputError
from pipeline.plots import eigenvalue_spectra
from pipeline.timing import Timers
from pipeline.training_fim import masks, quantities, training_fims
from stages.common import as_dict, read_images, stage_main, write_summary
from stages.models import derivative_of, potential_of, transform_of
from stages.runtime import executor_factory, store_of
from stages.schema import Config

OUTPUTS = ("fims.extxyz", "fims.npz", "summary.json", "eigenvalues.png")


def load_mask(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path, ndmin=1)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read a mask (.npy or whitespace-separated .txt): {err}") from err


def run(cfg: Config, out: Path, images: Path) -> dict:
    timers, f = Timers(), cfg.fim
    with timers("read"):
        frames = read_images(images)
        hashes = [a.info["image_hash"] for a in frames]
        mask_arrays = [load_mask(p) for p in dataset.expand_paths(f.mask_files, cfg.dataset.root, "fim.mask_files")]
    kinds = quantities(frames, hashes, f.quantity, f.quantity_key)
    weights = masks(frames, hashes, kinds, f.mask_key, mask_arrays)
    spec = parameters.parse(cfg.potential.parameters_optimize)
    with timers("fim"):
        result = training_fims(frames, hashes, potential_of(cfg.potential), spec, transform_of(cfg.potential.transform),
                               derivative_of(f.derivative), kinds, weights, store_of(cfg),
                               executor_factory(cfg.runtime), cfg.runtime.min_parallel_seconds)
    labels = list(result.labels.values())
    counts = {"images": len(frames), "computed": result.computed, "cached": len(frames) - result.computed,
              "parameters": len(labels)}
    with staged([out / name for name in OUTPUTS]) as (t_xyz, t_npz, t_summary, t_png), timers("write"):
        for atoms, fim in zip(frames, result.fims):
            atoms.info["fim_training_set_score"] = fim
        ase.io.write(t_xyz, frames, format="extxyz")
        with open(t_npz, "wb") as fh:
            np.savez(fh, image_hash=np.array(hashes), fim=result.fims, quantity=np.array(kinds),
                     parameter=np.array([lab["parameter"] for lab in labels]),
                     extent=np.array([lab["extent"] for lab in labels]))
        eigenvalue_spectra(result.fims, t_png, f"FIM eigenvalues ({', '.join(sorted(set(kinds)))})")
        params = {"potential": as_dict(cfg.potential), "fim": as_dict(f)}
        done = write_summary(t_summary, "fim_train", params, counts, timers, {"labels": result.labels})
    return done


def main() -> None:
    stage_main("fim_train", run, "outputs/fim_train", images="outputs/hash/images.extxyz")


if __name__ == "__main__":
    main()
