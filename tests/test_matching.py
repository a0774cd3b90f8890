"""Information matching: known answers, scaling, solvers agreeing, infeasibility."""

import numpy as np
import pytest
from conftest import independent_selection, matched

from pipeline.core.errors import InputError
from pipeline.scores.matching import MatchingError

pytest.importorskip("cvxpy", reason="cvxpy not installed (a dependency of information-matching)")


def random_psd(n, p, rank, seed):
    x = np.random.default_rng(seed).normal(size=(n, p, rank))
    return x @ x.transpose(0, 2, 1)


@pytest.mark.parametrize("solver", ["CLARABEL", "SCS"])
@pytest.mark.parametrize("s", [1.0, 7.5, 3e4])
def test_identity_target_selects_the_identity_with_weight_s(solver, s):
    eye = np.eye(3)
    out = matched(np.stack([eye, np.zeros((3, 3))]), s * eye, solver=solver)
    assert out.selected == (0,)
    assert out.weights[0] == pytest.approx(s, rel=1e-5) and out.weights[1] == 0.0
    assert out.min_eigenvalue > -1e-6


def test_scaling_the_target_scales_the_weights():
    cands, target = random_psd(60, 4, 2, 1), np.diag([3.0, 1.0, 2.0, 0.5])
    base = matched(cands, target)
    for c in (0.01, 10.0, 1e4):
        scaled = matched(cands, c * target)
        assert scaled.selected == base.selected
        np.testing.assert_allclose(scaled.weights, c * base.weights, rtol=1e-5, atol=1e-9 * c * base.weights.max())


def test_solution_covers_the_target_and_is_no_larger_than_a_feasible_one():
    cands, target = random_psd(40, 3, 3, 2), np.eye(3)
    out = matched(cands, target)
    total = np.einsum("i,ijk->jk", out.weights, cands)
    assert np.linalg.eigvalsh(total - target).min() >= -1e-6 * np.linalg.norm(target)
    # a feasible point: all weights equal to t, the smallest t with t * sum(F) >= target
    s = np.sum(cands, axis=0)
    t = 1 / np.linalg.eigvalsh(np.linalg.inv(np.linalg.cholesky(s)) @ target @ np.linalg.inv(np.linalg.cholesky(s)).T).min()
    assert out.weights.sum() <= len(cands) / t * (1 + 1e-6)


def test_max_frobenius_preconditioning_leaves_the_answer_and_upper_bound_is_kept():
    cands, target = random_psd(30, 3, 2, 3), np.eye(3)
    plain, scaled = matched(cands, target, precondition="none"), matched(cands, target)
    np.testing.assert_allclose(plain.weights, scaled.weights, rtol=1e-5, atol=1e-7 * plain.weights.max())
    bound = 0.5 * scaled.weights.max()
    capped = matched(cands, target, weight_upper_bound=bound)
    assert capped.weights.max() <= bound * (1 + 1e-6) and capped.min_eigenvalue > -1e-6


def test_infeasible_and_malformed_problems_are_errors():
    with pytest.raises(MatchingError, match="infeasible: every candidate FIM is zero"):
        matched(np.zeros((5, 2, 2)), np.eye(2))
    rank_one = np.array([[[1.0, 0.0], [0.0, 0.0]]] * 3)  # no candidate informs the second parameter
    with pytest.raises(MatchingError, match="status 'infeasible'"):
        matched(rank_one, np.eye(2))
    with pytest.raises(InputError, match="every entry is zero"):
        matched(np.stack([np.eye(2)]), np.zeros((2, 2)))
    with pytest.raises(InputError, match=r"expected shape \(n, 2, 2\)"):
        matched(np.zeros((3, 3, 3)), np.eye(2))
    with pytest.raises(MatchingError, match="frobenius: candidate FIMs \\[1\\] are zero"):
        matched(np.stack([np.eye(2), np.zeros((2, 2))]), np.eye(2), precondition="frobenius")


def test_a_status_other_than_optimal_is_an_error_unless_it_verifies():
    # SDPA solves this tiny problem to 'optimal_inaccurate': taken, and recorded, only because the
    # kept weight verifies (closed form: w = 1 on I against I); Clarabel stopped early is refused
    result = matched(np.stack([np.eye(3), np.zeros((3, 3))]), np.eye(3), solver="SDPA")
    assert result.status == "optimal_inaccurate" and result.weights == pytest.approx([1.0, 0.0], abs=1e-6)
    with pytest.raises(MatchingError, match="CLARABEL: status 'user_limit'.*try another solver"):
        matched(np.stack([np.eye(3), 2 * np.eye(3)]), np.diag([1.0, 2.0, 3.0]), solver_options={"max_iter": 1})


def test_a_violated_constraint_is_an_error():
    # the optimum is w = (1, 1000); weight_tol 0.5 drops w0, leaving diag(0, 1) - I with λ_min = -1,
    # which no rescaling of w1 lifts
    cands = np.stack([np.diag([1.0, 0.0]), np.diag([0.0, 1e-3])])
    assert matched(cands, np.eye(2)).weights == pytest.approx([1.0, 1000.0], rel=1e-5)
    with pytest.raises(MatchingError, match=r"violate the constraint by 1 of the target's information.*"
                                            r"max_violation=1e-06.*dropped 1 weights"):
        matched(cands, np.eye(2), weight_tol=0.5)


def test_dropped_weights_are_made_up_by_rescaling_the_kept_ones():
    # the optimum of diag(1, 1/2) and diag(0, 1) against I is w = (1, 1/2); weight_tol 0.6 drops w1,
    # and diag(1, 1/2) alone covers I at weight 2 (closed form: 1 / (1/2)), less max_violation's slack
    cands = np.stack([np.diag([1.0, 0.5]), np.diag([0.0, 1.0])])
    full = matched(cands, np.eye(2))
    assert full.weights == pytest.approx([1.0, 0.5], rel=1e-6) and full.rescaled_by == 1.0
    out = matched(cands, np.eye(2), weight_tol=0.6)
    assert out.selected == (0,) and out.dropped == (1,)
    assert out.dropped_weight_mass == pytest.approx(1 / 3, rel=1e-5)
    assert out.rescaled_by == pytest.approx(2 * (1 - 1e-6), rel=1e-6)
    assert out.weights[0] == pytest.approx(2.0, rel=1e-5) and out.min_eigenvalue >= -1e-6


def random_problem(n, p=6, rank=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p, rank)) * 10 ** rng.uniform(-0.5, 0.5, size=(n, 1, 1))
    y = rng.normal(size=(p, p))
    return x @ x.transpose(0, 2, 1), y @ y.T / 10


@pytest.mark.parametrize("options", [{}, {"weight_upper_bound": 0.004}])
def test_column_generation_reaches_the_direct_solution(monkeypatch, options):
    """Many candidates are matched over subsets priced by the dual (matching_columns.py):
    the same selection and weights as one solve over all of them."""
    from pipeline.scores import matching

    cands, target = random_problem(3000)
    direct = matched(cands, target, **options)
    monkeypatch.setattr(matching, "COLUMNS_FROM", 100)
    monkeypatch.setattr("pipeline.scores.matching_columns.START", 200)
    by_columns = matched(cands, target, **options)
    assert by_columns.selected == direct.selected
    assert by_columns.weights.sum() == pytest.approx(direct.weights.sum(), rel=1e-6)
    np.testing.assert_allclose(by_columns.weights, direct.weights, rtol=0, atol=1e-4 * direct.weights.max())
    assert by_columns.min_eigenvalue >= -1e-6


def test_column_generation_still_refuses_an_infeasible_target(monkeypatch):
    from pipeline.scores import matching

    monkeypatch.setattr(matching, "COLUMNS_FROM", 10)
    monkeypatch.setattr("pipeline.scores.matching_columns.START", 5)
    rank_one = np.stack([np.outer(v, v) for v in np.random.default_rng(1).normal(size=(40, 1)) * [[1.0, 0.0]]])
    with pytest.raises(MatchingError, match="cannot match the target"):
        matched(rank_one, np.eye(2))


@pytest.mark.parametrize("seed", [0, 3])
def test_solver_noise_is_never_selected(seed):
    """An interior-point solver leaves every candidate a tiny weight: kept only above
    weight_tol × the largest with a dual below dual_tol, the selection is an independent
    solve's with the same tests (conftest.independent_selection), and it still covers the
    target."""
    cands, target = random_problem(300, seed=seed)
    out = matched(cands, target)
    everything = matched(cands, target, weight_tol=0.0, dual_tol=1.0)  # what the solver returned
    assert len(everything.selected) > 10 * len(out.selected)
    assert out.selected == independent_selection(cands, target, 1e-4, 1e-4)
    assert set(out.dropped) == set(everything.selected) - set(out.selected)
    assert min(out.weights[list(out.selected)]) >= 1e-4 * out.weights.max()
    assert out.dropped_weight_mass < 1e-4 and out.min_eigenvalue >= -1e-6


def test_a_target_whose_eigenvalues_span_ten_decades_is_matched_in_every_direction():
    """Plain (max_frobenius) matching resolves only the target's stiff directions (here
    Clarabel gives up: optimal_inaccurate); balanced, the optimum is the independent
    solve's, the target covered in every direction, the sloppiest included."""
    rng = np.random.default_rng(7)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    target = q @ np.diag([1e-6, 1e-2, 1.0, 1e4]) @ q.T
    x = rng.normal(size=(80, 4, 2)) * np.array([1e-2, 1e-1, 1.0, 1e2])[None, :, None]
    cands = np.einsum("ij,njk->nik", q, x)
    cands = cands @ cands.transpose(0, 2, 1)
    white = matched(cands, target)
    assert white.target_rank == 4 and white.target_condition == pytest.approx(1e10, rel=1e-6)
    assert white.selected == independent_selection(cands, target, 1e-4, 1e-4)
    assert white.min_eigenvalue >= -1e-6
    sloppiest = q[:, 0]  # the target's eigenvector of 1e-6: covered to within max_violation
    covered = sloppiest @ np.einsum("i,ijk->jk", white.weights, cands) @ sloppiest
    assert covered >= 1e-6 * (1 - 1e-6)
