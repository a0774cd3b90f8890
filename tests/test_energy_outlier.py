"""The energy_outlier score (README's "Adding a score" example): known answers."""

import json

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from conftest import ROOT, labelled_si

from pipeline.core.errors import InputError
from pipeline.scores.energy_outlier import outliers, robust_z
from stages import energy_outlier
from stages import hash as hash_stage
from stages.common import load_config


def test_robust_z_by_hand():
    per_atom = np.array([-4.30, -4.31, -4.29, -4.30, -3.00])
    # median -4.30; deviations 0, .01, .01, 0, 1.3; MAD 0.01; spread 1.4826 * 0.01
    z = robust_z(4 * per_atom, np.full(5, 4))
    np.testing.assert_allclose(z, np.array([0, -0.01, 0.01, 0, 1.3]) / 0.014826, rtol=1e-9)
    assert outliers(z, 3.5).tolist() == [4]
    with pytest.raises(InputError, match="same energy per atom"):
        robust_z(np.ones(5), np.ones(5))


def test_stage_flags_the_outlier_by_source(tmp_path):
    import ase.io

    frames = []
    for seed, e in enumerate([-4.30, -4.31, -4.29, -4.30, -3.00]):
        atoms = labelled_si(seed)
        atoms.calc = SinglePointCalculator(atoms, energy=e * len(atoms), forces=np.zeros((len(atoms), 3)))
        frames.append(atoms)
    ase.io.write(tmp_path / "d.extxyz", frames)
    cfg = load_config(ROOT / "params.yaml", [f"dataset.paths=[{tmp_path / 'd.extxyz'}]", f"dataset.root={tmp_path}"])
    hash_stage.run(cfg, tmp_path / "hash")
    done = energy_outlier.run(cfg, tmp_path / "out", tmp_path / "hash/images.extxyz")
    assert done["counts"]["outliers"] == 1 and done["outliers"] == [f"{tmp_path / 'd.extxyz'}@4"]
    scores = json.loads((tmp_path / "out/scores.json").read_text())
    assert max(v["energy_outlier_score"] for v in scores.values()) == pytest.approx(1.3 / 0.014826, rel=1e-6)
