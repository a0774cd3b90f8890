"""A 4-experiment sweep over dataset.seed on the example, after one workspace run, in a
fresh clone of this repository: how much the experiments recompute (FIMs and
descriptors: goal 0, everything from the store) and where each experiment's wall time
goes (per stage: Python imports, compute as the stage's summary times it; the rest is
DVC, Hydra's composition and process start-up).

    python benchmarks/bench_sweep.py [--jobs 1]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)
STAGES = ("hash", "fim_train", "fim_property", "match", "descriptors", "quests", "ltau_fit", "ltau",
          "energy_outlier", "learn", "select")


def sh(cwd, *args) -> str:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    proc = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{args} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def summary(repo: Path, rev: str, stage: str) -> dict:
    lock = yaml.safe_load(sh(repo, "git", "show", f"{rev}:dvc.lock"))
    path = f"outputs/{stage}/summary.json"
    md5 = next(o["md5"] for o in lock["stages"][stage]["outs"] if o["path"] == path)
    return json.loads((repo / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).read_text())


def import_seconds(repo: Path, stage: str) -> float:
    start = time.perf_counter()
    sh(repo, sys.executable, "-c", f"import stages.{stage}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        repo = Path(scratch) / "repo"
        sh(ROOT, "git", "clone", "-q", str(ROOT), str(repo))
        sh(repo, "dvc", "repro")
        sh(repo, "git", "add", "-A")
        sh(repo, "git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "workspace run")
        start = time.perf_counter()
        sh(repo, "atomsieve", "sweep", "dataset.seed=range(1,5)", "--name", "seeds", "-j", str(args.jobs))
        wall = time.perf_counter() - start
        shown = json.loads(sh(repo, "dvc", "exp", "show", "--json", "--no-pager"))
        revs = {r["name"]: r["rev"] for c in shown for e in c.get("experiments") or [] for r in e["revs"]}
        imports = {s: import_seconds(repo, s) for s in STAGES}
        print(f"4 experiments, {args.jobs} queue worker(s): {wall:.1f} s in all, {wall / 4:.1f} s per experiment")
        print("| experiment | FIMs computed | descriptors computed | " + " | ".join(STAGES) + " |")
        print("|" + " --- |" * (3 + len(STAGES)))
        compute_total = 0.0
        for name in sorted(n for n in revs if n.startswith("seeds-")):
            sums = {s: summary(repo, revs[name], s) for s in STAGES}
            compute = {s: sums[s]["timings"].get("total", sum(sums[s]["timings"].values())) for s in STAGES}
            compute_total += sum(compute.values())
            print(f"| {name} | {sums['fim_train']['counts']['computed']} | {sums['descriptors']['counts']['computed']} | "
                  + " | ".join(f"{compute[s]:.2f}" for s in STAGES) + " |")
        print("| imports (s, each stage's process) | | | " + " | ".join(f"{imports[s]:.2f}" for s in STAGES) + " |")
        per_exp_compute, per_exp_imports = compute_total / 4, sum(imports.values())
        print(f"per experiment: compute {per_exp_compute:.1f} s, imports {per_exp_imports:.1f} s, the rest (DVC, "
              f"Hydra, process start) {wall * args.jobs / 4 - per_exp_compute - per_exp_imports:.1f} s")


if __name__ == "__main__":
    main()
