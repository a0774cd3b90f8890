"""Budgeted selection: simulated annealing (automatic schedule) against greedy forward
selection and scikit-matter's farthest-point sampling, side by side, on

- 5,000 synthetic candidates, K = 50: rank-3 FIMs over P = 9 parameters (a force
  candidate's Jacobian has a few strong directions), scales spread over 1.5 decades,
  and a 16-dimensional descriptor per candidate for FPS;
- the bundled example's 40 candidates (outputs of `dvc repro`), K = 4 and K = 8.

    python benchmarks/bench_select.py [--seconds 40]

Objective: log det(Σ F + εI), higher is better. Goal (issue 14): annealing ≥ greedy
and ≥ FPS, in ≤ 60 s in all (greedy and the schedule's exploration included).
"""

import argparse
import time
from pathlib import Path

import numpy as np

from pipeline.core import annealing
from pipeline.scores import selection as sel

ROOT = Path(__file__).resolve().parents[1]


def synthetic(n=5000, p=9, rank=3, d=16, seed=0):
    rng = np.random.default_rng(seed)
    j = rng.normal(size=(n, rank, p)) * 10 ** rng.uniform(-0.75, 0.75, size=(n, 1, 1))
    return np.einsum("nrp,nrq->npq", j, j), rng.normal(size=(n, d))


def example():
    import ase.io

    rows = ase.io.read(ROOT / "outputs/fim_train/fims.extxyz", ":")
    p = int(round(np.sqrt(np.asarray(rows[0].info["fim_training_set_score"]).size)))
    fims = np.stack([np.asarray(a.info["fim_training_set_score"], dtype=float).reshape(p, p) for a in rows])
    with np.load(ROOT / "outputs/descriptors/descriptors.npz") as npz:
        index = {h: i for i, h in enumerate(npz["image_hash"])}
        x = np.stack([npz["descriptors"][npz["offsets"][index[a.info["image_hash"]]]:
                                         npz["offsets"][index[a.info["image_hash"]] + 1]].mean(axis=0) for a in rows])
    return fims, x


def compare(name: str, fims, x, k: int, seconds: float) -> str:
    p = sel.problem(len(fims), k, np.ones(len(fims)), None, ())
    objective = sel.Information(fims, 1e-8)
    began = time.perf_counter()
    greedy = sel.greedy(p, objective)
    t_greedy = time.perf_counter() - began
    began = time.perf_counter()
    fps = sel.top_k(p, sel.fps_order(x, 0))
    t_fps = time.perf_counter() - began
    began = time.perf_counter()
    schedule = annealing.auto_schedule(greedy, objective.energy, sel.move(p), seconds, 0, objective.delta)
    done = annealing.anneal(greedy, objective.energy, sel.move(p), schedule, 0, objective.delta)
    t_anneal = time.perf_counter() - began
    rng = np.random.default_rng(1)
    random = np.mean([objective.score(tuple(sorted(rng.choice(len(fims), k, replace=False)))) for _ in range(20)])
    score = objective.score(done.state)
    return (f"| {name} | {len(fims)} | {k} | {score:.6g} ({t_anneal + t_greedy:.1f} s incl. greedy) | "
            f"{objective.score(greedy):.6g} ({t_greedy:.1f} s) | {objective.score(fps):.6g} ({t_fps:.1f} s) | "
            f"{random:.6g} | {score - objective.score(greedy):+.3g} | {schedule.steps} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=40.0, help="annealing time of the automatic schedule")
    args = parser.parse_args()
    print("| case | candidates | K | annealing | greedy | FPS | random (mean of 20) | annealing − greedy | steps |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    fims, x = synthetic()
    print(compare("synthetic", fims, x, 50, args.seconds), flush=True)
    if (ROOT / "outputs/fim_train/fims.extxyz").exists():
        fims, x = example()
        for k in (4, 8):
            print(compare("example", fims, x, k, min(args.seconds, 5.0)), flush=True)


if __name__ == "__main__":
    main()
