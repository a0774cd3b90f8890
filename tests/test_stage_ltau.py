"""Stages ltau_fit and ltau on the bundled LTAU example, and their bad input."""

import subprocess
import sys

import ase.io
import numpy as np
import pytest
from conftest import ROOT, describe, example_config
from omegaconf import OmegaConf

from pipeline.scores import ltau as lib
from stages import descriptors, ltau, ltau_fit
from stages import hash as hash_stage

pytest.importorskip("faiss", reason="faiss-cpu not installed")


def config(tmp, *overrides):
    return example_config(f"store.path={tmp / 'store'}", "runtime.executor=serial",
                          f"ltau.train_images={ROOT / 'data/example/ltau_train.extxyz'}",
                          f"ltau.error_logs=[{ROOT / 'data/example/ltau_errors.npy'}]", *overrides)


def test_scores_equal_a_direct_computation(tmp_path):
    cfg = config(tmp_path)
    hash_stage.run(cfg, tmp_path / "hash")
    descriptors.run(cfg, tmp_path / "desc", tmp_path / "hash/images.extxyz")
    ltau_fit.run(cfg, tmp_path / "fit", tmp_path / "hash/images.extxyz")
    ltau.run(cfg, tmp_path / "ltau", tmp_path / "fit", tmp_path / "desc/descriptors.npz", tmp_path / "hash/images.extxyz")
    train = np.concatenate([describe(a) for a in ase.io.read(ROOT / "data/example/ltau_train.extxyz", ":")])
    errors = np.linalg.norm(np.load(ROOT / "data/example/ltau_errors.npy").astype(float), axis=2).T
    edges = np.geomspace(errors[errors > 0].min(), errors.max(), 101)
    mids = np.sqrt(edges[:-1] * edges[1:])
    pdfs = np.array([np.histogram(e, edges)[0] / len(e) for e in errors])
    images = ase.io.read(tmp_path / "hash/images.extxyz", ":")
    query = np.concatenate([describe(a) for a in images])
    nearest = np.argsort(((query[:, None] - train[None]) ** 2).sum(axis=2), axis=1)[:, :10]
    expected = pdfs[nearest].mean(axis=1) @ mids
    scored = ase.io.read(tmp_path / "ltau/uncertainty.extxyz", ":")
    got = np.concatenate([a.arrays["ltau_forces_uq_score"] for a in scored])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=6e-9)  # extxyz keeps 8 decimals


def test_bad_inputs(tmp_path):
    atoms = sum(len(a) for a in ase.io.read(ROOT / "data/example/ltau_train.extxyz", ":"))
    bad_log = tmp_path / "short.npy"
    np.save(bad_log, np.ones((4, atoms - 1, 3)))
    params = tmp_path / "p.yaml"
    OmegaConf.save(OmegaConf.structured(config(tmp_path, f"ltau.error_logs=[{bad_log}]")), params)
    hash_stage.run(config(tmp_path), tmp_path / "hash")
    run = lambda: subprocess.run([sys.executable, "-m", "stages.ltau_fit", "--params", str(params),  # noqa: E731
                                  "--images", str(tmp_path / "hash/images.extxyz"), "--out", str(tmp_path / "o")],
                                 capture_output=True, text=True, cwd=tmp_path)
    proc = run()  # the log outside dataset.root: DVC would not see it change
    assert proc.returncode == 1 and f"ltau.error_logs: {bad_log} is outside dataset.root=" in proc.stderr
    OmegaConf.save(OmegaConf.structured(config(tmp_path, f"ltau.error_logs=[{bad_log}]", "dataset.root=/")), params)
    proc = run()
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and f"short.npy: error log has {atoms - 1} atoms; the training descriptors have {atoms}" in last
    assert not (tmp_path / "o").exists()
    with pytest.raises(Exception, match="cannot read the FAISS index"):
        lib.read_index(tmp_path / "absent.faiss")


def test_training_images_outside_the_dataset_are_refused_and_off_says_so(tmp_path):
    """The example's error logs scored against someone else's data are refused, naming
    the fix; with ltau=disabled every output says LTAU was not run."""
    import json

    from ase.build import bulk

    from pipeline.core.errors import ConfigError

    other = tmp_path / "mine.extxyz"
    cells = [bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 1, 1)) for _ in range(3)]
    for seed, atoms in enumerate(cells):
        atoms.rattle(0.05, seed=seed)
    ase.io.write(other, cells)
    cfg = config(tmp_path, f"dataset.paths=[{other}]", "dataset.root=/")
    hash_stage.run(cfg, tmp_path / "hash")
    train = len(ase.io.read(ROOT / "data/example/ltau_train.extxyz", ":"))
    with pytest.raises(ConfigError, match=rf"{train} of its {train} images are not in the dataset.*compose ltau=disabled"):
        ltau_fit.run(cfg, tmp_path / "fit", tmp_path / "hash/images.extxyz")
    assert not (tmp_path / "fit").exists()
    off = config(tmp_path, f"dataset.paths=[{other}]", "dataset.root=/", "ltau.enabled=false")
    assert ltau_fit.run(off, tmp_path / "fit", tmp_path / "hash/images.extxyz")["counts"] == {"enabled": False}
    done = ltau.run(off, tmp_path / "ltau", tmp_path / "fit", tmp_path / "absent.npz", tmp_path / "hash/images.extxyz")
    assert done["counts"] == {"enabled": False}
    assert json.loads((tmp_path / "ltau/metrics.json").read_text()) == {"enabled": False}
    assert (tmp_path / "ltau/uncertainty.extxyz").read_bytes() == b""
