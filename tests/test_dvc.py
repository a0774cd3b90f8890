"""The DVC pipeline in a copy of this repository: repro, no-op repro, exp run -S."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.heavy
BIN = str(Path(sys.executable).parent)


def sh(cwd, *args):
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    proc = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture
def committed(repo_copy):
    sh(repo_copy, "git", "add", "-A")
    sh(repo_copy, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "snapshot", "--allow-empty")
    return repo_copy


def test_what_reruns_after_what_change(committed):
    """One fresh-clone run, then: a second repro runs nothing; runtime settings rerun
    nothing; matching.* reruns only the stages with it among their params (and recommend,
    which reads match's new weights); the dataset's seed reruns from hash. (One test, so
    that the fresh run of the example is paid once.)"""
    import time

    start = time.perf_counter()
    first = sh(committed, "dvc", "repro")
    assert all(f"Running stage '{s}'" in first for s in ("hash", "fim_train", "fim_property", "match"))
    assert time.perf_counter() - start < 120  # the end-to-end example, venv in place
    assert (committed / "outputs/hash/images.extxyz").exists()
    second = sh(committed, "dvc", "repro")
    assert "Running stage" not in second and "up to date" in second
    sh(committed, "atomsieve", "compose", "runtime.workers=1", "store.path=/tmp/elsewhere")
    assert "Running stage" not in sh(committed, "dvc", "repro")
    sh(committed, "atomsieve", "compose", "matching=sdpa")
    again = sh(committed, "dvc", "repro")
    rerun = {line.split("'")[1] for line in again.splitlines() if line.startswith("Running stage")}
    assert rerun == {"match", "learn", "select", "recommend"}
    assert '"solver": "SDPA"' in (committed / "outputs/match/summary.json").read_text()
    sh(committed, "atomsieve", "compose", "dataset.seed=3")
    assert "Running stage 'hash'" in sh(committed, "dvc", "repro")


def test_exp_run_composes_hydra_overrides(committed):
    sh(committed, "dvc", "exp", "run", "hash", "-S", "dataset.seed=5", "-S", "dataset.test_fraction=0.5")  # all it reads
    params = (committed / "params.yaml").read_text()
    assert "seed: 5" in params and "test_fraction: 0.5" in params
    assert '"test": 17' in (committed / "outputs/hash/metrics.json").read_text()  # half of 33 images, rounded up
    queued = sh(committed, "dvc", "exp", "run", "-S", "dataset.seed=1,2", "--queue")
    assert queued.count("Queued experiment") == 2


def test_adding_two_images_to_two_hundred_computes_only_those(committed):
    import ase.io
    from ase.build import bulk

    def cells(first, n):
        out = []
        for seed in range(first, first + n):
            atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat((2, 2, 2))
            atoms.rattle(0.05, seed=seed)
            out.append(atoms)
        return out

    data = committed / "data/big"
    data.mkdir()
    ase.io.write(data / "cells.extxyz", cells(0, 200))
    sh(committed, "atomsieve", "compose", "dataset.paths=[data/big/cells.extxyz]", "dataset.require=[]", "ltau=disabled",
       "potential=sw_si_all")
    sh(committed, "dvc", "repro", "fim_train")
    summary = lambda: json.loads((committed / "outputs/fim_train/summary.json").read_text())["counts"]  # noqa: E731
    assert summary() == {"images": 200, "candidates": 200, "computed": 200, "cached": 0, "parameters": 9,
                         "zero_information": 0}
    ase.io.write(data / "cells.extxyz", cells(0, 202))
    sh(committed, "dvc", "repro", "fim_train")
    assert summary() == {"images": 202, "candidates": 202, "computed": 2, "cached": 200, "parameters": 9,
                         "zero_information": 0}


