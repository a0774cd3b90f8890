"""LTAU from PDFs and bins given already made (Orchestrator's default, ``from_error_logs=False``).

PDFs made here from error logs by hand (numpy's histogram over edges from numpy's
geomspace/linspace, divided by the number of samples) must score exactly as the logs
do, through the library and through the stages; bad PDFs, bins or keys each fail with
one line naming the file or key, expected versus got.
"""

import json
import shutil

import ase.io
import numpy as np
import pytest
import yaml
from conftest import ROOT, params_file, stage_cli

from pipeline.core.errors import ConfigError, InputError
from pipeline.scores import ltau as lib
from stages import descriptors, ltau, ltau_fit, validate
from stages import hash as hash_stage
from stages.common import load_config

pytest.importorskip("faiss", reason="faiss-cpu not installed")


def edges_by_hand(per_atom, nbins, spacing):
    """(nbins + 1,) edges from the smallest positive (log) or smallest error to the largest."""
    lo, hi = (per_atom[per_atom > 0].min() if spacing == "log" else per_atom.min()), per_atom.max()
    return np.geomspace(lo, hi, nbins + 1) if spacing == "log" else np.linspace(lo, hi, nbins + 1)


def pdfs_by_hand(per_atom, edges):
    """(N, nbins) masses: each atom's share of its samples in each bin (np.histogram keeps the top edge)."""
    return np.stack([np.histogram(e, bins=edges)[0] for e in per_atom]) / per_atom.shape[1]


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


# ---- the library -----------------------------------------------------------------------------

def logs_and_descriptors(n_train=300, n_query=50, d=8, t=24, seed=3):
    rng = np.random.default_rng(seed)
    logs = [rng.lognormal(-3, 1, size=(t, n_train, 3)), rng.lognormal(-2.5, 0.8, size=(t // 2, n_train))]
    return rng.normal(size=(n_train, d)), rng.normal(size=(n_query, d)), logs


@pytest.mark.parametrize("spacing", ["log", "linear"])
def test_pdfs_made_from_the_logs_score_as_the_logs_do(spacing):
    train, query, logs = logs_and_descriptors()
    per_atom = np.concatenate([np.linalg.norm(logs[0], axis=2), logs[1]]).T  # (N, samples), pooled
    edges = edges_by_hand(per_atom, 40, spacing)
    pdfs = pdfs_by_hand(per_atom, edges)
    found = lib.neighbours(lib.build_index(train, "Flat", {}), query, 7)
    from_logs = lib.fit_pdfs(lib.error_samples(logs, len(train), ["a.npy", "b.npy"]), 40, spacing)
    given = lib.given_fit(pdfs, edges, spacing, len(train), ("pdfs.npy", "bins.npy"))
    np.testing.assert_allclose(given.pdfs, from_logs.pdfs, rtol=0, atol=1e-15)
    np.testing.assert_allclose(lib.uncertainty(given, found), lib.uncertainty(from_logs, found), rtol=1e-12)
    as_float32 = lib.given_fit(pdfs.astype(np.float32), edges.astype(np.float32), spacing, len(train), ("p", "b"))
    np.testing.assert_allclose(lib.uncertainty(as_float32, found), lib.uncertainty(from_logs, found), rtol=1e-6)


def test_midpoints_follow_bin_spacing_whatever_the_edges():
    """Known answers: log, geometric midpoints (2, 8 on edges 1, 4, 16); linear, arithmetic
    (0.5, 2 on uneven edges 0, 1, 3); the score is the mass-weighted midpoint."""
    log = lib.given_fit(np.array([[0.25, 0.75]]), np.array([1.0, 4.0, 16.0]), "log", 1, ("p", "b"))
    np.testing.assert_allclose(log.midpoints, [2.0, 8.0])
    np.testing.assert_allclose(lib.uncertainty(log, np.array([[0]])), [0.25 * 2 + 0.75 * 8])
    linear = lib.given_fit(np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([0.0, 1.0, 3.0]), "linear", 2, ("p", "b"))
    np.testing.assert_allclose(linear.midpoints, [0.5, 2.0])
    np.testing.assert_allclose(lib.uncertainty(linear, np.array([[1, 0]])), [(1.25 + 0.5) / 2])  # rows: 1.25, 0.5


EDGES = np.array([0.01, 0.1, 1.0, 10.0])
MASSES = np.array([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]])
ROWS = (r"p.npy: expected each row to sum to 1 \(the probability mass in each bin\) or to integrate to 1 over the "
        r"bin widths \(a density\), got a sum of ")
LOG_EDGES = r"b.npy: ltau.bin_spacing=log takes geometric midpoints, so every edge must be > 0, got 0.0 first"


@pytest.mark.parametrize("pdfs,edges,spacing,match", [
    (MASSES * 10, EDGES, "log", ROWS + r"10 and an integral of .* in row 0 \(2 of 2 rows\)$"),
    (np.array([[0.5, 0.7, -0.2], [1, 0, 0]]), EDGES, "log", r"p.npy: expected probabilities >= 0, got -0.2 \(row 0, bin 2"),
    (np.array([[np.nan, 1, 0], [1, 0, 0]]), EDGES, "log", r"p.npy: PDFs contain NaN or inf \(row 0\)"),
    (MASSES[0], EDGES, "log", r"p.npy: expected PDFs of shape \(N, nbins\), got shape \(3,\)"),
    (MASSES[:, :2], EDGES, "log", r"p.npy: expected PDFs over 3 bins \(b.npy has 4 edges\), got 2 columns"),
    (MASSES[:1], EDGES, "log", r"p.npy: expected one PDF \(row\) per training atom, 2, got 1"),
    (MASSES, EDGES[None], "log", r"b.npy: expected bin edges of shape \(nbins \+ 1,\) with nbins >= 1, got shape \(1, 4\)"),
    (MASSES, EDGES[[0, 2, 1, 3]], "log", r"b.npy: expected strictly increasing bin edges, got 1.0 then 0.1 \(edges 1 and 2"),
    (MASSES, np.array([0.0, 0.1, 1.0, 10.0]), "log", LOG_EDGES + r" \(edges from 0: ltau.bin_spacing=linear\)"),
    (MASSES, np.array([0.01, 0.1, np.inf, 10.0]), "linear", r"b.npy: bin edges contain NaN or inf"),
    (MASSES.astype(str), EDGES, "log", r"p.npy: expected PDFs as real numbers, got dtype <U"),
])
def test_bad_pdfs_and_bins_fail_with_one_line(pdfs, edges, spacing, match):
    with pytest.raises(InputError, match=match) as err:
        lib.given_fit(pdfs, edges, spacing, 2, ("p.npy", "b.npy"))
    one_line(err)


def test_densities_as_orchestrator_writes_them_are_read_as_masses(caplog):
    """Orchestrator's error_pdfs integrate to 1 over the bin widths: the same fit as the
    masses they come from, and the log says how they were read."""
    with caplog.at_level("INFO"):
        fit = lib.given_fit(MASSES / np.diff(EDGES), EDGES, "log", 2, ("p.npy", "b.npy"))
    np.testing.assert_allclose(fit.pdfs, MASSES, rtol=1e-12)
    assert "densities, as Orchestrator's error_pdfs" in caplog.text


def test_rows_may_miss_1_by_rounding_only():
    lib.given_fit(MASSES + [[1e-7, 0, 0], [-1e-7, 0, 0]], EDGES, "log", 2, ("p", "b"))
    with pytest.raises(InputError, match=r"got a sum of 1.00001 and .* in row 1 \(1 of 2 rows\)"):
        lib.given_fit(MASSES + [[0, 0, 0], [0, 1e-5, 0]], EDGES, "log", 2, ("p", "b"))


# ---- the keys ----------------------------------------------------------------------------------

ONE = ("ltau: expected exactly one of error_logs (.npy logs, fitted into PDFs here) and pdfs with bins (.npy PDFs "
       "and their bin edges), got ")
TOGETHER = "ltau.pdfs and ltau.bins go together (PDFs over those edges), got "
RANGE = "ltau.range: bounds the bins fitted from error_logs; with pdfs the edges are ltau.bins, expected null, got [0.01, 1.0]"


@pytest.mark.parametrize("overrides,error", [
    (["ltau.pdfs=p.npy", "ltau.bins=b.npy"], ONE + "both (to use the PDFs: ltau.error_logs=[])"),
    (["ltau.error_logs=[]"], ONE + "neither"),
    (["ltau.error_logs=[]", "ltau.pdfs=p.npy"], "ltau.bins: " + TOGETHER + "ltau.pdfs only"),
    (["ltau.error_logs=[]", "ltau.bins=b.npy"], "ltau.pdfs: " + TOGETHER + "ltau.bins only"),
    (["ltau.error_logs=[]", "ltau.pdfs=p.npy", "ltau.bins=b.npy", "ltau.range=[0.01,1]"], RANGE),
])
def test_exactly_one_source_of_errors(overrides, error):
    with pytest.raises(ConfigError) as err:
        ltau_fit.error_source(load_config(ROOT / "params.yaml", overrides).ltau)
    assert one_line(err) == error


def test_the_committed_configs_still_name_one_source():
    assert ltau_fit.error_source(load_config(ROOT / "params.yaml").ltau) == "error_logs"
    assert ltau_fit.error_source(load_config(ROOT / "params.yaml", [
        "ltau.error_logs=[]", "ltau.pdfs=p.npy", "ltau.bins=b.npy"]).ltau) == "pdfs"


# ---- the stages ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The bundled LTAU example in a folder of its own (dataset.root), hashed and described."""
    tmp = tmp_path_factory.mktemp("ltau_pdfs")
    data = tmp / "data"
    shutil.copytree(ROOT / "data/example", data / "example")
    base = [f"dataset.root={data}", f"dataset.paths=[{data / 'example/si_candidates.extxyz'}]",
            f"store.path={tmp / 'store'}", "runtime.executor=serial",
            f"ltau.train_images={data / 'example/ltau_train.extxyz'}"]
    cfg = load_config(ROOT / "params.yaml", [*base, f"ltau.error_logs=[{data / 'example/ltau_errors.npy'}]"])
    hash_stage.run(cfg, tmp / "hash")
    descriptors.run(cfg, tmp / "desc", tmp / "hash/images.extxyz")
    return tmp, data, base


def write_pdfs(data, nbins, spacing, name=""):
    per_atom = np.linalg.norm(np.load(data / "example/ltau_errors.npy").astype(float), axis=2).T
    edges = edges_by_hand(per_atom, nbins, spacing)
    np.save(data / f"pdfs{name}.npy", pdfs_by_hand(per_atom, edges))
    np.save(data / f"bins{name}.npy", edges)
    return data / f"pdfs{name}.npy", data / f"bins{name}.npy"


def score(tmp, cfg, name):
    images = tmp / "hash/images.extxyz"
    fitted = ltau_fit.run(cfg, tmp / f"fit_{name}", images)
    ltau.run(cfg, tmp / f"ltau_{name}", tmp / f"fit_{name}", tmp / "desc/descriptors.npz", images)
    scored = ase.io.read(tmp / f"ltau_{name}/uncertainty.extxyz", ":")
    return (fitted, dict(np.load(tmp / f"fit_{name}/fit.npz")),
            json.loads((tmp / f"ltau_{name}/metrics.json").read_text()),
            np.concatenate([a.arrays["ltau_forces_uq_score"] for a in scored]))


@pytest.mark.parametrize("spacing", ["log", "linear"])
def test_stages_score_pdfs_as_the_logs_they_were_made_from(example, spacing):
    tmp, data, base = example
    pdfs, bins = write_pdfs(data, 60, spacing, spacing)
    common = [*base, "ltau.nbins=60", f"ltau.bin_spacing={spacing}"]
    logs = score(tmp, load_config(ROOT / "params.yaml", [
        *common, f"ltau.error_logs=[{data / 'example/ltau_errors.npy'}]"]), f"logs_{spacing}")
    given = score(tmp, load_config(ROOT / "params.yaml", [
        *common, "ltau.error_logs=[]", f"ltau.pdfs={pdfs}", f"ltau.bins={bins}"]), f"pdfs_{spacing}")
    for key in ("edges", "midpoints", "pdfs"):
        np.testing.assert_allclose(given[1][key], logs[1][key], rtol=1e-15, atol=1e-15)
    assert given[2] == pytest.approx(logs[2], rel=1e-12)  # metrics.json: mean and max of the unrounded scores
    np.testing.assert_allclose(given[3], logs[3], rtol=0, atol=1e-8)  # the extxyz keeps 8 decimals
    assert given[0]["counts"]["errors_from"] == "pdfs" and given[0]["counts"]["bins"] == 60
    assert given[0]["params"]["ltau"]["pdfs"] == str(pdfs)  # the summary names the files


def run_cli(tmp, overrides, out):
    params = params_file(tmp / f"{out}.yaml", overrides)
    return stage_cli("ltau_fit", params, tmp / out, "--images", tmp / "hash/images.extxyz", cwd=tmp,
                     env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_the_stage_fails_with_one_line_and_writes_nothing(example):
    tmp, data, base = example
    pdfs, bins = write_pdfs(data, 30, "log")
    np.save(data / "counts.npy", np.load(pdfs) * 16)  # counts of 16 samples, not their shares
    cases = {
        "both": ([*base, f"ltau.error_logs=[{data / 'example/ltau_errors.npy'}]", f"ltau.pdfs={pdfs}",
                  f"ltau.bins={bins}"], "ltau: expected exactly one of error_logs"),
        "counts": ([*base, "ltau.error_logs=[]", f"ltau.pdfs={data / 'counts.npy'}", f"ltau.bins={bins}"],
                   f"{data / 'counts.npy'}: expected each row to sum to 1 (the probability mass in each bin) or to "
                   "integrate to 1 over the bin widths (a density), got a sum of 16"),
        "outside": ([*base, "ltau.error_logs=[]", f"ltau.pdfs={ROOT / 'data/example/ltau_errors.npy'}",
                     f"ltau.bins={bins}"],
                    f"ltau.pdfs: {ROOT / 'data/example/ltau_errors.npy'} is outside dataset.root={str(data)!r}"),
    }
    for out, (overrides, message) in cases.items():
        proc = run_cli(tmp, overrides, out)
        lines = proc.stderr.strip().splitlines()  # log lines (timings) may come first
        errors = [line for line in lines if line.startswith("error:")]
        assert proc.returncode == 1 and errors == lines[-1:] and errors[0].startswith(f"error: {message}"), (
            out, proc.stderr)
        assert not (tmp / out).exists()


def test_the_pdfs_and_bins_are_files_dvc_tracks(example):
    """They must lie under dataset.root (a dep of ltau_fit), and ltau_fit's params must
    name the keys, so that a new file or a new path re-runs the fit."""
    _, data, base = example
    pdfs, bins = write_pdfs(data, 30, "log")
    cfg = load_config(ROOT / "params.yaml", [*base, "ltau.error_logs=[]", f"ltau.pdfs={pdfs}", f"ltau.bins={bins}"])
    assert {pdfs, bins} <= {p.resolve() for p in validate.files(cfg)}
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["ltau_fit"]
    assert "${dataset.root}" in stage["deps"] and "dataset.root" in stage["params"]
    assert {"ltau.error_logs", "ltau.pdfs", "ltau.bins", "ltau.bin_spacing"} <= set(stage["params"])
