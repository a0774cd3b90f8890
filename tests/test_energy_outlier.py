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


def test_configuration_types_are_scored_within_their_type():
    """Slabs sit 0.3 eV/atom above bulk by nature: scored against everything, every slab is
    an outlier; within its type, only the one wrong label is (closed form per group)."""
    from pipeline.scores.energy_outlier import UNSCORED, robust_z_by_group

    bulk = [-4.30, -4.31, -4.29, -4.30, -4.32, -4.28, -4.30, -4.31, -4.29]
    slab = [-4.00, -4.01, -3.99, -4.02, -3.50]  # the last: a wrong label
    kinds = ["bulk"] * 9 + ["slab"] * 5 + ["vacancy"]
    per_atom = np.array(bulk + slab + [-4.25])
    z, basis = robust_z_by_group(8 * per_atom, np.full(15, 8), kinds)
    assert outliers(z, 3.5).tolist() == [13]
    assert z[13] == pytest.approx(0.5 / (1.4826 * 0.01), rel=1e-9)  # slab median -4.00, MAD 0.01
    assert basis == ["bulk"] * 9 + ["slab"] * 5 + [UNSCORED] and np.isnan(z[14])  # one vacancy: no spread
    ungrouped = robust_z(8 * per_atom, np.full(15, 8))
    assert outliers(ungrouped, 3.5).tolist() == [9, 10, 11, 12, 13]  # ungrouped, every slab stands out


@pytest.mark.parametrize("labels", ["none", "same"])
def test_unlabelled_or_uniform_data_are_not_scored_and_do_not_fail(tmp_path, labels):
    """README: no stage needs labels. Unlabelled frames, or frames all of one energy per
    atom, leave nothing to score: said in the log and the summary, exit 0."""
    import ase.io

    frames = [labelled_si(seed) for seed in range(5)]
    for atoms in frames:
        atoms.calc = None if labels == "none" else SinglePointCalculator(atoms, energy=-4.3 * len(atoms))
    ase.io.write(tmp_path / "d.extxyz", frames)
    cfg = load_config(ROOT / "params.yaml", [f"dataset.paths=[{tmp_path / 'd.extxyz'}]", f"dataset.root={tmp_path}"])
    hash_stage.run(cfg, tmp_path / "hash")
    done = energy_outlier.run(cfg, tmp_path / "out", tmp_path / "hash/images.extxyz")
    assert done["counts"]["outliers"] == 0 and done["counts"]["scored"] == 0
    assert ("no image has an energy label" if labels == "none" else "same energy per atom") in done["note"]
    assert json.loads((tmp_path / "out/metrics.json").read_text()) == {"outliers": 0, "max_abs_z": None}
