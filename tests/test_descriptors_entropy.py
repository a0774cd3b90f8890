"""QUESTS descriptors and entropies against the quests package and known answers."""

import math

import numpy as np
import pytest
from ase.build import bulk, molecule
from conftest import describe

from pipeline.core.errors import ConfigError, InputError
from pipeline.scores import entropy
from stages.schema import QuestsConfig

QUESTS = QuestsConfig()

reference = pytest.importorskip("quests.descriptor", reason="the quests package (dev extras) is the reference")
from quests import entropy as ref_entropy  # noqa: E402


def rattled(builder, seed):
    atoms = builder()
    atoms.rattle(0.1, seed=seed)
    return atoms


@pytest.mark.parametrize("builder", [
    lambda: bulk("Si", "diamond", a=5.431, cubic=True),
    lambda: bulk("Si", "diamond", a=5.431, cubic=True).repeat((2, 2, 1)),
    lambda: bulk("Cu", "fcc", a=3.6, cubic=True).repeat((3, 3, 3)),
    lambda: bulk("Fe", "bcc", a=2.87, cubic=True).repeat((3, 2, 2)),
], ids=["si8", "si32", "cu108", "fe24"])
def test_periodic_descriptors_equal_quests(builder):
    atoms = rattled(builder, 1)
    np.testing.assert_allclose(describe(atoms), reference.get_descriptors([atoms]), rtol=0, atol=1e-10)


@pytest.mark.parametrize("k,cutoff", [(32, 5.0), (8, 4.0), (40, 6.0)])
def test_non_periodic_descriptors_equal_quests(k, cutoff):
    cluster = rattled(lambda: bulk("Si", "diamond", a=5.431, cubic=True).repeat(2), 2)
    cluster.pbc = False
    water = molecule("H2O")
    for atoms in (cluster, water):
        np.testing.assert_allclose(describe(atoms, k, cutoff), reference.get_descriptors([atoms], k=k, cutoff=cutoff),
                                   rtol=0, atol=1e-10)


def test_partial_periodicity_is_respected():
    slab = rattled(lambda: bulk("Si", "diamond", a=5.431, cubic=True).repeat((2, 2, 1)), 3)
    slab.center(vacuum=8.0, axis=2)  # more vacuum than the cutoff: z periodicity cannot matter
    open_z = slab.copy()
    open_z.pbc = [True, True, False]
    np.testing.assert_allclose(describe(open_z), describe(slab), atol=1e-12)
    with pytest.raises(ConfigError, match="k >= 2"):
        describe(slab, k=1)


def test_well_separated_points_give_ln_n_and_identical_points_zero():
    n = 50
    far = np.eye(n) * 10.0  # pairwise distances 14 >> h
    lp = entropy.log_kernel_sums(far, far, 0.015, 16)
    assert entropy.entropy(lp) == pytest.approx(math.log(n), abs=1e-12)
    assert entropy.diversity(lp) == pytest.approx(math.log(n), abs=1e-12)
    same = np.ones((n, 5))
    lp = entropy.log_kernel_sums(same, same, 0.015, 7)
    assert entropy.entropy(lp) == pytest.approx(0.0, abs=1e-12)
    assert entropy.diversity(lp) == pytest.approx(0.0, abs=1e-12)


def test_entropy_diversity_and_delta_entropy_equal_quests():
    rng = np.random.default_rng(4)
    x = rng.normal(scale=0.03, size=(1500, 63))
    y = np.concatenate([rng.normal(scale=0.03, size=(300, 63)), rng.normal(loc=3.0, size=(4, 63))])
    for h in (0.015, 0.1):
        lp = entropy.log_kernel_sums(x, x, h, 256)
        assert entropy.entropy(lp) == pytest.approx(ref_entropy.entropy(x, h), rel=1e-10)
        assert entropy.diversity(lp) == pytest.approx(ref_entropy.diversity(x, h), rel=1e-10)
        ours = entropy.delta_entropy(entropy.log_kernel_sums(y, x, h, 100))
        with np.errstate(divide="ignore"):
            theirs = ref_entropy.delta_entropy(y, x, h)
        finite = np.isfinite(theirs)
        np.testing.assert_allclose(ours[finite], theirs[finite], rtol=1e-10)
        assert np.all(np.isfinite(ours)) and np.all(ours[~finite] > 700)  # log-sum-exp stays finite
        legacy = entropy.delta_entropy(entropy.log_kernel_sums(y, x, h, 100), legacy=True)
        np.testing.assert_array_equal(np.isinf(legacy), ~finite)


def clustered(n, dim, seed):
    """Points in a few clusters as wide as the bandwidth below: every kernel sum is spread over
    hundreds of points, so truncating to a few neighbours is badly biased."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=0.1, size=(5, dim))
    return centres[rng.integers(0, 5, n)] + rng.normal(scale=0.01, size=(n, dim))


def test_knn_truncation_equals_exact_with_all_neighbours_and_stays_within_its_bound():
    pytest.importorskip("faiss", reason="faiss-cpu not installed")
    rng = np.random.default_rng(5)
    x = rng.normal(scale=0.05, size=(800, 20))
    exact = entropy.log_kernel_sums(x, x, 0.05, 128)
    full = entropy.knn_sums(x, x, 0.05, len(x), 0, QUESTS.seed)
    assert full.truncation_bound == 0.0
    np.testing.assert_allclose(full.log_p, exact, rtol=0, atol=1e-12)  # near-field distances in float64
    for k in (5, 50):
        part = entropy.knn_sums(x, x, 0.05, k, 0, QUESTS.seed)
        true_rel = np.exp(exact - part.log_p) - 1
        assert np.all(true_rel <= part.truncation_bound * (1 + 1e-9))


def test_knn_sampling_every_reference_point_is_exact():
    pytest.importorskip("faiss", reason="faiss-cpu not installed")
    x = clustered(1500, 8, 0)
    y = np.concatenate([clustered(300, 8, 1), np.full((2, 8), 3.0)])  # two outliers far from all of x
    for q, exact in ((x, entropy.log_kernel_sums(x, x, 0.02, QUESTS.batch_size)), (y, entropy.log_kernel_sums(y, x, 0.02, QUESTS.batch_size))):
        sums = entropy.knn_sums(q, x, 0.02, 10, len(x), QUESTS.seed)  # all of x sampled: near-field points counted once
        # far field in float32 about the mean: |dz| <~ 4 max|x - mean|^2 eps32 / 2h^2 = 4e-5 here
        np.testing.assert_allclose(sums.log_p, exact, rtol=0, atol=4e-5)
        assert not np.any(sums.stderr) and sums.sum_var == (0.0, 0.0)
    s = entropy.scores(entropy.knn_sums(x, x, 0.02, 10, len(x), QUESTS.seed))
    assert s.entropy_stderr == 0.0 and s.diversity_stderr == 0.0


@pytest.mark.parametrize("approximate_from", [10**9, 1000])  # exact kNN; inverted-file kNN
def test_knn_sampled_sums_are_unbiased_with_calibrated_errors(approximate_from):
    pytest.importorskip("faiss", reason="faiss-cpu not installed")
    x, h = clustered(3000, 8, 2), 0.02
    exact = entropy.log_kernel_sums(x, x, h, QUESTS.batch_size)
    h_true, d_true = entropy.entropy(exact), entropy.diversity(exact)
    truncated = entropy.entropy(entropy.knn_sums(x, x, h, 8, 0, QUESTS.seed).log_p)
    assert truncated - h_true > 0.5  # truncation alone is far off here
    runs = [entropy.knn_sums(x, x, h, 8, 300, seed, approximate_from) for seed in range(16)]
    z = np.concatenate([(r.log_p - exact) / r.stderr for r in runs])
    assert 0.5 < np.mean(z ** 2) < 2.0  # per-point standard errors match the actual errors
    s = [entropy.scores(r) for r in runs]
    h_err = np.array([v.entropy - h_true for v in s])
    d_err = np.array([v.diversity - d_true for v in s])
    h_se, d_se = np.mean([v.entropy_stderr for v in s]), np.mean([v.diversity_stderr for v in s])
    assert 0.5 < np.std(h_err) / h_se < 2.0 and 0.5 < np.std(d_err) / d_se < 2.0
    mean_se = 4 / np.sqrt(len(runs))  # 4 standard errors of a mean of 16
    assert abs(np.mean(h_err)) < mean_se * h_se and abs(np.mean(d_err)) < mean_se * d_se
    assert np.max(np.abs(h_err)) / h_true < 1e-2


def test_bad_descriptors():
    with pytest.raises(InputError, match=r"NaN or inf \(rows \[1\]"):
        entropy.check_descriptors(np.array([[0.0, 1.0], [np.nan, 1.0]]), "d.npz")
    with pytest.raises(InputError, match="non-empty"):
        entropy.check_descriptors(np.zeros((0, 3)), "d.npz")
    with pytest.raises(InputError, match="dimension 3 does not match the reference's 4"):
        entropy.log_kernel_sums(np.zeros((2, 3)), np.zeros((2, 4)), 0.1, QUESTS.batch_size)
    with pytest.raises(InputError, match="dimension 3 does not match the reference's 4"):
        entropy.knn_sums(np.zeros((2, 3)), np.zeros((2, 4)), 0.1, 1, 10, QUESTS.seed)


@pytest.mark.parametrize("k, far", [(0, 10), (1, -1)])
def test_bad_knn_settings(k, far):
    with pytest.raises(ConfigError, match=f"knn_k >= 1 and knn_far_samples >= 0, got {k}, {far}"):
        entropy.knn_sums(np.zeros((2, 3)), np.zeros((2, 3)), 0.1, k, far, QUESTS.seed)


def test_neighbour_distances_and_bandwidth_advice():
    rng = np.random.default_rng(5)
    x = rng.random((300, 7))
    x[17] = x[42]  # an exact copy: distance 0, whichever of the two FAISS lists first
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(axis=2))
    np.fill_diagonal(d, np.inf)
    np.testing.assert_allclose(entropy.neighbour_distances(x, 1000, 0), d.min(axis=1), rtol=1e-12, atol=1e-12)
    some = entropy.neighbour_distances(x, 50, 3)
    assert len(some) == 50 and set(np.round(some, 12)) <= set(np.round(d.min(axis=1), 12))
    median = np.median(d.min(axis=1))
    assert "alone in its kernel" in entropy.bandwidth_advice(0.05 * median, d.min(axis=1))
    assert "merges most environments" in entropy.bandwidth_advice(20 * median, d.min(axis=1))
    assert entropy.bandwidth_advice(median, d.min(axis=1)) is None


def test_kernel_sums_do_not_lose_the_self_term_to_large_norms():
    """Features far from the origin (SOAP, latent features): ‖y‖² + ‖x‖² − 2y·x cancels
    the digits of the norms; close pairs are computed from differences, so isolated
    environments give log p = 0 exactly (H = ln N) and a translation changes nothing."""
    rng = np.random.default_rng(9)
    x = rng.random((500, 250)) * 8.0
    for shift in (0.0, 1e3):
        lp = entropy.log_kernel_sums(x + shift, x + shift, 0.015, 128)
        np.testing.assert_allclose(lp, 0.0, rtol=0, atol=1e-12)
        assert entropy.entropy(lp) == pytest.approx(math.log(len(x)), rel=1e-14)
    pair = np.stack([x[0], x[0] + 1e-3])
    for shift in (0.0, 1e3):  # two environments 1e-3 * sqrt(250) apart: the kernel term by its closed form
        lp = entropy.log_kernel_sums(pair + shift, pair + shift, 0.05, 2)
        np.testing.assert_allclose(lp, np.log1p(np.exp(-250e-6 / (2 * 0.05**2))), rtol=1e-10)


@pytest.fixture(scope="module")
def rattled_environments():
    """40,000 QUESTS environments of 64-atom Si cells rattled by 0.02 to 0.2 Å: dense where
    cells are near the lattice, sparse around the hottest ones."""
    base = bulk("Si", "diamond", a=5.431, cubic=True).repeat((2, 2, 2))
    rng = np.random.default_rng(7)
    cells = []
    for i in range(625):
        atoms = base.copy()
        atoms.rattle(rng.choice([0.02, 0.05, 0.1, 0.2]), seed=7 + i)
        cells.append(describe(atoms))
    return np.concatenate(cells)


def test_knn_errors_stay_honest_where_the_far_field_is_sparse(rattled_environments, monkeypatch):
    """Sampled with 512 of 40,000, an environment in a sparse region has the rest of its sum
    in a few hundred points the sample mostly misses, and the sample's own variance is far
    too small there. With samples grown where they hold < ESS_MIN effective terms (and the
    truncation bound where even the largest does), the errors against exact sums are
    standard-normal sized; without (FAR_ROUNDS 0, ESS_MIN 0: the estimator as it was), they
    are not."""
    x, h = rattled_environments, QuestsConfig().bandwidth
    y = x[np.sort(np.random.default_rng(1).choice(len(x), 1000, replace=False))]
    exact = entropy.log_kernel_sums(y, x, h, QUESTS.batch_size)

    def z_squared():
        runs = [entropy.knn_sums(y, x, h, QUESTS.knn_k, 512, seed) for seed in range(3)]
        z = np.concatenate([(r.log_p - exact) / np.maximum(r.error, 1e-9) for r in runs])  # 1e-9: rounding
        return z ** 2, runs

    z2, runs = z_squared()
    assert 0.5 < np.mean(z2) < 2.0 and np.mean(z2 > 16) < 0.005
    assert all(100 < r.resampled < 600 and r.sparse < r.resampled for r in runs)
    monkeypatch.setattr(entropy, "FAR_ROUNDS", 0)
    monkeypatch.setattr(entropy, "ESS_MIN", 0)
    z2_before, _ = z_squared()
    assert np.mean(z2_before) > 100 and np.mean(z2_before > 16) > 0.02
