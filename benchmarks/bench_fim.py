"""FIMs of training configurations: atomsieve against the floor and an Orchestrator-style
baseline, side by side on this machine.

    python benchmarks/bench_fim.py [--baseline-images 20]

Cases: 9 rattled 64-atom diamond Si cells with P = 2 (A, B), and 200 such cells with
all 9 SW parameters; forces; central differences (2P evaluations, rel_step 1e-4).
Per image it prints:
- floor: (2P+1) x one kimpy force evaluation of a 64-atom cell, measured here;
- atomsieve compute: fim_of in one process (one model, parameters set in place);
- atomsieve stage path: training_fims with a fresh store (every entry encoded, written
  in segments of up to 256 with one fsync each): serial; on a 2-worker process pool, forced (pool start-up included);
  and as the stage runs by default ("auto": workers only for more than 2 s of work);
- baseline: Orchestrator-style, an ASE KIM calculator created per image and
  numdifftools' default Jacobian, on the first --baseline-images images.
Goals: atomsieve compute within 2x of the floor; at least 50x faster than the baseline.
"""

import argparse
import tempfile
import time

import numdifftools as nd
import numpy as np
from ase.build import bulk
from ase.calculators.kim import KIM

from pipeline.atoms.hashing import image_hashes
from pipeline.core.executors import ExecutorSpec
from pipeline.core.store import Store
from pipeline.models.derivatives import Derivative, resolve
from pipeline.models.parameters import parse
from pipeline.models.potential import PotentialSpec, make_potential
from pipeline.models.transforms import Transform
from pipeline.scores.fim import FimTask, fim_of
from pipeline.scores.training_fim import candidates, training_fims
from stages.schema import RuntimeConfig

MODEL = "SW_StillingerWeber_1985_Si__MO_405512056662_005"
SPEC = PotentialSpec("kim", MODEL, ("Si",), None, "{}", 0.5)
ALL9 = ["A", "B", "p", "q", "sigma", "gamma", "cutoff", "lambda", "costheta0"]
CENTRAL = Derivative("central", 1e-4, 1e-6, "{}", None)
IDENTITY = Transform("identity", (), (), ())


def cells(n: int, seed: int = 0) -> list:
    base = bulk("Si", "diamond", a=5.431, cubic=True).repeat((2, 2, 2))
    out = []
    for i in range(n):
        atoms = base.copy()
        atoms.rattle(0.05, seed=seed + i)
        out.append(atoms)
    return out


def floor_per_image(pot, atoms, p: int, reps: int = 300) -> float:
    pot.compute(atoms, "forces")
    start = time.perf_counter()
    for _ in range(reps):
        pot.compute(atoms, "forces")
    return (2 * p + 1) * (time.perf_counter() - start) / reps


def compute_per_image(pot, frames, names) -> float:
    spec = parse({n: [["default"]] for n in names})
    assignments = resolve(spec, pot)
    start = time.perf_counter()
    for atoms in frames:
        fim_of(pot, FimTask(SPEC, assignments, len(names), IDENTITY, CENTRAL, "forces", None, atoms))
    return (time.perf_counter() - start) / len(frames)


def stage_per_image(frames, names, executor) -> float:
    spec = parse({n: [["default"]] for n in names})
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        hashes = image_hashes(frames)
        cands = candidates(frames, hashes, [("forces",)] * len(frames), [None] * len(frames))
        out = training_fims(frames, cands, SPEC, spec, IDENTITY, CENTRAL, Store(root), executor)
        elapsed = time.perf_counter() - start
    assert out.computed == len(frames)
    return elapsed / len(frames)


def baseline_per_image(frames, names) -> tuple[float, int]:
    """An ASE KIM calculator per image and numdifftools' default Jacobian."""
    evaluations = 0
    start = time.perf_counter()
    for atoms in frames:
        calc = KIM(MODEL)
        work = atoms.copy()
        work.calc = calc
        theta0 = np.array([calc.get_parameters(**{n: [0]})[n][1][0] for n in names])

        def forces(theta, work=work, calc=calc):
            nonlocal evaluations
            evaluations += 1
            calc.set_parameters(**{n: [[0], [float(v)]] for n, v in zip(names, theta)})
            return work.get_forces().reshape(-1)

        nd.Jacobian(forces)(theta0)
    return (time.perf_counter() - start) / len(frames), evaluations // len(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-images", type=int, default=20, help="baseline runs on this many of the 200")
    args = parser.parse_args()
    pot = make_potential(SPEC)
    pool = ExecutorSpec("process", 2, None, 0.0)  # always start the workers
    print(f"{'case':28s} {'floor':>9s} {'compute':>9s} {'x floor':>8s} {'serial':>9s} {'2 procs':>9s} "
          f"{'auto':>9s} {'baseline':>9s} {'evals':>6s} {'speed-up':>9s}   (ms per image)")
    for label, n, names in [("9 cells, P=2 (A, B)", 9, ["A", "B"]), ("200 cells, P=9 (all)", 200, ALL9)]:
        frames = cells(n)
        floor = floor_per_image(pot, frames[0], len(names))
        compute = compute_per_image(pot, frames, names)
        serial = stage_per_image(frames, names, None)
        procs = stage_per_image(frames, names, pool)
        auto = stage_per_image(frames, names, ExecutorSpec("process", 2, None, RuntimeConfig().min_parallel_seconds))
        base, evals = baseline_per_image(frames[: min(n, args.baseline_images)], names)
        print(f"{label:28s} {floor * 1e3:9.3f} {compute * 1e3:9.3f} {compute / floor:7.2f}x {serial * 1e3:9.3f} "
              f"{procs * 1e3:9.3f} {auto * 1e3:9.3f} {base * 1e3:9.1f} {evals:6d} {base / compute:8.0f}x")
    print("speed-up = baseline / atomsieve compute; x floor = atomsieve compute / floor")


if __name__ == "__main__":
    main()
