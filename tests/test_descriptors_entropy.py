"""QUESTS descriptors and entropies against the quests package and known answers."""

import math

import numpy as np
import pytest
from ase.build import bulk, molecule

from pipeline import entropy
from pipeline.descriptors import quests
from pipeline.errors import ConfigError, InputError

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
    np.testing.assert_allclose(quests(atoms), reference.get_descriptors([atoms]), rtol=0, atol=1e-10)


@pytest.mark.parametrize("k,cutoff", [(32, 5.0), (8, 4.0), (40, 6.0)])
def test_non_periodic_descriptors_equal_quests(k, cutoff):
    cluster = rattled(lambda: bulk("Si", "diamond", a=5.431, cubic=True).repeat(2), 2)
    cluster.pbc = False
    water = molecule("H2O")
    for atoms in (cluster, water):
        np.testing.assert_allclose(quests(atoms, k, cutoff), reference.get_descriptors([atoms], k=k, cutoff=cutoff),
                                   rtol=0, atol=1e-10)


def test_partial_periodicity_is_respected():
    slab = rattled(lambda: bulk("Si", "diamond", a=5.431, cubic=True).repeat((2, 2, 1)), 3)
    slab.center(vacuum=8.0, axis=2)  # more vacuum than the cutoff: z periodicity cannot matter
    open_z = slab.copy()
    open_z.pbc = [True, True, False]
    np.testing.assert_allclose(quests(open_z), quests(slab), atol=1e-12)
    with pytest.raises(ConfigError, match="k >= 2"):
        quests(slab, k=1)


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


def test_knn_equals_exact_with_all_neighbours_and_stays_within_its_bound():
    pytest.importorskip("faiss", reason="faiss-cpu not installed")
    rng = np.random.default_rng(5)
    x = rng.normal(scale=0.05, size=(800, 20))
    exact = entropy.log_kernel_sums(x, x, 0.05, 128)
    full = entropy.knn_log_kernel_sums(x, x, 0.05, len(x))
    assert full.max_rel_error == 0.0
    np.testing.assert_allclose(full.log_p, exact, rtol=1e-5)  # float32 distances in FAISS
    for k in (5, 50):
        part = entropy.knn_log_kernel_sums(x, x, 0.05, k)
        true_rel = np.exp(exact - part.log_p) - 1
        assert np.all(true_rel <= part.max_rel_error * (1 + 1e-4) + 1e-5)


def test_bad_descriptors():
    with pytest.raises(InputError, match=r"NaN or inf \(rows \[1\]"):
        entropy.check_descriptors(np.array([[0.0, 1.0], [np.nan, 1.0]]), "d.npz")
    with pytest.raises(InputError, match="non-empty"):
        entropy.check_descriptors(np.zeros((0, 3)), "d.npz")
    with pytest.raises(InputError, match="dimension 3 does not match the reference's 4"):
        entropy.log_kernel_sums(np.zeros((2, 3)), np.zeros((2, 4)), 0.1)
