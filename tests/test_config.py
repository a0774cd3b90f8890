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


def test_compose_command_applies_overrides(tmp_path):
    out = tmp_path / "p.yaml"
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    (tmp_path / "data").mkdir()
    (tmp_path / "data/a.extxyz").touch()
    shutil.copytree(ROOT / "data/example", tmp_path / "data/example")  # the ltau example the default names
    subprocess.run(["atomsieve", "compose", "dataset.paths=[data/a.extxyz]", "runtime.workers=2", "--out", str(out)],
                   check=True, cwd=tmp_path, env={"PATH": str(Path(__import__("sys").executable).parent) + ":/usr/bin:/bin"})
    cfg = load_config(out)
    assert cfg.dataset.paths == ["data/a.extxyz"] and cfg.runtime.workers == 2 and cfg.dataset.seed == 0
    assert overrides.read(tmp_path / "conf") == ["dataset.paths=[data/a.extxyz]", "runtime.workers=2"]


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
