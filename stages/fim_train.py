"""Stage ``fim_train``: the FIM of every training image (FIMTrainingSetScore).

Input ``--images`` (outputs/hash/images.extxyz). A candidate is (image, quantity,
mask): a row asks for one quantity or several (``energy,forces``), and copies of an
image asking for others are rows of their own. Outputs in ``--out``
(outputs/fim_train), all or none: fims.extxyz (every candidate: its row of the input as written,
labels included, with info ``candidate``, ``fim_quantity``, ``fim_parameters`` and
``fim_training_set_score``, P×P), fims.npz
(candidate, image_hash, quantity, mask digest, fim, parameter, extent), summary.json
and eigenvalues.png.
"""

import logging
from pathlib import Path

import numpy as np

from pipeline.atoms import dataset
from pipeline.core import extxyz
from pipeline.core.atomic import staged
from pipeline.core.errors import InputError
from pipeline.core.outputs import CANDIDATE, FIM_PARAMETERS, FIM_QUANTITY, FIM_TRAINING_SET_SCORE, IMAGE_HASH
from pipeline.core.plots import eigenvalue_spectra
from pipeline.core.timing import Timers
from pipeline.models import parameters
from pipeline.models.parameters import label_text
from pipeline.scores.training_fim import candidates, masks, quantities, training_fims
from pipeline.scores.zero_information import FLOOR, explain
from stages.common import as_dict, json_bytes, read_images, stage_main, write_summary
from stages.models import derivative_of, potential_of, transform_of
from stages.runtime import executor_factory, store_of
from stages.schema import Config

log = logging.getLogger(__name__)
OUTPUTS = ("fims.extxyz", "fims.npz", "zero_information.json", "summary.json", "eigenvalues.png")
SHOWN = 10  # zero-information candidates named in the log (all are in zero_information.json)


def load_mask(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path, ndmin=1)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read a mask (.npy or whitespace-separated .txt): {err}") from err


def run(cfg: Config, out: Path, images: Path) -> dict:
    timers, f = Timers(), cfg.fim
    with timers("read"):
        frames = read_images(images)
        texts = extxyz.frame_texts(images)
        if len(texts) != len(frames) or any(int(t[:t.index("\n")]) != len(a) for t, a in zip(texts, frames)):
            raise InputError(f"{images}: {len(texts)} frames by their atom-count lines, but ASE reads {len(frames)} "
                             "of other sizes; expected a plain extxyz file, as the hash stage writes")
        hashes = [a.info[IMAGE_HASH.key] for a in frames]
        mask_arrays = [load_mask(p) for p in dataset.expand_paths(f.mask_files, cfg.dataset.root, "fim.mask_files")]
    kinds = quantities(frames, hashes, f.quantity, f.quantity_key)
    cands = candidates(frames, hashes, kinds, masks(frames, hashes, f.mask_key, mask_arrays))
    spec = parameters.parse(cfg.potential.parameters_optimize)
    with timers("fim"):
        result = training_fims(frames, cands, potential_of(cfg.potential), spec, transform_of(cfg.potential.transform),
                               derivative_of(f.derivative), store_of(cfg), executor_factory(cfg.runtime))
    labels = list(result.labels.values())
    with timers("zero_information"):
        empty = zero_information(frames, cands, result, potential_of(cfg.potential), spec)
    counts = {"images": len(set(hashes)), "candidates": len(cands), "computed": result.computed,
              "cached": len(cands) - result.computed, "parameters": len(labels), "zero_information": len(empty)}
    with staged([out / name for name in OUTPUTS]) as (t_xyz, t_npz, t_zero, t_summary, t_png), timers("write"):
        t_zero.write_bytes(json_bytes(empty))
        # each candidate's row of the input as it was written, its labels too, with the FIM added:
        # no extxyz parsing and formatting again
        names = label_text(result.labels)
        t_xyz.write_text("".join(
            extxyz.with_info(texts[c.row], {CANDIDATE.key: c.id, FIM_QUANTITY.key: c.quantity,
                                            FIM_PARAMETERS.key: names, FIM_TRAINING_SET_SCORE.key: fim})
            for c, fim in zip(cands, result.fims)))
        with open(t_npz, "wb") as fh:
            np.savez(fh, candidate=np.array([c.id for c in cands]), image_hash=np.array([c.image_hash for c in cands]),
                     quantity=np.array([c.quantity for c in cands]), mask=np.array([c.mask_digest for c in cands]),
                     fim=result.fims, parameter=np.array([lab["parameter"] for lab in labels]),
                     extent=np.array([lab["extent"] for lab in labels]))
        kinds_seen = sorted({c.quantity for c in cands})
        eigenvalue_spectra(result.fims, t_png, f"FIM eigenvalues ({', '.join(kinds_seen)})")
        params = {"potential": as_dict(cfg.potential), "fim": as_dict(f)}
        done = write_summary(t_summary, "fim_train", params, counts, timers, {"labels": result.labels, "model": result.model})
    return done


def zero_information(frames, cands, result, potential, spec) -> dict[str, dict]:
    """``{candidate: {source, config_type, quantity, trace, cause}}`` of the candidates
    whose FIM carries no information, each named in the log with its cause."""
    causes = explain(frames, cands, result.fims, potential, spec)
    out = {}
    for i, why in causes.items():
        atoms = frames[cands[i].row]
        out[cands[i].id] = {"source": atoms.info.get("source"), "config_type": atoms.info.get("config_type"),
                            "quantity": cands[i].quantity, "trace": float(np.trace(result.fims[i])), "cause": why}
    if out:
        lines = [f"  {v['source']} ({v['config_type'] or 'no config_type'}) {v['quantity']}: {v['cause']}"
                 for v in list(out.values())[:SHOWN]]
        more = f"\n  ... and {len(out) - SHOWN} more (outputs/fim_train/zero_information.json)" if len(out) > SHOWN else ""
        log.warning("%d of %d candidates carry no information (FIM trace below %g of the median); computing them "
                    "teaches the model nothing:\n%s%s", len(out), len(cands), FLOOR, "\n".join(lines), more)
    return out


def main() -> None:
    stage_main("fim_train", run, "outputs/fim_train", images="outputs/hash/images.extxyz")


if __name__ == "__main__":
    main()
