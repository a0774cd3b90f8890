"""Issue "Hardening, round two", driven as a user would: no command from config, what a
stage used is what DVC records, inputs that would pass through refused."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, example_config, params_file, stage_cli

BIN = str(Path(sys.executable).parent)


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
    import shutil

    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    shutil.copytree(ROOT / "data/example", tmp_path / "data/example")
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
