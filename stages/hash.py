"""Stage ``hash``: read the dataset, identify and de-duplicate images, split them.

Outputs in ``--out`` (default outputs/hash), all or none: images.extxyz (unique images
with info ``image_hash``, ``source`` and ``split``; info keys and arrays of the data
named like atomsieve's outputs (``pipeline/core/outputs.py``) are dropped, said in the
log and in summary.json; an image whose copies ask for other
FIM quantities or masks (``fim.quantity_key``, ``fim.mask_key``) has a row per distinct
request; with ``descriptors.name: array`` each frame's per-atom ``descriptors.key``
array, checked, exactly), manifest.json, metrics.json and summary.json.
"""

import logging
from pathlib import Path

from pipeline.atoms import dataset
from pipeline.atoms.arrays import CARRIED, arrays_of
from pipeline.core import extxyz
from pipeline.core.atomic import staged
from pipeline.core.outputs import IMAGE_HASH, SOURCE, SPLIT
from pipeline.core.outputs import OUTPUTS as KEYS
from pipeline.core.timing import Timers
from stages.common import as_dict, headline, json_bytes, stage_main, write_summary
from stages.schema import Config

log = logging.getLogger(__name__)
OUTPUTS = ("images.extxyz", "manifest.json", "metrics.json", "summary.json")

HEADLINE = ("unique_images", "train", "test")  # metrics.json; every count is in summary.json

def run(cfg: Config, out: Path) -> dict:
    d, timers = cfg.dataset, Timers()
    with timers("read"):
        frames, sources = dataset.read_all(d.paths, d.require, d.root, d.min_distance)
    carried = (cfg.descriptors.key,) if cfg.descriptors.name == CARRIED else ()
    inputs = {*carried, cfg.fim.quantity_key, cfg.fim.mask_key}  # keys the data give atomsieve on purpose
    frames, dropped = dataset.without_keys(frames, [k.key for k in KEYS if k.key not in inputs])
    if dropped:  # an input named like an output would pass for one of atomsieve's results
        log.warning("the data carry keys named like atomsieve's outputs, dropped here (atomsieve computes them; "
                    "rename them in your data to keep them): %s",
                    ", ".join(f"{k} ({n} frames)" for k, n in dropped.items()))
    for key in carried:  # descriptors the data carries: checked here, where file and frame are known
        arrays_of(frames, key, [f"{s.path}: frame {s.frame}" for s in sources])
    requests = [dataset.request(a, cfg.fim.quantity_key, cfg.fim.mask_key) for a in frames]
    with timers("hash"):
        ds = dataset.deduplicate(frames, sources, d.on_conflict, requests, carried)
    unique = list(dict.fromkeys(ds.hashes))
    test = dict(zip(unique, dataset.split(unique, d.test_fraction, d.seed)))
    split = ["test" if test[h] else "train" for h in ds.hashes]
    first = {h: a for h, a in zip(reversed(ds.hashes), reversed(ds.images))}
    counts = {
        "frames_read": len(frames), "unique_images": len(unique), "rows": len(ds.images),
        "duplicates_removed": sum(len(s) - 1 for s in ds.sources),
        "conflicts_dropped": len(ds.conflicts),
        "train": sum(not test[h] for h in unique), "test": sum(test[h] for h in unique),
        "atoms": sum(len(first[h]) for h in unique),
    }
    images = [dataset.with_labels(a, {IMAGE_HASH.key: h, SOURCE.key: str(s[0]), SPLIT.key: p})
              for a, h, s, p in zip(ds.images, ds.hashes, ds.sources, split)]
    with staged([out / name for name in OUTPUTS]) as (t_images, t_manifest, t_metrics, t_summary):
        with timers("write"):
            extxyz.write(t_images, images)
            t_manifest.write_bytes(json_bytes(dataset.manifest(ds, split)))
            t_metrics.write_bytes(json_bytes(headline(counts, HEADLINE)))
        params = {**as_dict(d), "fim.quantity_key": cfg.fim.quantity_key, "fim.mask_key": cfg.fim.mask_key,
                  "descriptors.name": cfg.descriptors.name, "descriptors.key": cfg.descriptors.key}
        done = write_summary(t_summary, "hash", params, counts, timers, {"dropped_output_keys": dropped})
    return done


def main() -> None:
    stage_main("hash", run, "outputs/hash", watch=lambda cfg: dataset.expand_paths(cfg.dataset.paths, cfg.dataset.root))


if __name__ == "__main__":
    main()
