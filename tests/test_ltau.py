"""LTAU against a direct numpy computation: histograms and brute-force neighbours."""

import numpy as np
import pytest

from pipeline.core.errors import ConfigError, InputError
from pipeline.scores import ltau

pytest.importorskip("faiss", reason="faiss-cpu not installed")


def data(n_train=400, n_query=60, d=12, t=30, seed=0):
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(n_train, d))
    query = rng.normal(size=(n_query, d))
    logs = [np.abs(rng.lognormal(-3, 1, size=(t, n_train, 3))), rng.lognormal(-3, 1, size=(t // 2, n_train))]
    return train, query, logs


def direct(train, query, logs, nbins, spacing, k):
    """The same method written out plainly, in float64."""
    errs = np.concatenate([np.linalg.norm(logs[0], axis=2), logs[1]]).T
    lo, hi = (errs[errs > 0].min() if spacing == "log" else errs.min()), errs.max()
    edges = np.geomspace(lo, hi, nbins + 1) if spacing == "log" else np.linspace(lo, hi, nbins + 1)
    mids = np.sqrt(edges[:-1] * edges[1:]) if spacing == "log" else (edges[:-1] + edges[1:]) / 2
    pdfs = np.array([np.histogram(e, bins=edges)[0] / len(e) for e in errs])  # numpy keeps the top edge
    d2 = ((query[:, None, :] - train[None, :, :]) ** 2).sum(axis=2)
    nearest = np.argsort(d2, axis=1)[:, :k]
    return pdfs, pdfs[nearest].mean(axis=1) @ mids


@pytest.mark.parametrize("spacing", ["log", "linear"])
def test_equals_direct_numpy(spacing):
    train, query, logs = data()
    errors = ltau.error_samples(logs, len(train), ["a.npy", "b.npy"])
    fit = ltau.fit_pdfs(errors, 40, spacing)
    index = ltau.build_index(train, "Flat", {})
    ours = ltau.uncertainty(fit, ltau.neighbours(index, query, 7))
    pdfs, expected = direct(train, query, logs, 40, spacing, 7)
    np.testing.assert_allclose(fit.pdfs, pdfs, rtol=0, atol=1e-15)
    np.testing.assert_allclose(ours, expected, rtol=1e-10)
    assert fit.clipped == 0 and np.allclose(fit.pdfs.sum(axis=1), 1.0)


def test_largest_sample_is_kept_and_linear_midpoints_are_arithmetic():
    errors = np.array([[0.1, 0.2, 0.3, 1.0]])
    fit = ltau.fit_pdfs(errors, 3, "linear")
    assert fit.pdfs[0].tolist() == [0.75, 0.0, 0.25]  # 1.0, the largest, is in the last bin
    np.testing.assert_allclose(fit.midpoints, [0.25, 0.55, 0.85])
    log_fit = ltau.fit_pdfs(errors, 2, "log")
    np.testing.assert_allclose(log_fit.midpoints, np.sqrt(log_fit.edges[:-1] * log_fit.edges[1:]))
    ranged = ltau.fit_pdfs(errors, 2, "linear", 0.0, 0.5)
    assert ranged.clipped == 1 and ranged.pdfs[0].tolist() == [0.5, 0.5]


@pytest.mark.parametrize("kind,args", [("HNSW", {"M": 16, "efConstruction": 64, "efSearch": 128}),
                                       ("IVFPQ", {"nlist": 8, "m": 4, "nbits": 8, "nprobe": 8})])
def test_approximate_indexes_are_close(kind, args):
    train, query, logs = data(n_train=2000, seed=1)
    fit = ltau.fit_pdfs(ltau.error_samples(logs, len(train), ["a", "b"]), 30, "log")
    exact = ltau.uncertainty(fit, ltau.neighbours(ltau.build_index(train, "Flat", {}), query, 10))
    approx = ltau.uncertainty(fit, ltau.neighbours(ltau.build_index(train, kind, args), query, 10))
    assert np.median(np.abs(approx - exact) / exact) < 0.2


def test_bad_input():
    train, query, logs = data()
    with pytest.raises(InputError, match="b.npy: error log has 399 atoms; the training descriptors have 400"):
        ltau.error_samples([logs[0], logs[1][:, :399]], 400, ["a.npy", "b.npy"])
    with pytest.raises(InputError, match=r"expected an error log of shape \(T, N\) or \(T, N, 3\)"):
        ltau.error_samples([np.zeros((3, 400, 2))], 400, ["c.npy"])
    bad = logs[1].copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN or inf"):
        ltau.error_samples([bad], 400, ["d.npy"])
    index = ltau.build_index(train, "Flat", {})
    with pytest.raises(InputError, match=r"expected descriptors of width 12 \(those of the LTAU training atoms\), got 5"):
        ltau.neighbours(index, query[:, :5], 3)
    with pytest.raises(ConfigError, match=r"HNSW takes \['M', 'efConstruction', 'efSearch'\]"):
        ltau.build_index(train, "HNSW", {"nlist": 4})
    with pytest.raises(ConfigError, match="ltau.index: expected one of"):
        ltau.build_index(train, "LSH", {})
