"""Stage ``descriptors``: the per-atom descriptor of every image, through the store.

Input ``--images`` (outputs/hash/images.extxyz); with ``descriptors.name: array`` the
descriptors are that file's per-atom array ``descriptors.key``. Outputs in ``--out``
(outputs/descriptors), all or none: descriptors.npz (``image_hash`` (n,), ``offsets``
(n+1,), ``descriptors`` (atoms, d): image i's atoms are rows offsets[i]:offsets[i+1]),
descriptors.extxyz (per-atom array ``descriptors``) and summary.json.
"""

from pathlib import Path

import numpy as np

from pipeline.core import extxyz
from pipeline.core.atomic import staged
from pipeline.core.outputs import DESCRIPTORS, IMAGE_HASH
from pipeline.core.timing import Timers
from stages.common import as_dict, read_images, stage_main, write_summary
from stages.described import describe_frames
from stages.runtime import executor_factory
from stages.schema import Config

OUTPUTS = ("descriptors.npz", "descriptors.extxyz", "summary.json")


def run(cfg: Config, out: Path, images: Path) -> dict:
    timers = Timers()
    frames = read_images(images, unique=True)
    hashes = [a.info[IMAGE_HASH.key] for a in frames]
    with timers("descriptors"):
        result = describe_frames(cfg, frames, hashes, [f"{images}: image {h}" for h in hashes],
                                 executor_factory(cfg.runtime))
    counts = {"images": len(frames), "atoms": len(result.values), "dimension": result.values.shape[1],
              "computed": result.computed, "cached": result.cached, "read": result.read}
    with staged([out / name for name in OUTPUTS]) as (t_npz, t_xyz, t_summary), timers("write"):
        with open(t_npz, "wb") as fh:
            np.savez(fh, image_hash=np.array(result.hashes), offsets=result.offsets, descriptors=result.values)
        for atoms, lo, hi in zip(frames, result.offsets[:-1], result.offsets[1:]):
            atoms.arrays[DESCRIPTORS.key] = result.values[lo:hi]
        extxyz.write(t_xyz, frames)
        done = write_summary(t_summary, "descriptors", as_dict(cfg.descriptors), counts, timers)
    return done


def main() -> None:
    stage_main("descriptors", run, "outputs/descriptors", images="outputs/hash/images.extxyz")


if __name__ == "__main__":
    main()
