"""Issue "Hardening, round two", driven as a user would: no command from config, what a
stage used is what DVC records, inputs that would pass through refused."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, example_config, params_file, stage_cli

BIN = str(Path(sys.executable).parent)


def project(tmp_path):
    """conf/ and the example's data, as a user's project has them."""
    import shutil

    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    shutil.copytree(ROOT / "data/example", tmp_path / "data/example")
    return tmp_path


def atomsieve(cwd, *args):
    return subprocess.run([f"{BIN}/atomsieve", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})


@pytest.mark.parametrize("kwargs,key", [
    ('{command:"touch MARK; echo"}', "potential.calculator_kwargs.command"),
    ('{profile:{command:"touch MARK"}}', "potential.calculator_kwargs.profile"),
    ('{mopac_command:"touch MARK"}', "potential.calculator_kwargs.mopac_command"),
    ('{directory:"/tmp"}', "potential.calculator_kwargs.directory"),
])
def test_no_command_from_config(tmp_path, kwargs, key):
    """MOPAC (a file-based calculator) with a command in calculator_kwargs: refused by
    compose and by the stage as DVC runs it, naming the key; no command runs, no file
    appears, in the project or elsewhere."""
    project(tmp_path)
    mark = tmp_path / "MARK"
    overrides = ["potential.type=ase", "potential.calculator=ase.calculators.mopac.MOPAC",
                 f"potential.calculator_kwargs={kwargs.replace('MARK', str(mark))}", "potential.parameters_optimize={A:[[default]]}"]
    proc = atomsieve(tmp_path, "compose", *overrides, "--out", "p.yaml")
    assert proc.returncode == 1 and key in proc.stderr and "refused" in proc.stderr, proc.stderr
    params = params_file(tmp_path / "params.yaml", [f"dataset.root={ROOT / 'data'}"], edit=lambda c: c["potential"].update(
        type="ase", calculator="ase.calculators.mopac.MOPAC", species=["Si"],
        calculator_kwargs=eval_kwargs(kwargs, mark), parameters_optimize={"A": [["default"]]}))
    from stages import hash as hash_stage

    hash_stage.run(example_config(), tmp_path / "hash")
    ran = stage_cli("fim_train", params, tmp_path / "out", "--images", tmp_path / "hash/images.extxyz", cwd=tmp_path)
    assert ran.returncode == 1 and key in ran.stderr.strip().splitlines()[-1], ran.stderr
    assert not mark.exists() and not list(tmp_path.glob("mopac*")) and not (tmp_path / "out").exists()


def eval_kwargs(text: str, mark: Path) -> dict:
    """The Hydra-style dict of the parametrisation as a Python dict."""
    import yaml

    return yaml.safe_load(text.replace("MARK", str(mark)).replace("{", "{ ").replace(":", ": "))


def test_a_dataset_replaced_while_hash_runs_fails_the_stage(tmp_path):
    """The data are read, then replaced before the stage ends: it fails, naming the file,
    rather than leaving DVC to record the new file beside outputs of the old."""
    import ase.io
    from conftest import labelled_si

    data = tmp_path / "data"
    data.mkdir()
    ase.io.write(data / "d.extxyz", [labelled_si(seed, repeat=(2, 2, 2)) for seed in range(600)])
    params = params_file(tmp_path / "p.yaml", [f"dataset.root={data}", f"dataset.paths=[{data / 'd.extxyz'}]"])
    proc = stage_cli("hash", params, tmp_path / "out", cwd=tmp_path, wait=False)
    for line in proc.stderr:  # the stage logs each step's time as it ends: "read" first
        if "read:" in line:
            ase.io.write(data / "new.extxyz", [labelled_si(seed) for seed in range(3)])
            (data / "new.extxyz").replace(data / "d.extxyz")
            break
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1 and "d.extxyz changed while the stage ran" in err, err
    assert "run it again" in err.strip().splitlines()[-1]


def test_unchanged_inputs_pass_and_any_change_is_named(tmp_path):
    from pipeline.core.errors import InputError
    from stages.common import check_unchanged, fingerprints

    (tmp_path / "d").mkdir()
    (tmp_path / "d/a.npz").write_bytes(b"1")
    (tmp_path / "p.yaml").write_text("x: 1\n")
    paths = [tmp_path / "p.yaml", tmp_path / "d"]
    before = fingerprints(paths)
    check_unchanged(before, paths)
    (tmp_path / "p.yaml").write_text("x: 2\n")
    with pytest.raises(InputError, match=r"p.yaml changed while the stage ran"):
        check_unchanged(before, paths)


def test_compose_refuses_while_dvc_holds_the_lock_and_names_a_damaged_lock_file(tmp_path):
    """DVC flocks .dvc/tmp/lock for the whole of `dvc repro`; compose waits for it to end.
    A dvc.lock cut short is named with the command that restores it."""
    import fcntl
    project(tmp_path)
    (tmp_path / ".dvc/tmp").mkdir(parents=True)
    lock = tmp_path / ".dvc/tmp/lock"
    lock.touch()
    with open(lock) as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = atomsieve(tmp_path, "compose", "dataset.seed=3")
        assert proc.returncode == 1 and "holds its lock; compose when it has finished" in proc.stderr
        assert not (tmp_path / "params.yaml").exists() and not (tmp_path / "conf/overrides.yaml").exists() or \
            "dataset.seed" not in (tmp_path / "conf/overrides.yaml").read_text()
    assert atomsieve(tmp_path, "compose", "dataset.seed=3").returncode == 0
    lines = (ROOT / "dvc.lock").read_text().splitlines()
    (tmp_path / "dvc.lock").write_text("\n".join(lines[:200]) + "\n      - path: [unclosed\n")
    proc = atomsieve(tmp_path, "compose", "dataset.seed=4")
    assert proc.returncode == 1 and "dvc.lock is damaged (line" in proc.stderr
    assert "git checkout -- dvc.lock" in proc.stderr


# --- the store checks what it serves ---------------------------------------------------------------------------


def forged(store, key, arrays):
    """An entry with the right key and a digest of what it holds, written as the store
    writes one: only its content is wrong."""
    store.put(key, arrays)


@pytest.mark.parametrize("bad", ["shape", "nan", "float32"])
def test_a_well_formed_entry_of_the_wrong_content_is_recomputed(tmp_path, bad, caplog):
    """fim_train on the example with a store holding, under one image's key, a (3, 3) FIM,
    NaNs or float32: the entry is dropped, said, recomputed, and the FIMs are the clean run's."""
    import numpy as np
    from conftest import kim_model_or_skip

    from pipeline.core.store import Store
    from stages import fim_train
    from stages import hash as hash_stage

    kim_model_or_skip("SW_StillingerWeber_1985_Si__MO_405512056662_005")
    cfg = example_config(f"store.path={tmp_path / 'store'}", "runtime.executor=serial")
    hash_stage.run(cfg, tmp_path / "hash")
    clean = fim_train.run(cfg, tmp_path / "clean", tmp_path / "hash/images.extxyz")
    store = Store(tmp_path / "store")
    store.pack()
    key = sorted(store._index)[0]
    good = store.get(key)["fim"]
    wrong = {"shape": np.eye(3), "nan": np.full_like(good, np.nan), "float32": good.astype(np.float32)}[bad]
    forged(store, key, {"fim": wrong})
    again = fim_train.run(cfg, tmp_path / "again", tmp_path / "hash/images.extxyz")
    assert again["counts"]["computed"] == 1 and clean["counts"]["computed"] == clean["counts"]["candidates"]
    assert "is not what FIM computes" in caplog.text
    np.testing.assert_array_equal(np.load(tmp_path / "again/fims.npz")["fim"], np.load(tmp_path / "clean/fims.npz")["fim"])
    forged(store, key, {"fim": wrong})
    assert store.gc()["damaged_entries"] == (0 if bad == "shape" else 1)  # gc cannot know a shape: the reader does


def test_a_read_only_store_with_a_damaged_entry_never_fails_a_stage(tmp_path):
    import numpy as np

    from pipeline.core.fanout import get_or_compute
    from pipeline.core.store import Store

    store = Store(tmp_path / "s")
    store.put("a", {"y": np.array([1.0])})
    store.put("b", {"y": np.array([2.0])})
    loose = next((tmp_path / "s/objects").glob("*/*.npz"))
    loose.write_bytes(b"damaged")
    for p in [*(tmp_path / "s").rglob("*"), tmp_path / "s"]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        out = get_or_compute(store, ["a", "b"], [1.0, 2.0], lambda x: {"y": np.array([x])})
        assert [r["y"][0] for r in out.results] == [1.0, 2.0]
    finally:
        for p in [tmp_path / "s", *(tmp_path / "s").rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


def test_store_maintenance_refuses_what_is_not_a_store(tmp_path):
    """`atomsieve store gc --path` a folder of the user's: refused, their stale *.tmp kept;
    a store in a system folder is refused when composed."""
    import time

    folder = tmp_path / "mine"
    (folder / "tmp").mkdir(parents=True)
    old = folder / "tmp/notes.tmp"
    old.write_text("2 hours of work")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    (folder / "thesis.tex").write_text("...")
    for action in ("gc", "pack", "info"):
        proc = atomsieve(tmp_path, "store", action, "--path", str(folder))
        assert proc.returncode == 1 and "is not an atomsieve store" in proc.stderr and old.exists(), proc.stderr
    proc = atomsieve(tmp_path, "store", "gc", "--path", "/var")
    assert proc.returncode == 1 and "system folder /var" in proc.stderr
    project(tmp_path)
    proc = atomsieve(tmp_path, "compose", "store.path=/etc/atomsieve")
    assert proc.returncode == 1 and "store.path: /etc/atomsieve is in the system folder /etc" in proc.stderr
    assert not Path("/etc/atomsieve").exists()


@pytest.mark.parametrize("override,message", [
    ("potential.parameters_optimize={A:[[10.0]],A:[[12.0]]}", "gives the key 'A' twice"),
    ("potential.parameters_optimize={A:[[10.0,11,12]]}", "A[0]: the value 10.0 is outside its own bounds [11.0, 12.0]"),
    ("potential.parameters_optimize={A:[[default,1,2]]}", "A[0]: the value 15.28"),
    ("potential.parameters_optimize={A:[[default,20,10]]}", "A[0]: expected lower < upper, got [20.0, 10.0]"),
])
def test_parameters_given_twice_or_outside_their_bounds_are_refused_at_compose(tmp_path, override, message):
    proc = atomsieve(project(tmp_path), "compose", override, "--out", "p.yaml")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and message in lines[0], proc.stderr


@pytest.mark.parametrize("where,text,message", [
    ("conf/dataset/example.yaml", "paths: [a\n", "while parsing a flow sequence"),
    ("conf/dataset/example.yaml", "paths: [x]\n", "found duplicate key paths"),
    ("conf/dataset/example.yaml", "seed: !!python/object/apply:os.system ['touch MARK']\n", "could not determine a constructor"),
    ("conf/overrides.yaml", "atomsieve_overrides: !!python/object/apply:os.system ['touch MARK']\n",
     "conf/overrides.yaml: not valid YAML"),
    ("conf/overrides.yaml", "atomsieve_overrides: []\natomsieve_overrides: ['dataset.seed=3']\n",
     "found the key 'atomsieve_overrides' twice"),
])
def test_damaged_or_hostile_yaml_in_conf_is_one_line_naming_the_file(tmp_path, where, text, message):
    root = project(tmp_path)
    path = root / where
    path.write_text((path.read_text() if path.exists() and where != "conf/overrides.yaml" else "") + text)
    proc = atomsieve(root, "compose", "--out", "p.yaml")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (root / "MARK").exists() and not (root / "p.yaml").exists()
    if where == "conf/overrides.yaml":  # the way out the message gives
        assert atomsieve(root, "compose", "--reset").returncode == 0


def test_input_keys_named_like_outputs_are_dropped_and_said(tmp_path, caplog):
    """Data carrying `quests_delta_entropy_score` or `selection_rank` would pass for
    atomsieve's results downstream: the hash stage drops them, says so, keeps the labels."""
    import ase.io
    import numpy as np
    from conftest import labelled_si

    from stages import hash as hash_stage
    from stages.common import load_config

    frames = [labelled_si(seed) for seed in range(4)]
    for atoms in frames[:3]:
        atoms.arrays["quests_delta_entropy_score"] = np.full(len(atoms), 7.0)
        atoms.info["selection_rank"] = 1
        atoms.info["fim_quantity"] = "energy"  # named like an output, but the request fim.quantity_key reads
    ase.io.write(tmp_path / "d.extxyz", frames)
    cfg = load_config(ROOT / "params.yaml", [f"dataset.paths=[{tmp_path / 'd.extxyz'}]", f"dataset.root={tmp_path}"])
    done = hash_stage.run(cfg, tmp_path / "hash")
    assert done["dropped_output_keys"] == {"selection_rank": 3, "quests_delta_entropy_score": 3}
    assert "dropped here" in caplog.text and "selection_rank (3 frames)" in caplog.text
    images = ase.io.read(tmp_path / "hash/images.extxyz", ":")
    assert all("selection_rank" not in a.info and "quests_delta_entropy_score" not in a.arrays for a in images)
    assert [a.info.get("fim_quantity") for a in images] == ["energy"] * 3 + [None]
    assert all(a.get_potential_energy() == pytest.approx(f.get_potential_energy()) for a, f in zip(images, frames))


@pytest.mark.parametrize("overrides,message", [
    (["quests.bandwidth=1e-300"], "quests.bandwidth: expected a width >= 1e-08"),
    (["quests.bandwidth=0"], "quests.bandwidth: expected a width >= 1e-08"),
    (["dataset.paths=[data/**]"], "data/example/ltau_errors.npy: expected a file ending in one of"),  # not "data: no such file"
    (["dataset.root=."], "dataset.root: '.' holds the pipeline's outputs/"),
    (["dataset.paths=[data/example/si.extxyz.gz]"], "expected a file ending in one of"),
])
def test_what_a_stage_would_refuse_compose_refuses_first_in_one_line(tmp_path, overrides, message):
    root = project(tmp_path)
    if "gz" in overrides[0]:
        (root / "data/example/si.extxyz.gz").write_bytes(b"")
    proc = atomsieve(root, "compose", *overrides, "--out", "p.yaml")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and message in lines[0], proc.stderr


def test_a_weight_bound_that_makes_matching_impossible_is_named():
    import numpy as np
    from conftest import matched

    from pipeline.scores.matching import MatchingError

    with pytest.raises(MatchingError, match=r"weight_upper_bound=1e-09 no candidate may weigh more"):
        matched(np.stack([np.eye(2), np.eye(2)]), np.eye(2), weight_upper_bound=1e-9)


def test_a_molecule_asked_for_stress_is_named(tmp_path):
    import ase.io
    from ase.build import molecule

    from pipeline.atoms.hashing import image_hash
    from stages import fim_train
    from stages.common import load_config

    atoms = molecule("H2O")
    atoms.info.update(image_hash=image_hash(atoms), source="d.extxyz@0", fim_quantity="stress")
    ase.io.write(tmp_path / "images.extxyz", atoms)
    cfg = load_config(ROOT / "params.yaml", [f"store.path={tmp_path / 's'}"])
    from pipeline.core.errors import InputError

    with pytest.raises(InputError, match=r"d.extxyz@0\): asks for stress, which needs a cell periodic"):
        fim_train.run(cfg, tmp_path / "out", tmp_path / "images.extxyz")



def test_an_ase_calculator_with_an_empty_list_parameter_is_not_a_traceback():
    from ase.calculators.lj import LennardJones

    from pipeline.models.ase_potential import ASEPotential

    class WithEmpty(LennardJones):
        default_parameters = {**LennardJones.default_parameters, "cutoffs": []}

    import test_hardening

    test_hardening.WithEmpty = WithEmpty
    pot = ASEPotential("test_hardening.WithEmpty", {})
    assert "cutoffs" not in pot.parameter_extents() and "epsilon" in pot.parameter_extents()


def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path):
    import ase.io
    from conftest import labelled_si

    ase.io.write(tmp_path / "d.extxyz", [labelled_si(s) for s in range(3)])
    params = params_file(tmp_path / "p.yaml", [f"dataset.root={tmp_path}", f"dataset.paths=[{tmp_path / 'd.extxyz'}]"])
    (tmp_path / "a_file").write_text("")  # where the outputs' folder should be (permissions do not stop root)
    proc = stage_cli("hash", params, tmp_path / "a_file/out", cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and lines[-1].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr


def test_a_sweeps_report_holds_its_own_experiments_only():
    """Sweep `A` and sweep `A-9`: A's report is A-0 and A-1, never A-9-0."""
    from stages.sweep import members

    data = {name: {} for name in ("A-0", "A-1", "A-9-0", "A-9-1", "AB-0", "A-x")}
    assert members("A", data) == ["A-0", "A-1"] and members("A-9", data) == ["A-9-0", "A-9-1"]
    assert members("A", data, ["A-1", "A-0", "A-5"]) == ["A-1", "A-0"]  # the record, where there is one


@pytest.mark.heavy
def test_ctrl_c_and_kill_of_atomsieve_experiment_leave_nothing_behind(repo_copy):
    """SIGINT to the process group while `atomsieve experiment` runs DVC (as a terminal's
    Ctrl-C does): one line, no traceback, no experiment recorded, no DVC process left.
    SIGKILL of atomsieve alone: its `dvc exp run` dies with it."""
    import signal
    import time

    from test_dvc import sh

    sh(repo_copy, "git", "add", "-A")
    sh(repo_copy, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "snapshot")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}

    def start():
        proc = subprocess.Popen([f"{BIN}/atomsieve", "experiment", "sw_si_elastic"], cwd=repo_copy, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline and not dvc_children(proc.pid):
            time.sleep(0.2)
        assert dvc_children(proc.pid), "atomsieve experiment started no dvc exp run"
        time.sleep(3)  # into the stages
        return proc

    proc = start()
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode != 0 and "Traceback" not in err, err
    assert "sw_si_elastic" not in sh(repo_copy, "dvc", "exp", "list", "--all-commits")
    assert sh(repo_copy, "git", "status", "--porcelain", "params.yaml").strip() == ""  # nothing staged left
    assert "interrupted: " in err.strip().splitlines()[-1]
    proc = start()
    children = dvc_children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2)
    assert children and not [c for c in children if alive(c)], "an orphan dvc exp run"


def dvc_children(pid: int) -> list[int]:
    """The `dvc exp` processes whose parent is ``pid``, read from /proc (``ps`` cuts its
    lines at $COLUMNS where that is set, and CI's long paths then hide the arguments)."""
    found = []
    for entry in (e for e in Path("/proc").iterdir() if e.name.isdigit()):
        try:
            stat = (entry / "stat").read_text()
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # after the command name, which may hold spaces
        if ppid == pid and any(a.endswith(b"dvc") for a in args) and b"exp" in args:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(state) and not state.startswith("Z")


@pytest.mark.heavy
@pytest.mark.parametrize("kind", ["unlabelled", "all duplicates"])
def test_unlabelled_or_all_duplicate_data_pass_the_default_pipeline(repo_copy, kind):
    """README's own-data route with data that carry no labels, or one structure many times:
    `dvc repro` passes, the scores that need labels say they scored nothing."""
    import json

    import ase.io
    from conftest import labelled_si
    from test_dvc import sh

    frames = [labelled_si(seed) for seed in range(6)] if kind == "unlabelled" else [labelled_si(0)] * 5
    for atoms in frames if kind == "unlabelled" else ():
        atoms.calc = None
    (repo_copy / "data/mine").mkdir()
    ase.io.write(repo_copy / "data/mine/d.extxyz", frames)
    sh(repo_copy, "atomsieve", "compose", "dataset.paths=[data/mine/d.extxyz]", "ltau=disabled",
       *(["dataset.test_fraction=0"] if kind != "unlabelled" else []))
    sh(repo_copy, "git", "add", "-A")
    sh(repo_copy, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "mine")
    log = sh(repo_copy, "dvc", "repro")
    assert "energy_outlier: nothing scored" in log
    summary = json.loads((repo_copy / "outputs/energy_outlier/summary.json").read_text())
    assert summary["counts"]["scored"] == 0 and summary["note"]
    assert (repo_copy / "outputs/recommend/recommendation.csv").exists()


@pytest.mark.heavy
def test_ctrl_c_of_a_sweep_leaves_no_queued_experiment_nor_traceback(repo_copy):
    import signal
    import time

    from test_dvc import sh

    sh(repo_copy, "git", "add", "-A")
    sh(repo_copy, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "snapshot")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    proc = subprocess.Popen([f"{BIN}/atomsieve", "sweep", "dataset.seed=1,2,3", "--name", "cc", "-j", "1"],
                            cwd=repo_copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline and "Running" not in sh(repo_copy, "dvc", "queue", "status"):
        time.sleep(1)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("interrupted: atomsieve sweep cc: interrupted;")
    status = sh(repo_copy, "dvc", "queue", "status")
    assert not [line for line in status.splitlines() if " cc-" in line and "Queued" in line], status


@pytest.mark.heavy
def test_two_sweeps_at_once_both_finish(repo_copy):
    """Each sweep stops the queue's workers only when nothing else waits for them: two
    sweeps started together both end with their report, neither stranded."""
    import time

    from test_dvc import sh

    sh(repo_copy, "git", "add", "-A")
    sh(repo_copy, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "snapshot")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    procs = []
    for name, seed in (("one", 1), ("two", 2)):
        procs.append(subprocess.Popen([f"{BIN}/atomsieve", "sweep", f"dataset.seed={seed}", "--name", name, "-j", "1",
                                       "--timeout", "400"], cwd=repo_copy, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
        time.sleep(5)
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    for name in ("one", "two"):
        assert (repo_copy / f"outputs/sweeps/{name}/report.md").exists()
