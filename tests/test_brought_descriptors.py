"""Descriptors users bring (``descriptors.name: array``, a ``.npy`` reference or training
set) and dscribe's SOAP/ACSF, through the stage CLIs, on inputs shaped like
Orchestrator's LTAU and QUESTS score tests: 9 frames of 64 Si atoms carrying a random
(64, 10) ``descriptors`` array, a 1000 x 10 training array, a 100 x 1000 error
trajectory, h = 0.015. Every number is checked against a computation made here: numpy
for LTAU, the quests package for the entropies, dscribe called directly for SOAP/ACSF.
"""

import json
import math

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from conftest import ROOT, params_file, stage_cli
from test_dvc import committed, sh  # noqa: F401  (a fixture)

from stages.common import load_config

SEED, H, K = 20261124, 0.015, 10


def si64(seed: int):
    atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=seed)
    atoms.positions = np.round(atoms.positions, 8)  # on the extxyz grid: the stage sees these very structures
    return atoms


def orchestrator_inputs(folder):
    """Orchestrator's test shapes, with a fixed seed; files under ``folder``."""
    rng = np.random.default_rng(SEED)
    frames = []
    for i in range(9):
        atoms = si64(i)
        atoms.arrays["descriptors"] = rng.random((64, 10))
        frames.append(atoms)
    folder.mkdir(parents=True, exist_ok=True)
    ase.io.write(folder / "frames.extxyz", frames)
    np.save(folder / "train.npy", rng.random((1000, 10)))
    np.save(folder / "errors.npy", rng.random((100, 1000)))
    return frames


def stage(tmp, module, *args, overrides=(), out=None):
    return stage_cli(module, params_file(tmp / f"{module}.params.yaml", overrides), out or tmp / module, *args,
                     cwd=tmp, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def ok(proc):
    assert proc.returncode == 0, proc.stderr
    return proc


BROUGHT = ["dataset.paths=[data/frames.extxyz]", "dataset.root=data", "dataset.require=[]", "descriptors.name=array",
           "store.path=store", "runtime.executor=serial", "ltau.train_images=null",
           "ltau.train_descriptors=data/train.npy", "ltau.error_logs=[data/errors.npy]", f"ltau.k={K}",
           f"quests.bandwidth={H}"]
IMAGES, DESCRIPTORS = "hash/images.extxyz", "descriptors/descriptors.npz"


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("orchestrator_shaped")
    frames = orchestrator_inputs(tmp / "data")
    ok(stage(tmp, "hash", overrides=BROUGHT))
    ok(stage(tmp, "descriptors", "--images", IMAGES, overrides=BROUGHT))
    ok(stage(tmp, "ltau_fit", overrides=BROUGHT))
    ok(stage(tmp, "ltau", "--fit", "ltau_fit", "--descriptors", DESCRIPTORS, "--images", IMAGES, overrides=BROUGHT))
    for reference in ("train", "data/train.npy"):
        for legacy in ("false", "true"):
            warned = ok(stage(tmp, "quests", "--descriptors", DESCRIPTORS, "--images", IMAGES,
                     overrides=[*BROUGHT, f"quests.reference={reference}", f"quests.legacy_inf={legacy}"],
                     out=tmp / f"quests_{reference.replace('/', '_')}_{legacy}"))
            assert "every environment is alone in its kernel" in warned.stderr  # h = 0.015 on uniform [0, 1)^10
    return tmp, frames


def rows_by_image(path, key):
    """Per-atom ``key`` of a stage's extxyz, image by image, in the input's order."""
    return {a.info["image_hash"]: a.arrays[key] for a in ase.io.read(path, ":")}


def test_the_carried_array_reaches_the_descriptors_exactly(scored):
    tmp, frames = scored
    npz = np.load(tmp / DESCRIPTORS)
    images = ase.io.read(tmp / IMAGES, ":")
    summary = json.loads((tmp / "descriptors/summary.json").read_text())
    assert summary["counts"] == {**summary["counts"], "images": 9, "dimension": 10, "read": 9, "computed": 0}
    given = ase.io.read(tmp / "data/frames.extxyz", ":")  # as the user's file holds them
    by_structure = {tuple(np.round(a.positions, 6).ravel()): a.arrays["descriptors"] for a in given}
    for i, atoms in enumerate(images):
        mine = npz["descriptors"][npz["offsets"][i]:npz["offsets"][i + 1]]
        np.testing.assert_array_equal(mine, by_structure[tuple(np.round(atoms.positions, 6).ravel())])


def direct_ltau(query, train, errors, k, nbins=100):
    """LTAU by hand: per training atom a histogram over log bins from the smallest positive
    to the largest error (np.histogram: the last bin holds its upper edge), the k nearest
    training descriptors by brute force, the expected error at geometric bin midpoints."""
    per_atom = errors.T
    edges = np.geomspace(per_atom[per_atom > 0].min(), per_atom.max(), nbins + 1)
    pdfs = np.stack([np.histogram(e, bins=edges)[0] for e in per_atom]) / per_atom.shape[1]
    mids = np.sqrt(edges[:-1] * edges[1:])
    d2 = ((query[:, None, :] - train[None]) ** 2).sum(axis=2)
    nearest = np.argsort(d2, axis=1)[:, :k]
    return pdfs[nearest].mean(axis=1) @ mids


def orchestrator_binning(query, train, errors, k, nbins=100, spacing="log"):
    """The rule of Orchestrator's LTAU (ltau_ff's logs_to_pdfs and predict_errors), restated:
    edges over [min, max] of the whole log; a sample's bin is searchsorted(edges, e,
    'right') - 1 and samples outside 0..nbins-1 (those equal to the last edge) are
    dropped; PDFs are densities; the score is sum(p * width * m) with geometric
    midpoints m whatever the spacing."""
    per_atom = errors.T
    lo, hi = per_atom.min(), per_atom.max()
    edges = np.logspace(np.log10(lo), np.log10(hi), nbins + 1) if spacing == "log" else np.linspace(lo, hi, nbins + 1)
    idx = np.searchsorted(edges, per_atom, "right") - 1
    kept = (idx >= 0) & (idx < nbins)
    counts = np.stack([np.bincount(i[m], minlength=nbins) for i, m in zip(idx, kept)]).astype(float)
    widths = np.diff(edges)
    density = counts / widths
    total = (density * widths).sum(axis=1)
    density[total > 0] /= total[total > 0, None]
    mids = 10 ** ((np.log10(edges[:-1]) + np.log10(edges[1:])) / 2)
    d2 = ((query[:, None, :] - train[None]) ** 2).sum(axis=2)
    nearest = np.argsort(d2, axis=1)[:, :k]
    return (density[nearest].mean(axis=1) * widths * mids).sum(axis=1)


def query_and_scores(tmp):
    images = ase.io.read(tmp / "ltau/uncertainty.extxyz", ":")
    return (np.concatenate([a.arrays["descriptors"] for a in images]),
            np.concatenate([a.arrays["ltau_forces_uq_score"] for a in images]))


def test_ltau_equals_a_direct_numpy_computation(scored):
    tmp, _ = scored
    query, score = query_and_scores(tmp)
    train, errors = np.load(tmp / "data/train.npy"), np.load(tmp / "data/errors.npy")
    expected = direct_ltau(query, train, errors, K)
    assert score.shape == (9 * 64,)
    np.testing.assert_allclose(score, expected, rtol=1e-10, atol=0)


def test_how_far_orchestrators_binning_is(scored):
    """README ("LTAU") quotes these numbers; this measures them on the inputs above."""
    tmp, _ = scored
    query, score = query_and_scores(tmp)
    train, errors = np.load(tmp / "data/train.npy"), np.load(tmp / "data/errors.npy")
    log_gap = np.abs(orchestrator_binning(query, train, errors, K) / score - 1)
    # linear bins: ours use arithmetic midpoints (the stage at ltau.bin_spacing=linear, by hand here)
    per_atom = errors.T
    edges = np.linspace(per_atom.min(), per_atom.max(), 101)
    pdfs = np.stack([np.histogram(e, bins=edges)[0] for e in per_atom]) / per_atom.shape[1]
    nearest = np.argsort(((query[:, None, :] - train[None]) ** 2).sum(axis=2), axis=1)[:, :K]
    ours_linear = pdfs[nearest].mean(axis=1) @ ((edges[:-1] + edges[1:]) / 2)
    linear_gap = np.abs(orchestrator_binning(query, train, errors, K, spacing="linear") / ours_linear - 1)
    print(f"\nLTAU, Orchestrator's rule against ours: log bins max {log_gap.max():.2e} mean {log_gap.mean():.2e}; "
          f"linear bins max {linear_gap.max():.2e} mean {linear_gap.mean():.2e}")
    assert 0 < log_gap.max() < 2e-3 and 0 < linear_gap.max() < 2e-3


def quests_metrics(tmp, reference, legacy):
    folder = tmp / f"quests_{reference.replace('/', '_')}_{legacy}"
    images = ase.io.read(folder / "delta_entropy.extxyz", ":")
    return json.loads((folder / "metrics.json").read_text()), images


@pytest.mark.parametrize("reference", ["train", "data/train.npy"])
def test_quests_scores_equal_the_quests_package(scored, reference):
    ref_entropy = pytest.importorskip("quests.entropy", reason="the quests package (dev extras) is the reference")
    tmp, _ = scored
    x = np.load(tmp / DESCRIPTORS)["descriptors"]
    metrics, images = quests_metrics(tmp, reference, "true")
    h_theirs = ref_entropy.entropy(x, H)
    assert metrics["entropy"] == pytest.approx(h_theirs, rel=1e-10)
    assert metrics["quests_efficiency_score"] == pytest.approx(h_theirs / math.log(len(x)), rel=1e-10)
    assert metrics["quests_diversity_score"] == pytest.approx(ref_entropy.diversity(x, H), rel=1e-10)
    if reference == "train":
        ref = np.concatenate([a.arrays["descriptors"] for a in images if a.info["split"] == "train"])
    else:
        ref = np.load(tmp / reference)
    for atoms in images:
        theirs = ref_entropy.delta_entropy(atoms.arrays["descriptors"], ref, H)
        mine = atoms.arrays["quests_delta_entropy_score"]
        np.testing.assert_array_equal(np.isinf(mine), np.isinf(theirs))  # legacy: quests's infs, where it has them
        finite = np.isfinite(theirs)
        np.testing.assert_allclose(mine[finite & (theirs < 690)], theirs[finite & (theirs < 690)], rtol=1e-10, atol=1e-10)
        # dH > 690: quests's sum p = exp(-dH) < 1e-300 is made of subnormal terms, each known only to
        # the subnormal spacing 5e-324 (as is legacy mode's exp); there both agree to that spacing per term
        p_gap = np.abs(np.exp(-mine[finite]) - np.exp(-theirs[finite]))
        assert np.all(np.isclose(mine[finite], theirs[finite], rtol=1e-10, atol=1e-10) | (p_gap <= len(ref) * 5e-324))
    assert any(np.isinf(a.arrays["quests_delta_entropy_score"]).any() for a in images)


def test_without_legacy_every_delta_entropy_is_finite_and_closed_form(scored):
    tmp, _ = scored
    _, images = quests_metrics(tmp, "data/train.npy", "false")
    ref = np.load(tmp / "data/train.npy")
    for atoms in images:
        y = atoms.arrays["descriptors"]
        d2 = ((y[:, None, :] - ref[None]) ** 2).sum(axis=2) / (2 * H * H)
        m = d2.min(axis=1)  # -log sum exp(-d2) = m - log sum exp(-(d2 - m))
        expected = m - np.log(np.exp(-(d2 - m[:, None])).sum(axis=1))
        np.testing.assert_allclose(atoms.arrays["quests_delta_entropy_score"], expected, rtol=1e-10)


dscribe = pytest.importorskip("dscribe.descriptors", reason="dscribe (dev extras) is the SOAP/ACSF reference")


@pytest.mark.parametrize("name", ["soap", "acsf"])
def test_dscribe_descriptors_through_the_stage_equal_dscribe_called_directly(tmp_path, name):
    frames = [si64(s) for s in range(3)] + [bulk("Si", "diamond", a=5.5).repeat((2, 1, 1))]
    (tmp_path / "data").mkdir()
    ase.io.write(tmp_path / "data/frames.extxyz", frames)
    overrides = ["dataset.paths=[data/frames.extxyz]", "dataset.root=data", "dataset.require=[]",
                 f"descriptors.name={name}", f"descriptors.{name}.species=[Si]", "store.path=store", "runtime.executor=serial"]
    ok(stage(tmp_path, "hash", overrides=overrides))
    ok(stage(tmp_path, "descriptors", "--images", IMAGES, overrides=overrides))
    cfg = load_config(ROOT / "params.yaml", overrides).descriptors
    if name == "soap":
        s = cfg.soap
        direct = dscribe.SOAP(species=list(s.species), r_cut=s.r_cut, n_max=s.n_max, l_max=s.l_max, sigma=s.sigma,
                              rbf=s.rbf, periodic=s.periodic)
    else:
        a = cfg.acsf
        direct = dscribe.ACSF(species=list(a.species), r_cut=a.r_cut, g2_params=a.g2_params, g4_params=a.g4_params,
                              periodic=a.periodic)
    npz = np.load(tmp_path / DESCRIPTORS)
    by_hash = {h: i for i, h in enumerate(npz["image_hash"])}
    for atoms in ase.io.read(tmp_path / IMAGES, ":"):
        i = by_hash[atoms.info["image_hash"]]
        mine = npz["descriptors"][npz["offsets"][i]:npz["offsets"][i + 1]]
        np.testing.assert_allclose(mine, direct.create(atoms), rtol=0, atol=1e-12)
    again = ok(stage(tmp_path, "descriptors", "--images", IMAGES, overrides=[*overrides, f"descriptors.{name}.r_cut=4.5"]))
    assert json.loads((tmp_path / "descriptors/summary.json").read_text())["counts"]["computed"] == 4, again.stderr


def refused(tmp, module, *args, overrides, message, out=None):
    proc = stage(tmp, module, *args, overrides=overrides, out=out)
    last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    assert proc.returncode == 1 and message in last and "Traceback" not in proc.stderr, proc.stderr
    assert not (out or tmp / module).exists()


def test_bad_brought_descriptors_are_refused_with_file_frame_and_key(tmp_path):
    frames = orchestrator_inputs(tmp_path / "data")
    cases = {
        "missing": (lambda fs: fs[3].arrays.pop("descriptors"),
                    "data/missing.extxyz: frame 3: no per-atom array 'descriptors' (descriptors.key)"),
        "ragged": (lambda fs: fs[5].arrays.__setitem__("descriptors", np.ones((64, 12))),
                   "data/ragged.extxyz: frame 5: per-atom array 'descriptors' has 12 columns; "
                   "data/ragged.extxyz: frame 0 has 10"),
        "nan": (lambda fs: fs[2].arrays["descriptors"].__setitem__((7, 4), np.nan),
                "data/nan.extxyz: frame 2: per-atom array 'descriptors': atom 7 has NaN or inf"),
    }
    for name, (spoil, message) in cases.items():
        bad = [a.copy() for a in frames]
        spoil(bad)
        ase.io.write(tmp_path / f"data/{name}.extxyz", bad)
        refused(tmp_path, "hash", overrides=[*BROUGHT, f"dataset.paths=[data/{name}.extxyz]"], message=message)
    ok(stage(tmp_path, "hash", overrides=BROUGHT))
    ok(stage(tmp_path, "descriptors", "--images", IMAGES, overrides=BROUGHT))
    np.save(tmp_path / "data/wide.npy", np.ones((50, 11)))
    refused(tmp_path, "quests", "--descriptors", DESCRIPTORS, "--images", IMAGES,
            overrides=[*BROUGHT, "quests.reference=data/wide.npy"],
            message="quests.reference=data/wide.npy: expected descriptors of width 10 (those of the dataset), got 11")
    np.save(tmp_path / "data/nan.npy", np.full((50, 10), np.nan))
    refused(tmp_path, "ltau_fit", overrides=[*BROUGHT, "ltau.train_descriptors=data/nan.npy"],
            message="ltau.train_descriptors=data/nan.npy: descriptors contain NaN or inf")
    np.save(tmp_path / "data/wide_errors.npy", np.random.default_rng(0).random((20, 50)))
    ok(stage(tmp_path, "ltau_fit", overrides=[*BROUGHT, "ltau.train_descriptors=data/wide.npy",
                                               "ltau.error_logs=[data/wide_errors.npy]"]))
    refused(tmp_path, "ltau", "--fit", "ltau_fit", "--descriptors", DESCRIPTORS, "--images", IMAGES,
            overrides=BROUGHT, message="expected descriptors of width 11 (those of the LTAU training atoms), got 10")
    refused(tmp_path, "ltau_fit", overrides=[*BROUGHT, "ltau.train_images=data/frames.extxyz"],
            message="ltau: expected exactly one of train_images (frames) and train_descriptors",
            out=tmp_path / "ltau_fit_both")


@pytest.mark.heavy
def test_a_user_path_with_brought_descriptors_follows_every_change(committed):
    """`atomsieve compose descriptors=array ...` and `dvc repro`: rewriting the carried
    arrays, or the training array, re-runs what depends on them, with new numbers."""
    repo = committed
    orchestrator_inputs(repo / "data/mine")
    overrides = ["dataset.paths=[data/mine/frames.extxyz]", "descriptors=array", "ltau.train_images=null",
                 "ltau.train_descriptors=data/mine/train.npy", "ltau.error_logs=[data/mine/errors.npy]"]
    sh(repo, "atomsieve", "compose", *overrides)
    sh(repo, "dvc", "repro", "quests", "ltau")
    metrics = lambda s: json.loads((repo / f"outputs/{s}/metrics.json").read_text())  # noqa: E731
    before_q, before_l = metrics("quests"), metrics("ltau")
    frames = ase.io.read(repo / "data/mine/frames.extxyz", ":")
    for atoms in frames:
        atoms.arrays["descriptors"] = atoms.arrays["descriptors"] * 0.01  # now within the bandwidth of each other
    ase.io.write(repo / "data/mine/frames.extxyz", frames)
    assert "hash" in sh(repo, "dvc", "status", "hash")
    out = sh(repo, "dvc", "repro", "quests", "ltau")
    assert "Running stage 'descriptors'" in out and "Running stage 'quests'" in out
    assert metrics("quests")["entropy"] < before_q["entropy"] - 1.0
    np.save(repo / "data/mine/train.npy", np.load(repo / "data/mine/train.npy")[::-1] * 0.01)  # other atoms' errors
    out = sh(repo, "dvc", "repro", "ltau")
    assert "Running stage 'ltau_fit'" in out and metrics("ltau")["mean"] != before_l["mean"]


def test_dscribe_settings_and_species_are_checked():
    from pipeline.atoms.descriptors import describe
    from pipeline.core.errors import ConfigError, InputError
    from stages.described import descriptor_args
    from stages.validate import validate

    with pytest.raises(ConfigError, match=r"descriptors.soap.species: expected the chemical symbols .* got \[\]"):
        validate(load_config(ROOT / "params.yaml", ["descriptors.name=soap"]))
    with pytest.raises(ConfigError, match=r"descriptors.soap.rbf: expected one of \['gto', 'polynomial'\], got 'gauss'"):
        validate(load_config(ROOT / "params.yaml", ["descriptors.name=soap", "descriptors.soap.species=[Si]",
                                                    "descriptors.soap.rbf=gauss"]))
    name, settings = descriptor_args(load_config(ROOT / "params.yaml", ["descriptors.name=soap",
                                                                         "descriptors.soap.species=[Si]"]).descriptors)
    with pytest.raises(InputError, match=r"descriptors.soap.species: the frame \(CSi7\) holds \['C'\], not in \['Si'\]"):
        atoms = si64(0)[:8]
        atoms.symbols[0] = "C"
        describe(name, settings, atoms)
