"""The ``fim_train`` stage path against its floor: the marginal cost per image between a
small and a large run of the stage CLI, as DVC runs it.

    python benchmarks/bench_fim_stage.py [--small 50] [--large 450] [--repeats 2]

Each run is ``python -m stages.fim_train`` in a fresh process with a fresh store, on
rattled 64-atom diamond Si cells (SW, all 9 parameters, forces, central differences,
serial), reading an ``images.extxyz`` as the ``hash`` stage writes it and writing every
output (fims.extxyz, fims.npz, summary.json, eigenvalues.png). Fixed costs (imports,
the model, the plot) cancel in the difference of the two runs:

    marginal = (wall(large) - wall(small)) / (large - small)

The floor is (2P+1) bare kimpy force evaluations of one cell, measured here in this
process. Goal (issue 15): marginal <= 1.3 x floor. The stage's own timers (read, fim,
write, from summary.json) show where the rest goes.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_fim import MODEL, cells  # this folder: run as a script

from pipeline.atoms.hashing import image_hashes
from pipeline.core import extxyz
from pipeline.core.outputs import IMAGE_HASH
from pipeline.models.potential import PotentialSpec, make_potential
from stages.cli import compose

ROOT = Path(__file__).resolve().parents[1]
P = 9


def floor_per_image(reps: int = 300) -> float:
    """(2P+1) bare kimpy evaluations of one cell: ``model.compute`` on arguments and a
    neighbour list set up once, nothing else (best of 3)."""
    pot = make_potential(PotentialSpec("kim", MODEL, ("Si",), None, "{}", 0.5))
    pot.compute(cells(1)[0], "forces")  # sets up the compute arguments and neighbour list
    model, args = pot.model, pot.args
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(reps):
            model.compute(args)
        best = min(best, (time.perf_counter() - start) / reps)
    return (2 * P + 1) * best


def stage_run(work: Path, n: int, params: Path) -> tuple[float, dict]:
    images = work / f"images_{n}.extxyz"
    if not images.exists():
        frames = cells(n)
        for atoms, h in zip(frames, image_hashes(frames)):
            atoms.info[IMAGE_HASH.key] = h
        extxyz.write(images, frames)
    store = tempfile.mkdtemp(dir=work)
    out = Path(tempfile.mkdtemp(dir=work))
    run_params = out / "params.yaml"
    run_params.write_text(params.read_text().replace("path: .atomsieve/store", f"path: {store}"))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "stages.fim_train", "--params", str(run_params), "--out", str(out),
                    "--images", str(images)], cwd=ROOT, check=True, capture_output=True)
    wall = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["computed"] == n, summary["counts"]
    return wall, summary["timings"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=50)
    parser.add_argument("--large", type=int, default=450)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each size; the fastest counts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        params = work / "params.yaml"
        compose(["potential=sw_si_all", "fim=forces", "runtime.executor=serial", "runtime.log_level=WARNING"],
                params, ROOT / "conf", record=False)
        runs = {}
        for n in (args.small, args.large):
            runs[n] = min((stage_run(work, n, params) for _ in range(args.repeats)), key=lambda r: r[0])
        floor = floor_per_image()
    (ws, ts), (wl, tl) = runs[args.small], runs[args.large]
    marginal = (wl - ws) / (args.large - args.small)
    print(f"floor, (2P+1) bare kimpy force evaluations of a 64-atom cell: {floor * 1e3:.3f} ms per image")
    print(f"stage wall: {args.small} images {ws:.2f} s, {args.large} images {wl:.2f} s")
    print(f"marginal per image: {marginal * 1e3:.3f} ms = {marginal / floor:.2f} x floor (goal <= 1.3)")
    print("marginal per image by the stage's timers (ms):")
    for key in sorted(set(ts) | set(tl)):
        print(f"  {key:12s} {(tl.get(key, 0) - ts.get(key, 0)) / (args.large - args.small) * 1e3:8.3f}")


if __name__ == "__main__":
    main()
