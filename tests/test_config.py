"""conf/ composes, params.yaml is what conf/ composes to, and bad options are refused."""

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pipeline.core.errors import ConfigError
from stages import overrides
from stages.cli import compose as compose_params
from stages.common import load_config
from stages.schema import GROUPS, Config, register

register()


def group_options():
    for group in GROUPS:
        for path in sorted((ROOT / "conf" / group).glob("*.yaml")):
            yield group, path.stem


@pytest.mark.parametrize("group,option", list(group_options()))
def test_every_config_file_composes_and_validates(tmp_path, group, option):
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = compose("config", overrides=[f"{group}={option}"])
    path = tmp_path / "params.yaml"
    OmegaConf.save(cfg, path)
    assert isinstance(load_config(path), Config)


def test_committed_params_equal_what_conf_composes_to(tmp_path):
    recorded = overrides.read(ROOT / "conf")
    assert recorded is not None, "conf/overrides.yaml is missing: run `atomsieve compose --reset`"
    compose_params(recorded, tmp_path / "params.yaml", ROOT / "conf", record=False)
    assert (tmp_path / "params.yaml").read_text() == (ROOT / "params.yaml").read_text(), (
        "params.yaml is stale: run `atomsieve compose` and commit it")


def project(tmp_path) -> Path:
    """conf/, the example's data and a second dataset (three rattled cells), as a user has them."""
    import ase.io
    from ase.build import bulk

    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    shutil.copytree(ROOT / "data/example", tmp_path / "data/example")
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    cells = [bulk("Si", "diamond", a=5.43, cubic=True) for _ in range(3)]
    for seed, atoms in enumerate(cells):
        atoms.rattle(0.05, seed=seed)
    (tmp_path / "data/mine").mkdir()
    ase.io.write(tmp_path / "data/mine/a.extxyz", cells)
    return tmp_path


def atomsieve(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": str(Path(__import__("sys").executable).parent) + ":/usr/bin:/bin"}
    return subprocess.run(["atomsieve", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_compose_command_applies_overrides_and_out_is_a_preview(tmp_path):
    root = project(tmp_path)
    proc = atomsieve(root, "compose", "dataset.paths=[data/mine/a.extxyz]", "ltau=disabled", "runtime.workers=2",
                     "--out", "p.yaml")
    assert proc.returncode == 0, proc.stderr
    cfg = load_config(root / "p.yaml")
    assert cfg.dataset.paths == ["data/mine/a.extxyz"] and cfg.runtime.workers == 2 and cfg.dataset.seed == 0
    assert overrides.read(root / "conf") == [] and "a preview: nothing recorded" in proc.stderr
    assert (root / "params.yaml").read_text() == (ROOT / "params.yaml").read_text()


def test_compose_adds_to_what_is_recorded_and_says_what_changed(tmp_path):
    """A then B keeps A (README's own-data recipe, then a selection preset); a key given
    again replaces only itself; --show, --forget and --reset do what they say."""
    root = project(tmp_path)
    first = atomsieve(root, "compose", "dataset.paths=[data/mine/a.extxyz]", "ltau=disabled", "dataset.seed=3")
    assert first.returncode == 0, first.stderr
    assert "+ dataset.paths=[data/mine/a.extxyz]    (new)" in first.stderr
    assert "dataset.paths: ['data/example/si_candidates.extxyz'] -> ['data/mine/a.extxyz']" in first.stderr
    second = atomsieve(root, "compose", "selection=information", "selection.budget=2", "dataset.seed=4")
    assert second.returncode == 0, second.stderr
    cfg = load_config(root / "params.yaml")
    assert cfg.dataset.paths == ["data/mine/a.extxyz"] and not cfg.ltau.enabled  # A is kept
    assert cfg.selection.enabled and cfg.selection.budget == 2 and cfg.dataset.seed == 4
    assert "= dataset.paths=[data/mine/a.extxyz]    (kept)" in second.stderr
    assert "~ dataset.seed=4    (was dataset.seed=3)" in second.stderr
    assert "selection.budget: 10 -> 2" in second.stderr and "dataset.paths" not in second.stderr.split("params.yaml:")[1]
    recorded = ["dataset.paths=[data/mine/a.extxyz]", "ltau=disabled", "selection=information", "selection.budget=2",
                "dataset.seed=4"]
    assert overrides.read(root / "conf") == recorded
    assert atomsieve(root, "compose", "--show").stdout.split() == recorded
    assert atomsieve(root, "compose", "--forget", "dataset.seed").returncode == 0
    assert load_config(root / "params.yaml").dataset.seed == 0 and "dataset.seed=4" not in overrides.read(root / "conf")
    missing = atomsieve(root, "compose", "--forget", "dataset.sed")
    assert missing.returncode == 1 and "no recorded override of ['dataset.sed']" in missing.stderr
    assert atomsieve(root, "compose", "--reset").returncode == 0
    assert overrides.read(root / "conf") == [] and load_config(root / "params.yaml").dataset.paths == [
        "data/example/si_candidates.extxyz"]


def test_compose_refuses_the_examples_ltau_on_other_data_and_data_the_model_cannot_compute(tmp_path):
    root = project(tmp_path)
    before = (root / "params.yaml").read_text()
    proc = atomsieve(root, "compose", "dataset.paths=[data/mine/a.extxyz]")
    assert proc.returncode == 1 and "ltau.train_images=data/example/ltau_train.extxyz" in proc.stderr
    assert "atomsieve compose ltau=disabled" in proc.stderr and overrides.read(root / "conf") == []
    import ase.io
    from ase.build import bulk

    ase.io.write(root / "data/mine/ge.extxyz", bulk("Ge", "diamond", a=5.66, cubic=True))
    proc = atomsieve(root, "compose", "dataset.paths=[data/mine/ge.extxyz]", "ltau=disabled")
    assert proc.returncode == 1 and "the data hold ['Ge'], which potential.species ['Si']" in proc.stderr
    assert (root / "params.yaml").read_text() == before and overrides.read(root / "conf") == []


@pytest.mark.parametrize("override,match", [
    ("runtime.wrkers=2", "runtime.wrkers"),
    ("runtime.workers=abc", "workers"),
    ("runtime.executor=mpi", r"runtime.executor: expected one of \['dask', 'process', 'serial'\], got 'mpi'"),
    ("dataset.on_conflict=merge", "dataset.on_conflict"),
    ("dataset.require=[charge]", "dataset.require"),
])
def test_bad_options_are_refused_with_the_key(tmp_path, override, match):
    with pytest.raises(ConfigError, match=match):
        compose_params([override], tmp_path / "p.yaml", ROOT / "conf", record=False)
    assert not (tmp_path / "p.yaml").exists()


def test_unknown_key_in_params_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text((ROOT / "params.yaml").read_text() + "dataset_typo: 1\n")
    with pytest.raises(ConfigError, match="dataset_typo"):
        load_config(path)


def test_a_dict_override_replaces_the_presets_dict_and_a_section_merges(tmp_path):
    out = tmp_path / "p.yaml"
    compose_params(["potential=sw_si_all", "potential.parameters_optimize={sigma:[[default]]}",
                    "potential.transform={type:log}"], out, ROOT / "conf", record=False)
    cfg = load_config(out)
    assert cfg.potential.parameters_optimize == {"sigma": [["default"]]}
    assert cfg.potential.transform.type == "log" and cfg.potential.transform.a == []


def test_recorded_overrides_come_first_and_given_ones_win():
    assert overrides.combined(["dataset.seed=3", "potential=sw_si_all", "dataset.paths=[data/a.xyz]"],
                              ["dataset.seed=5", "potential=lj_ase"]) == [
        "dataset.paths=[data/a.xyz]", "dataset.seed=5", "potential=lj_ase"]


def test_experiment_workspaces_share_the_project_root(tmp_path):
    from stages.common import project_root, untracked_hint

    work = tmp_path / "proj/.dvc/tmp/exps/tmpab12cd/sub"
    work.mkdir(parents=True)
    assert project_root(work) == (tmp_path / "proj").resolve()
    assert project_root(tmp_path / "proj") == (tmp_path / "proj").resolve()
    assert "git add" in untracked_hint("dataset.paths: data/x.extxyz: no such file", work)
    assert untracked_hint("dataset.paths: data/x.extxyz: no such file", tmp_path / "proj") == ""


def test_experiment_checks_the_preset_with_the_recorded_overrides_before_any_stage(tmp_path):
    """Recorded overrides made for MoS2 data, then a silicon preset: refused at once, naming
    the problem, and nothing handed to DVC."""
    root = project(tmp_path)
    (root / "conf/overrides.yaml").write_text(overrides.text([
        "potential.kim_id=SW_MX2_WenShirodkarPlechac_2017_MoS__MO_201919462778_001", "potential.species=[Mo,S]"]))
    proc = atomsieve(root, "experiment", "sw_si_elastic")
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and "potential" in proc.stderr
    assert "running: dvc exp run" not in proc.stderr and not (root / "outputs").exists()
