"""Stage ``hash``: read the dataset, identify and de-duplicate images, split them.

Outputs in ``--out`` (default outputs/hash), all or none: images.extxyz (unique images
with info ``image_hash``, ``source`` and ``split``), manifest.json, metrics.json and
summary.json.
"""

from pathlib import Path

import ase.io

from pipeline import dataset
from pipeline.atomic import staged
from pipeline.timing import Timers
from stages.common import as_dict, json_bytes, stage_main, write_summary
from stages.schema import Config

OUTPUTS = ("images.extxyz", "manifest.json", "metrics.json", "summary.json")


def run(cfg: Config, out: Path) -> dict:
    d, timers = cfg.dataset, Timers()
    with timers("read"):
        frames, sources = dataset.read_all(d.paths, d.require, d.root)
    with timers("hash"):
        ds = dataset.deduplicate(frames, sources, d.on_conflict)
    split = ["test" if t else "train" for t in dataset.split(ds.hashes, d.test_fraction, d.seed)]
    counts = {
        "frames_read": len(frames), "unique_images": len(ds.images),
        "duplicates_removed": sum(len(s) - 1 for s in ds.sources),
        "conflicts_dropped": len(ds.conflicts),
        "train": split.count("train"), "test": split.count("test"),
        "atoms": sum(len(a) for a in ds.images),
    }
    images = [dataset.with_labels(a, {"image_hash": h, "source": str(s[0]), "split": p})
              for a, h, s, p in zip(ds.images, ds.hashes, ds.sources, split)]
    with staged([out / name for name in OUTPUTS]) as (t_images, t_manifest, t_metrics, t_summary):
        with timers("write"):
            ase.io.write(t_images, images, format="extxyz")
            t_manifest.write_bytes(json_bytes(dataset.manifest(ds, split)))
            t_metrics.write_bytes(json_bytes(counts))
        done = write_summary(t_summary, "hash", as_dict(d), counts, timers)
    return done


def main() -> None:
    stage_main("hash", run, "outputs/hash")


if __name__ == "__main__":
    main()
