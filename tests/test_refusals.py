"""The bad-input and fault campaign as tests, through the stage commands as `dvc repro`
runs them: every bad input exits non-zero with one `error:` line naming the file,
frame or key, no traceback and no partial output, and the next good run passes;
security cases prove that nothing ran; store faults never lose finished work."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from conftest import ROOT, kim_model_or_skip, labelled_si
from omegaconf import OmegaConf

from stages.common import load_config

SW = "SW_StillingerWeber_1985_Si__MO_405512056662_005"
BIN = str(Path(sys.executable).parent)


@pytest.fixture
def project(tmp_path):
    """A project folder: conf/, data/ with four good Si frames (and the LTAU example),
    params.yaml naming the good file, a store of its own, serial runs."""
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    (tmp_path / "data").mkdir()
    shutil.copytree(ROOT / "data/example", tmp_path / "data/example")
    ase.io.write(tmp_path / "data/good.extxyz", [labelled_si(s, (1 + s % 2, 1, 1)) for s in range(4)])
    write_params(tmp_path)
    return tmp_path


def write_params(project, *overrides, paths=("data/good.extxyz",)):
    cfg = load_config(ROOT / "params.yaml", [f"dataset.paths={json.dumps(list(paths))}", "store.path=store",
                                             "runtime.executor=serial", "dataset.require=[]", *overrides])
    OmegaConf.save(OmegaConf.structured(cfg), project / "params.yaml")


def run(project, *args, env=None):
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})}
    return subprocess.run(list(args), cwd=project, capture_output=True, text=True, env=env, timeout=300)


def stage(project, name, **inputs):
    args = [sys.executable, "-m", f"stages.{name}", "--params", "params.yaml", "--out", f"out/{name}"]
    for key, value in inputs.items():
        args += [f"--{key}", str(value)]
    return run(project, *args)


def refused(proc, *parts):
    """One `error:` line holding every part, exit 1, no traceback."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(p in last for p in parts), last


def good_run(project, name="hash"):
    """After a refusal, the good config runs: the stage (after hash) exits 0 with outputs."""
    write_params(project)
    assert stage(project, "hash").returncode == 0
    if name != "hash":
        kim_model_or_skip(SW)
        proc = stage(project, name, images="out/hash/images.extxyz")
        assert proc.returncode == 0 and (project / f"out/{name}/summary.json").exists(), proc.stderr


def frame(n=8, **labels):
    atoms = bulk("Si", "diamond", a=5.431, cubic=True)[:n] if n else Atoms(cell=np.eye(3) * 5, pbc=True)
    atoms.rattle(0.02, seed=1)
    if labels:
        atoms.calc = SinglePointCalculator(atoms, **labels)
    return atoms


def write_bad(path: Path, atoms):
    ase.io.write(path, atoms, format="extxyz")


BAD_FRAMES = {  # case -> (how to write data/bad.extxyz, parts of the message)
    "nan-energy": (lambda p: write_bad(p, frame(energy=float("nan"), forces=np.zeros((8, 3)))),
                   ["bad.extxyz: frame 0", "label 'energy'", "finite"]),
    "inf-forces": (lambda p: write_bad(p, frame(energy=1.0, forces=np.full((8, 3), np.inf))),
                   ["bad.extxyz: frame 0", "label 'forces'", "finite"]),
    "nan-stress": (lambda p: write_bad(p, frame(energy=1.0, stress=np.full(6, np.nan))),
                   ["bad.extxyz: frame 0", "label 'stress'"]),
    "forces-R2": (lambda p: p.write_text(
        '2\nProperties=species:S:1:pos:R:3:forces:R:2 energy=1.0 pbc="F F F"\n'
        "Si 0 0 0 0.1 0.2\nSi 2.35 0 0 0.1 0.2\n"), ["bad.extxyz: frame 0", "label 'forces'", "(2, 3)", "(2, 2)"]),
    "zero-volume": (lambda p: p.write_text(
        '2\nLattice="5 0 0 5 0 0 0 0 5" Properties=species:S:1:pos:R:3 pbc="T T T"\n'
        "Si 0 0 0\nSi 1 1 1\n"), ["bad.extxyz: frame 0", "cell", "zero volume"]),
    "tiny-cell": (lambda p: write_bad(p, Atoms("Si", cell=np.diag([0.4, 5, 5]), pbc=True)),
                  ["bad.extxyz: frame 0", "atom 0 and its own periodic image", "dataset.min_distance"]),
    "close-atoms": (lambda p: write_bad(p, Atoms("Si2", positions=[[0, 0, 0], [0.05, 0, 0]])),
                    ["bad.extxyz: frame 0", "atoms 0 and 1", "0.05 Å apart"]),
    "no-atoms": (lambda p: write_bad(p, [frame(), frame(0)]), ["bad.extxyz: frame 1", "no atoms"]),
    "unknown-element": (lambda p: p.write_text('1\nProperties=species:S:1:pos:R:3 pbc="F F F"\nXx 0 0 0\n'),
                        ["bad.extxyz: frame 0", "unknown element symbol 'Xx'"]),
    "nan-position": (lambda p: p.write_text('1\nProperties=species:S:1:pos:R:3 pbc="F F F"\nSi nan 0 0\n'),
                     ["bad.extxyz: frame 0", "atom 0", "non-finite position"]),
    "empty-file": (lambda p: p.write_text(""), ["bad.extxyz: no frames"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_hash_refuses_a_bad_frame_and_a_good_run_follows(project, case):
    make, parts = BAD_FRAMES[case]
    make(project / "data/bad.extxyz")
    write_params(project, paths=("data/good.extxyz", "data/bad.extxyz"))
    refused(stage(project, "hash"), *parts)
    assert not (project / "out").exists()
    write_params(project)
    assert stage(project, "hash").returncode == 0 and (project / "out/hash/images.extxyz").exists()


def test_hash_refuses_a_file_name_extxyz_cannot_hold(project):
    shutil.copy(project / "data/good.extxyz", project / 'data/a"b\nc.extxyz')
    write_params(project, paths=("data/good.extxyz", 'data/a"b\nc.extxyz'))
    refused(stage(project, "hash"), "dataset.paths", "cannot be recorded in extxyz")
    assert not (project / "out").exists()
    good_run(project)


def test_fim_train_names_an_image_with_a_species_the_model_lacks(project):
    kim_model_or_skip(SW)
    atoms = labelled_si(3)
    atoms.numbers[0] = 29
    ase.io.write(project / "data/cu.extxyz", [labelled_si(1), atoms])
    write_params(project, paths=("data/cu.extxyz",))
    assert stage(project, "hash").returncode == 0
    refused(stage(project, "fim_train", images="out/hash/images.extxyz"),
            "data/cu.extxyz@1", "species ['Cu'] not in potential.species ['Si']")
    assert not (project / "out/fim_train").exists()
    good_run(project, "fim_train")


CONFIG_CASES = {  # override -> parts of the message
    "quests.bandwidth=nan": ["quests.bandwidth", "finite"],
    "ltau.k=0": ["ltau.k", ">= 1"],
    "quests.reference=data/missing.extxyz": ["quests.reference", "data/missing.extxyz: no such file"],
    "store.path=data/good.extxyz": ["store.path", "is a file"],
    "fim.derivative.numdifftools={bogus:1}": ["fim.derivative.numdifftools", "bogus"],
    "runtime.workers=-1": ["runtime.workers", "got -1"],
    "target.properties.elastic.covariance={relative:-0.1}": ["covariance.relative", "> 0"],
    "target.properties.elastic.covariance={diagonal:[1,-1,1]}": ["covariance.diagonal", ">= 0"],
    "target.properties.elastic.covariance={diagonal:[1,inf,1]}": ["covariance.diagonal[1]", "finite"],
    "matching.weight_upper_bound=0": ["matching.weight_upper_bound", "> 0"],
    "dataset.min_distance=-1": ["dataset.min_distance"],
}


@pytest.mark.parametrize("override", sorted(CONFIG_CASES))
def test_compose_refuses_a_bad_value_naming_the_key(project, override):
    extra = ["fim.derivative.method=numdifftools"] if "numdifftools" in override else []
    before = (project / "conf/overrides.yaml").read_text()
    proc = run(project, "atomsieve", "compose", *extra, override, "--out", "p.yaml")
    refused(proc, *CONFIG_CASES[override])
    assert not (project / "p.yaml").exists() and (project / "conf/overrides.yaml").read_text() == before
    assert run(project, "atomsieve", "compose", "--out", "p.yaml").returncode == 0


def test_a_malformed_params_file_is_an_error_naming_it(project):
    (project / "params.yaml").write_text("dataset:\n  paths: [data/good.extxyz\n")
    refused(stage(project, "hash"), "params.yaml: not valid YAML")
    assert not (project / "out").exists()
    good_run(project)


def test_an_unreachable_dask_scheduler_fails_fast_naming_it(project):
    pytest.importorskip("distributed", reason="Dask distributed not installed")
    write_params(project, "runtime.executor=dask", "runtime.dask.cluster=address", "runtime.dask.address=tcp://127.0.0.1:9",
                 "runtime.min_parallel_seconds=0")
    assert stage(project, "hash").returncode == 0
    start = time.monotonic()
    refused(stage(project, "descriptors", images="out/hash/images.extxyz"),
            "runtime.dask.address", "tcp://127.0.0.1:9")
    assert time.monotonic() - start < 25  # Dask's own default waits 30 s, then a traceback
    assert not (project / "out/descriptors").exists()
    good_run(project, "descriptors")


# security: no code from data or config


def test_a_lammps_species_cannot_add_a_command(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["target"]["properties"] = {"a": {"type": "lattice_constant", "lattice": "diamond", "backend": "lammps",
                                            "species": "Si\nshell touch pwned\n#", "covariance": {"relative": 0.1}}}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    refused(stage(project, "fim_property"), "target.properties.*.species", "element symbol")
    assert not (project / "pwned").exists() and not (project / "out").exists()
    kim_model_or_skip(SW)
    write_params(project)
    assert stage(project, "fim_property").returncode == 0
    from pipeline.core.errors import InputError
    from pipeline.models.lammps import script

    for args in [("SW", "Si\nshell touch pwned", "diamond", 5.43, {}), ("SW\nshell touch x", "Si", "diamond", 5.43, {}),
                 ("SW", "Si", "diamond", "5.43\nshell touch x", {}), ("SW", "Si", "diamond", 5.43, {("A x", 0): 1.0})]:
        with pytest.raises(InputError, match="backend lammps"):
            script(*args, Path("o"), Path("d"))


def test_a_calculator_that_is_not_an_ase_calculator_is_never_called(project):
    write_params(project, "potential.type=ase", "potential.calculator=subprocess.run",
                 f"potential.calculator_kwargs={{args:[touch,{project / 'pwned'}]}}")
    assert stage(project, "hash").returncode == 0
    refused(stage(project, "fim_train", images="out/hash/images.extxyz"), "potential.calculator",
            "expected an ASE calculator class", "'subprocess.run'")
    assert not (project / "pwned").exists() and not (project / "out/fim_train").exists()
    good_run(project, "fim_train")


def test_a_planted_lock_link_is_not_followed(project):
    store = project / "store"
    store.mkdir()
    victim = project / "victim.txt"
    victim.write_text("precious")
    (store / ".lock").symlink_to(victim)
    for action in ("gc", "pack"):
        refused(run(project, "atomsieve", "store", action, "--path", "store"), ".lock", "must be a plain file")
    assert victim.read_text() == "precious"


# the store: never unusable, never loses finished work


@pytest.mark.parametrize("index", ["[]", '{"k": [0]}', '{"k": [-5, 10]}', '{"k": "x"}', "not json"])
def test_a_malformed_pack_index_is_ignored_recomputed_and_removed_by_gc(project, index):
    assert stage(project, "hash").returncode == 0
    packs = project / "store/packs"
    packs.mkdir(parents=True)
    (packs / "pack-00000000000000000001-deadbeef.idx").write_text(index)
    (packs / "pack-00000000000000000001-deadbeef.pack").write_bytes(b"junk")
    proc = stage(project, "descriptors", images="out/hash/images.extxyz")
    assert proc.returncode == 0 and "damaged pack index" in proc.stderr, proc.stderr
    assert json.loads((project / "out/descriptors/summary.json").read_text())["counts"]["computed"] == 4
    assert run(project, "atomsieve", "store", "info", "--path", "store").returncode == 0
    gc = run(project, "atomsieve", "store", "gc", "--path", "store")
    assert gc.returncode == 0 and json.loads(gc.stdout)["damaged_indexes"] == 1
    again = stage(project, "descriptors", images="out/hash/images.extxyz")
    assert json.loads((project / "out/descriptors/summary.json").read_text())["counts"]["computed"] == 0, again.stderr


def test_a_store_that_cannot_be_written_warns_and_the_stage_finishes(project):
    assert stage(project, "hash").returncode == 0
    (project / "store").mkdir()
    (project / "store/packs").write_text("a file where the store keeps its packs")
    proc = stage(project, "descriptors", images="out/hash/images.extxyz")
    assert proc.returncode == 0 and "used but not cached" in proc.stderr, proc.stderr
    assert (project / "out/descriptors/descriptors.npz").exists()


def test_temporary_files_of_a_killed_write_are_removed_by_the_next_run(project):
    assert stage(project, "hash").returncode == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = project / f"out/hash/.images.extxyz.{dead.stdout.strip()}.0123abcd.tmp"
    stale.write_text("half")
    assert stage(project, "hash").returncode == 0 and not stale.exists()


def test_workers_start_only_where_they_pay(tmp_path):
    from pipeline.core.fanout import get_or_compute
    from pipeline.core.store import Store

    class Never:
        count, min_parallel_seconds = 2, 1.0  # ~0.2 s of work: less than a 1 s start-up saves

        def __call__(self):
            raise AssertionError("a pool was started for too little work")

    def slow(x):
        time.sleep(0.002)
        return {"x": np.array([x])}

    keys = [f"{i:040x}" for i in range(100)]
    out = get_or_compute(Store(tmp_path), keys, list(range(100)), slow, Never())
    assert out.computed == 100


def slow_fim_config(project, executor, n=60):
    """fim_train over n 64-atom cells with numdifftools' adaptive Jacobian: many
    seconds of work, so a kill lands mid-run."""
    cells = []
    for s in range(n):
        atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat((2, 2, 2))
        atoms.rattle(0.05, seed=s)
        cells.append(atoms)
    ase.io.write(project / "data/cells.extxyz", cells)
    write_params(project, f"runtime.executor={executor}", "runtime.workers=2", "runtime.min_parallel_seconds=0",
                 "fim.derivative.method=numdifftools", paths=("data/cells.extxyz",))
    assert stage(project, "hash").returncode == 0


def start_fim(project):
    args = [sys.executable, "-m", "stages.fim_train", "--params", "params.yaml", "--out", "out/fim_train",
            "--images", "out/hash/images.extxyz"]
    return subprocess.Popen(args, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def stored_entries(project) -> int:
    from pipeline.core.store import Store

    store = Store(project / "store")
    store._load_index()
    return len(store._index) + len(list((project / "store/objects").glob("*/*.npz")))


@pytest.mark.heavy
def test_a_killed_serial_run_resumes_with_only_what_was_missing(project):
    kim_model_or_skip(SW)
    n = 400  # about 20 s of work: the first segment is stored after 5 s
    slow_fim_config(project, "serial", n)
    proc = start_fim(project)
    deadline = time.monotonic() + 120
    while stored_entries(project) == 0 and time.monotonic() < deadline:  # serial runs store as they go
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = stored_entries(project)
    assert 0 < kept < n
    done = stage(project, "fim_train", images="out/hash/images.extxyz")
    assert done.returncode == 0, done.stderr
    counts = json.loads((project / "out/fim_train/summary.json").read_text())["counts"]
    assert counts["cached"] == kept and counts["computed"] == n - kept


def children_of(pid: int) -> list[int]:
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if int(fields.get("PPid", "0")) == pid:
            out.append(int(status.parent.name))
    return out


@pytest.mark.heavy
def test_a_killed_process_pool_run_leaves_no_workers(project):
    kim_model_or_skip(SW)
    slow_fim_config(project, "process")
    proc = start_fim(project)
    deadline = time.monotonic() + 60
    family: set[int] = set()
    while time.monotonic() < deadline and len(family) < 3:  # forkserver and two workers
        time.sleep(0.5)
        family = set(children_of(proc.pid))
        family |= {g for c in family for g in children_of(c)}
    assert len(family) >= 3, "the pool did not start"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in family):
        time.sleep(0.5)
    alive = [p for p in family if Path(f"/proc/{p}").exists()
             and "zombie" not in Path(f"/proc/{p}/status").read_text().lower()]
    for p in alive:
        os.kill(p, signal.SIGKILL)
    assert not alive, f"{len(alive)} processes outlived the killed stage"
