"""Stages descriptors and quests on a small dataset, and their bad input."""

import json
import math
from dataclasses import replace

import ase.io
import numpy as np
import pytest
from conftest import ROOT, describe, labelled_si, params_file, stage_cli

from pipeline.core.errors import InputError
from pipeline.scores import entropy
from stages import descriptors, quests
from stages import hash as hash_stage
from stages.common import load_config
from stages.schema import QuestsConfig


@pytest.fixture
def prepared(tmp_path):
    frames = [labelled_si(s, (1 + s % 2, 1, 1)) for s in range(6)]
    ase.io.write(tmp_path / "d.extxyz", frames)
    cfg = load_config(ROOT / "params.yaml", [f"dataset.paths=[{tmp_path / 'd.extxyz'}]", f"dataset.root={tmp_path}",
                                             "dataset.require=[]", f"store.path={tmp_path / 'store'}",
                                             "runtime.executor=serial", "dataset.test_fraction=0.34"])
    hash_stage.run(cfg, tmp_path / "hash")
    descriptors.run(cfg, tmp_path / "desc", tmp_path / "hash/images.extxyz")
    return cfg, tmp_path


def test_outputs(prepared):
    cfg, tmp = prepared
    images = ase.io.read(tmp / "hash/images.extxyz", ":")
    npz = np.load(tmp / "desc/descriptors.npz")
    assert list(npz["image_hash"]) == [a.info["image_hash"] for a in images]
    np.testing.assert_array_equal(npz["descriptors"][npz["offsets"][2]:npz["offsets"][3]], describe(images[2]))
    result = quests.run(cfg, tmp / "q", tmp / "desc/descriptors.npz", tmp / "hash/images.extxyz")
    x = npz["descriptors"]
    lp = entropy.log_kernel_sums(x, x, 0.015, QuestsConfig().batch_size)
    m = json.loads((tmp / "q/summary.json").read_text())["counts"]  # every number; metrics.json: the headline
    assert m["entropy"] == pytest.approx(entropy.entropy(lp)) and m["environments"] == len(x)
    assert m["quests_efficiency_score"] == pytest.approx(m["entropy"] / math.log(len(x)))
    train = np.concatenate([describe(a) for a in images if a.info["split"] == "train"])
    dh = np.concatenate([a.arrays["quests_delta_entropy_score"] for a in ase.io.read(tmp / "q/delta_entropy.extxyz", ":")])
    # per-atom arrays go through extxyz, which ASE writes with 8 decimals
    np.testing.assert_allclose(dh, -entropy.log_kernel_sums(x, train, 0.015, QuestsConfig().batch_size), rtol=0, atol=6e-9)
    assert result["counts"]["reference_environments"] == len(train)


def cli(tmp, module, *args, overrides=()):
    return stage_cli(module, params_file(tmp / "p.yaml", overrides), tmp / "o", *args, cwd=tmp), tmp / "o"


def test_bad_inputs(prepared):
    _, tmp = prepared
    images = str(tmp / "hash/images.extxyz")
    nan = tmp / "nan.npz"
    with np.load(tmp / "desc/descriptors.npz") as npz:
        values = npz["descriptors"].copy()
        values[3, 5] = np.nan
        np.savez(nan, image_hash=npz["image_hash"], offsets=npz["offsets"], descriptors=values)
    ref = tmp / "ref.extxyz"
    ase.io.write(ref, labelled_si(40))
    cases = [
        (["--descriptors", str(tmp / "absent.npz"), "--images", images], [], "cannot read descriptors"),
        (["--descriptors", str(nan), "--images", images], [], "NaN or inf (rows [3]"),
        (["--descriptors", str(tmp / "desc/descriptors.npz"), "--images", images],
         [f"quests.reference={ref}", "descriptors.k=8", f"store.path={tmp / 'store'}", f"dataset.root={tmp}"],
         "expected descriptors of width 63 (those of the dataset), got 15"),
        (["--descriptors", str(tmp / "desc/descriptors.npz"), "--images", images],
         [f"quests.reference={ref}", f"dataset.root={tmp / 'hash'}"],
         f"quests.reference: {ref} is outside dataset.root='{tmp / 'hash'}', the folder whose changes DVC tracks"),
    ]
    for args, overrides, message in cases:
        proc, out = cli(tmp, "quests", *args, overrides=overrides)
        last = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode == 1 and message in last, proc.stderr
        assert not out.exists()


def test_knn_method_agrees_with_exact_within_its_standard_errors(prepared):
    cfg, tmp = prepared
    inputs = (tmp / "desc/descriptors.npz", tmp / "hash/images.extxyz")
    quests.run(cfg, tmp / "exact", *inputs)
    knn = replace(cfg, quests=replace(cfg.quests, method="knn", knn_k=3, knn_far_samples=40, bandwidth=0.3))
    quests.run(knn, tmp / "knn", *inputs)
    quests.run(replace(cfg, quests=replace(knn.quests, method="exact")), tmp / "exact_wide", *inputs)
    exact, m, wide = (json.loads((tmp / d / "summary.json").read_text())["counts"] for d in ("exact", "knn", "exact_wide"))
    assert exact["entropy_stderr"] == 0.0 and exact["knn_truncation_bound"] == 0.0
    assert 0 < m["entropy_stderr"] and abs(m["entropy"] - wide["entropy"]) < 5 * m["entropy_stderr"]
    assert 0 < m["diversity_stderr"] and abs(m["quests_diversity_score"] - wide["quests_diversity_score"]) < 5 * m["diversity_stderr"]
    assert m["knn_sparse_entropy"] == m["knn_sparse_delta_entropy"] == 0


def test_knn_samples_too_sparse_for_an_error_grow_to_the_whole_set(prepared):
    """20 samples cannot hold the 30 effective terms an honest standard error needs: every
    environment's sample grows, here to all 72, and knn becomes exact."""
    cfg, tmp = prepared
    inputs = (tmp / "desc/descriptors.npz", tmp / "hash/images.extxyz")
    quests.run(cfg, tmp / "exact", *inputs)
    quests.run(replace(cfg, quests=replace(cfg.quests, method="knn", knn_k=3, knn_far_samples=20)), tmp / "knn", *inputs)
    exact, m = (json.loads((tmp / d / "summary.json").read_text())["counts"] for d in ("exact", "knn"))
    assert m["knn_resampled_entropy"] == m["knn_resampled_delta_entropy"] == m["environments"] == 72
    assert m["knn_sparse_entropy"] == m["knn_sparse_delta_entropy"] == 0 and m["entropy_stderr"] == 0.0
    assert m["entropy"] == pytest.approx(exact["entropy"], rel=1e-6)  # far-field terms in float32
    frames = ase.io.read(tmp / "knn/delta_entropy.extxyz", ":")
    err = np.concatenate([a.arrays["quests_delta_entropy_stderr"] for a in frames])
    assert np.all(err >= 0) and m["delta_entropy_stderr_max"] == pytest.approx(np.max(err), abs=1e-8)


def test_a_selection_mask_scores_the_selected_environments_as_the_quests_package_does(tmp_path):
    """quests.mask_key (Orchestrator's selection_mask with apply_mask): entropy and
    efficiency equal the quests package's on the selected environments alone; dH is
    still given for every atom; a frame without the mask is one line naming it."""
    from quests.entropy import perfect_entropy

    frames = [labelled_si(s, (1 + s % 2, 1, 1)) for s in range(4)]
    rng = np.random.default_rng(0)
    for atoms in frames:
        atoms.arrays["selection_mask"] = (rng.random(len(atoms)) < 0.6).astype(int)
    ase.io.write(tmp_path / "d.extxyz", frames)
    overrides = [f"dataset.paths=[{tmp_path / 'd.extxyz'}]", f"dataset.root={tmp_path}", "dataset.require=[]",
                 f"store.path={tmp_path / 'store'}", "runtime.executor=serial", "dataset.test_fraction=0"]
    cfg = load_config(ROOT / "params.yaml", [*overrides, "quests.mask_key=selection_mask"])
    hash_stage.run(cfg, tmp_path / "hash")
    descriptors.run(cfg, tmp_path / "desc", tmp_path / "hash/images.extxyz")
    quests.run(cfg, tmp_path / "q", tmp_path / "desc/descriptors.npz", tmp_path / "hash/images.extxyz")
    images = ase.io.read(tmp_path / "hash/images.extxyz", ":")
    x = np.concatenate([describe(a) for a in images])
    mask = np.concatenate([a.arrays["selection_mask"] for a in images]).astype(bool)
    assert 0 < mask.sum() < len(mask)
    m = json.loads((tmp_path / "q/summary.json").read_text())["counts"]
    reference = float(perfect_entropy(x[mask], h=0.015))
    assert m["entropy"] == pytest.approx(reference, rel=1e-9) and m["environments"] == mask.sum()
    assert m["quests_efficiency_score"] == pytest.approx(reference / math.log(mask.sum()), rel=1e-9)
    assert m["environments_masked_out"] == (~mask).sum()
    dh = np.concatenate([a.arrays["quests_delta_entropy_score"] for a in ase.io.read(tmp_path / "q/delta_entropy.extxyz", ":")])
    assert len(dh) == len(mask)
    del frames[2].arrays["selection_mask"]
    ase.io.write(tmp_path / "d.extxyz", frames)
    hash_stage.run(cfg, tmp_path / "hash2")
    with pytest.raises(InputError, match=r"frame 2 .*expected the per-atom array 'selection_mask' \(quests.mask_key\)"):
        quests.run(cfg, tmp_path / "q2", tmp_path / "desc/descriptors.npz", tmp_path / "hash2/images.extxyz")
    assert not (tmp_path / "q2").exists()
