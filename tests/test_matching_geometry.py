"""The coordinates matching is verified in, and its certificate: closed forms."""

import numpy as np
import pytest

from pipeline.scores import matching_geometry as g


def test_shortfall_is_the_schur_complement_and_free_of_the_nuisance_scale():
    """Target diag(1, 0): the second parameter is a nuisance. One candidate [[2, 1], [1, 1]]
    at weight w holds 2w about the first alone, but w once the second is estimated too
    (2w − w²/w): the shortfall is w − 1, however the nuisance direction is scaled."""
    target = np.diag([1.0, 0.0])
    cand = np.array([[[2.0, 1.0], [1.0, 1.0]]])
    for k in (1.0, 1e-4, 1e4):  # the nuisance parameter in other units
        d = np.diag([1.0, k])
        white = g.whitening(target)
        assert white.rank == 1
        w_cands = g.congruent(d @ cand @ d, white.s)
        for w in (0.5, 1.0, 3.0):
            assert g.shortfall(np.array([w]), w_cands, white.rank) == pytest.approx(w - 1, rel=1e-9, abs=1e-12)
    # with a nuisance the candidate says nothing about, it is the plain eigenvalue
    plain = g.congruent(np.array([np.diag([2.0, 0.0])]), g.whitening(target).s)
    assert g.shortfall(np.array([1.0]), plain, 1) == pytest.approx(1.0)


def test_rescale_factor_is_the_closed_form():
    white = g.whitening(np.eye(2))
    cands = g.congruent(np.array([np.diag([1.0, 0.25])]), white.s)
    # 0.25 s >= 1 - 1e-6: s = 4 (1 - 1e-6)
    assert g.rescale_factor(np.array([1.0]), cands, 2, 1e-6) == pytest.approx(4 * (1 - 1e-6), rel=1e-9)
    uncovered = g.congruent(np.array([np.diag([1.0, 0.0])]), white.s)
    assert g.rescale_factor(np.array([1.0]), uncovered, 2, 1e-6) == float("inf")


def test_lower_bound_from_a_dual_is_a_bound_and_tight_at_the_optimum():
    """min w1 + w2 s.t. diag(w1, 2 w2) ⪰ I: w = (1, 1/2), 1.5; Z = diag(1, 1/2) is dual optimal."""
    target, cands, costs = np.eye(2), np.array([np.diag([1.0, 0.0]), np.diag([0.0, 2.0])]), np.ones(2)
    assert g.lower_bound(np.diag([1.0, 0.5]), cands, target, costs) == pytest.approx(1.5)
    rng = np.random.default_rng(0)
    for _ in range(20):  # any matrix, projected and scaled to feasibility, bounds from below
        z = rng.normal(size=(2, 2))
        assert g.lower_bound(z, cands, target, costs) <= 1.5 + 1e-12


def test_balancing_is_a_congruence_that_keeps_the_target_block_diagonal():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 4, 2))
    cands = x @ x.transpose(0, 2, 1)
    target = np.diag([1e4, 1.0, 1e-6, 0.0])
    white = g.whitening(target)
    s = g.balancing(g.congruent(cands, white.s), white)
    assert np.linalg.matrix_rank(s) == 4
    t = g.congruent(target, s)
    assert np.allclose(t[:3, 3], 0) and t[3, 3] == pytest.approx(0, abs=1e-12)
    total = g.congruent(cands, s).sum(axis=0)
    # needed directions: target and total information multiply to 1 (they meet halfway); nuisance: unit total
    np.testing.assert_allclose(np.diag(t)[:3] * np.diag(total)[:3], 1.0, rtol=1e-8)
    np.testing.assert_allclose(total[:3, :3], np.diag(np.diag(total)[:3]), atol=1e-8 * total.max())
    assert total[3, 3] == pytest.approx(1.0)
