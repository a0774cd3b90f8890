"""Stage fim_train: outputs, caching, executors, and bad input through the command line."""

import json
import subprocess
import sys

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from conftest import ROOT, kim_model_or_skip
from omegaconf import OmegaConf

from pipeline.atoms.hashing import image_hash
from stages import fim_train
from stages.common import load_config
from stages.models import potential_of

SW = "SW_StillingerWeber_1985_Si__MO_405512056662_005"


def images_file(tmp_path, n=4, **info):
    frames = []
    for seed in range(n):
        atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat((1 + seed % 2, 1, 1))
        atoms.rattle(0.05, seed=seed)
        atoms.info.update(image_hash=image_hash(atoms), **info)
        frames.append(atoms)
    path = tmp_path / "images.extxyz"
    ase.io.write(path, frames)
    return path, frames


def config(tmp_path, *overrides):
    """params.yaml with SW's A and B the parameters (what the direct computations here
    take), unless ``overrides`` set them."""
    from dataclasses import replace

    cfg = load_config(ROOT / "params.yaml", [f"store.path={tmp_path / 'store'}", f"dataset.root={tmp_path}",
                                             "runtime.executor=serial", *overrides])
    if any("parameters_optimize" in o for o in overrides):
        return cfg
    return replace(cfg, potential=replace(cfg.potential, parameters_optimize={"A": [["default"]], "B": [["default"]]}))


@pytest.fixture(autouse=True)
def sw():
    kim_model_or_skip(SW)


def test_outputs_match_a_direct_computation_and_are_cached(tmp_path):
    path, frames = images_file(tmp_path)
    cfg = config(tmp_path)
    first = fim_train.run(cfg, tmp_path / "out", path)
    assert first["counts"] == {"images": 4, "candidates": 4, "computed": 4, "cached": 0, "parameters": 2,
                               "zero_information": 0}
    assert first["labels"] == {0: {"parameter": "A", "extent": 0}, 1: {"parameter": "B", "extent": 0}}
    npz = np.load(tmp_path / "out/fims.npz")
    assert list(npz["image_hash"]) == [a.info["image_hash"] for a in frames]
    assert list(npz["parameter"]) == ["A", "B"] and npz["fim"].shape == (4, 2, 2)
    back = ase.io.read(tmp_path / "out/fims.extxyz", ":")
    np.testing.assert_array_equal(np.stack([a.info["fim_training_set_score"] for a in back]), npz["fim"])
    # the same FIM from the library directly, image 2
    from test_fim import SW_SPEC, task

    from pipeline.models.potential import make_potential
    from pipeline.scores.fim import fim_of

    pot = make_potential(SW_SPEC)
    direct = fim_of(pot, task(pot, ["A", "B"], ase.io.read(path, 2)))["fim"]  # the positions the stage read
    np.testing.assert_allclose(npz["fim"][2], direct, rtol=1e-12)
    assert (tmp_path / "out/eigenvalues.png").read_bytes()[:4] == b"\x89PNG"
    again = fim_train.run(cfg, tmp_path / "out2", path)
    assert again["counts"]["computed"] == 0
    np.testing.assert_array_equal(np.load(tmp_path / "out2/fims.npz")["fim"], npz["fim"])
    changed = fim_train.run(config(tmp_path, "fim.derivative.rel_step=1e-5"), tmp_path / "out3", path)
    assert changed["counts"]["computed"] == 4


def test_process_pool_equals_serial(tmp_path):
    path, _ = images_file(tmp_path, n=6)
    fim_train.run(config(tmp_path), tmp_path / "serial", path)
    pooled = config(tmp_path, f"store.path={tmp_path / 'store2'}", "runtime.executor=process", "runtime.workers=2",
                    "runtime.min_parallel_seconds=0")
    assert fim_train.run(pooled, tmp_path / "pool", path)["counts"]["computed"] == 6
    np.testing.assert_array_equal(np.load(tmp_path / "pool/fims.npz")["fim"], np.load(tmp_path / "serial/fims.npz")["fim"])


def test_per_image_quantity_overrides_the_default(tmp_path):
    path, frames = images_file(tmp_path, n=2)
    frames[1].info["fim_quantity"] = "energy"
    ase.io.write(path, frames)
    fim_train.run(config(tmp_path), tmp_path / "o", path)
    npz = np.load(tmp_path / "o/fims.npz")
    assert list(npz["quantity"]) == ["forces", "energy"]
    from test_fim import SW_SPEC, task

    from pipeline.models.potential import make_potential
    from pipeline.scores.fim import fim_of

    pot = make_potential(SW_SPEC)
    energy_fim = fim_of(pot, task(pot, ["A", "B"], ase.io.read(path, 1), "energy"))["fim"]
    np.testing.assert_allclose(npz["fim"][1], energy_fim, rtol=1e-12)


def test_several_quantities_per_image_are_separate_candidates(tmp_path):
    from test_fim import SW_SPEC, task

    from pipeline.models.potential import make_potential
    from pipeline.scores.fim import fim_of

    path, frames = images_file(tmp_path, n=2)
    frames[0].info["fim_quantity"] = "energy,forces,stress"
    for atoms in frames:
        atoms.arrays["keep"] = (np.arange(len(atoms)) < 3).astype(float)
    ase.io.write(path, frames)
    done = fim_train.run(config(tmp_path, "fim.mask_key=keep"), tmp_path / "o", path)
    assert done["counts"]["candidates"] == 4 and done["counts"]["images"] == 2
    npz = np.load(tmp_path / "o/fims.npz")
    h0, h1 = (a.info["image_hash"] for a in frames)
    assert list(npz["quantity"]) == ["energy", "forces", "stress", "forces"]
    assert list(npz["image_hash"]) == [h0, h0, h0, h1]
    assert [bool(m) for m in npz["mask"]] == [False, True, False, True]  # a per-atom mask weights forces only
    assert len(set(npz["candidate"])) == 4 and npz["candidate"][1].startswith(f"{h0}:forces:")
    pot = make_potential(SW_SPEC)
    atoms = ase.io.read(path, 0)
    for i, quantity in enumerate(["energy", "stress"]):
        direct = fim_of(pot, task(pot, ["A", "B"], atoms, quantity))["fim"]
        np.testing.assert_allclose(npz["fim"][2 * i], direct, rtol=1e-12)
    rows = ase.io.read(tmp_path / "o/fims.extxyz", ":")
    assert [a.info["fim_quantity"] for a in rows] == list(npz["quantity"])
    assert [a.info["candidate"] for a in rows] == list(npz["candidate"])


def test_per_atom_mask_keeps_only_those_atoms(tmp_path):
    path, frames = images_file(tmp_path, n=2)
    for atoms in frames:
        atoms.arrays["keep"] = (np.arange(len(atoms)) < 3).astype(float)
    ase.io.write(path, frames)
    fim_train.run(config(tmp_path, "fim.mask_key=keep"), tmp_path / "masked", path)
    from test_fim import SW_SPEC, task

    from pipeline.models.potential import make_potential
    from pipeline.scores.fim import fim_of

    pot = make_potential(SW_SPEC)
    jac = fim_of(pot, task(pot, ["A", "B"], ase.io.read(path, 0)))["jacobian"][:9]  # atoms 0-2
    np.testing.assert_allclose(np.load(tmp_path / "masked/fims.npz")["fim"][0], jac.T @ jac, rtol=1e-12)


def test_masked_and_unmasked_frames_mixed_give_the_fims_of_each(tmp_path, caplog):
    """fim.mask_key on one frame only: that frame's forces FIM is of its masked atoms,
    the other's of all its atoms (each computed here directly), and the log says so."""
    from test_fim import SW_SPEC, task

    from pipeline.models.potential import make_potential
    from pipeline.scores.fim import fim_of

    path, frames = images_file(tmp_path, n=2)
    frames[0].arrays["keep"] = (np.arange(len(frames[0])) < 3).astype(float)
    ase.io.write(path, frames)
    with caplog.at_level("WARNING"):
        fim_train.run(config(tmp_path, "fim.mask_key=keep", "fim.quantity=forces"), tmp_path / "o", path)
    assert "1 of 2 images have no such array and are unmasked" in caplog.text
    npz = np.load(tmp_path / "o/fims.npz")
    pot = make_potential(SW_SPEC)
    masked = fim_of(pot, task(pot, ["A", "B"], ase.io.read(path, 0)))["jacobian"][:9]  # atoms 0-2 of frame 0
    whole = fim_of(pot, task(pot, ["A", "B"], ase.io.read(path, 1)))["jacobian"]
    np.testing.assert_allclose(npz["fim"][0], masked.T @ masked, rtol=1e-12)
    np.testing.assert_allclose(npz["fim"][1], whole.T @ whole, rtol=1e-12)
    assert [bool(m) for m in npz["mask"]] == [True, False]


def run_cli(tmp_path, path, *overrides):
    params = tmp_path / "p.yaml"
    OmegaConf.save(OmegaConf.structured(config(tmp_path, *overrides)), params)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "stages.fim_train", "--params", str(params), "--out", str(out),
                           "--images", str(path)], capture_output=True, text=True, cwd=tmp_path)
    return proc, out


@pytest.mark.parametrize("change,overrides,message", [
    ({"fim_quantity": "energy forces"}, [], "expected one of ['energy', 'forces', 'stress'], or several of them"),
    ({}, ["fim.mask_key=nope"], "no image has a per-atom array 'nope'"),
    ({}, ["potential.parameters_optimize={sigmaa: [[default]]}"], "has no parameter 'sigmaa'; it has ['A', 'B', 'p'"),
    ({}, ["potential.kim_id=Nope_Model"], "no KIM portable model 'Nope_Model'"),
    ({}, ["fim.mask_files=[MASKS]"], "mask has 5 values; expected 24"),
    ({}, ["fim.mask_files=[MASKS,MASK2]"], "expected 1 or 3 files (one per image), got 2"),
    ({}, ["potential.transform.type=log", "potential.parameters_optimize={q: [[default]]}"], "log needs nonzero"),
    ("missing", [], "no such file (run the stage that makes it first)"),
], ids=["quantities", "mask-key", "parameter", "model", "mask-length", "mask-count", "log-zero", "no-images"])
def test_bad_input(tmp_path, change, overrides, message):
    path, _ = images_file(tmp_path, n=3, **(change if isinstance(change, dict) else {}))
    if change == "missing":
        path.unlink()
    np.savetxt(tmp_path / "m.txt", np.ones(5))
    np.savetxt(tmp_path / "m2.txt", np.ones(24))
    overrides = [o.replace("MASKS", str(tmp_path / "m.txt")).replace("MASK2", str(tmp_path / "m2.txt"))
                 for o in overrides]
    proc, out = run_cli(tmp_path, path, *overrides)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and last.startswith("error: ") and message in last, proc.stderr
    assert not out.exists()


def test_committed_example_config_parses():
    cfg = load_config(ROOT / "params.yaml")
    assert json.loads(potential_of(cfg.potential).calculator_kwargs) == {}
