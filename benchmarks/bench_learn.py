"""The presets of conf/experiment/ (the information-matching study of SW silicon), each
run as its stage runs: hash, then learn, with a fresh store (cold), then again on that
store (warm: every FIM from the store). Run from the repository root:

    python benchmarks/bench_learn.py [PRESET ...]

Prints one row per preset: iterations, converged, selected, the fit's reduced χ², how
many targets have SNAP's value within 2σ, FIMs computed, and the cold and warm wall
times. Goal (issue 13): sw_si_elastic converges in at most 10 iterations and under
3 minutes on this 2-core machine.
"""

import argparse
import json
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from stages import hash as hash_stage
from stages import learn
from stages.cli import compose
from stages.common import load_config

ROOT = Path(__file__).resolve().parents[1]


def run(name: str, scratch: Path) -> str:
    params = scratch / f"{name}.yaml"
    compose([f"+experiment={name}"], params, ROOT / "conf", record=False)
    cfg = load_config(params)
    cfg = replace(cfg, store=replace(cfg.store, path=str(scratch / f"store_{name}")))
    times = []
    for attempt in ("cold", "warm"):
        start = time.perf_counter()
        hash_stage.run(cfg, scratch / f"{name}_{attempt}/hash")
        learn.run(cfg, scratch / f"{name}_{attempt}/learn", scratch / f"{name}_{attempt}/hash/images.extxyz")
        times.append(time.perf_counter() - start)
    m = json.loads((scratch / f"{name}_cold/learn/metrics.json").read_text())
    computed = [json.loads((scratch / f"{name}_{a}/learn/summary.json").read_text())["counts"]["fims_computed"]
                for a in ("cold", "warm")]
    return (f"| {name} | {m['iterations']} | {m['converged']} | {m['selected']} | {m['fit_reduced_chi2']:.3g} | "
            f"{m.get('truth_within_2_sigma', '-')} of {sum(k.endswith('.truth') for k in m)} | "
            f"{computed[0]} / {computed[1]} | {times[0]:.1f} s / {times[1]:.1f} s |")


def main() -> None:
    presets = sorted(p.stem for p in (ROOT / "conf/experiment").glob("*.yaml"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="*", default=presets)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print("| preset | iterations | converged | selected | fit χ²_red | truth within 2σ | FIMs computed cold / warm "
          "| time cold / warm |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.presets:
            print(run(name, Path(scratch)), flush=True)


if __name__ == "__main__":
    main()
