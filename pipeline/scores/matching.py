"""Information matching: which candidate configurations, with what weight.

Minimise Σ wᵢ subject to Σ wᵢ Fᵢ − F_target ⪰ 0 and w ≥ 0 (optionally w ≤ an upper
bound), with information-matching's ConvexOpt through cvxpy.

Preconditioning. ``whiten`` (the default) solves the same problem in the coordinates
where the target is the identity on the directions it needs (S = U Λ^-½ from the
target's eigenvectors with eigenvalues above ``RCOND`` times the largest; the rest,
which the target does not need, scaled alike): a congruence, so the optimum is the one
of the plain problem, but every direction the target needs is resolved to the
solver's tolerance, however many decades its eigenvalues span (a target whose
eigenvalues span 10 decades is otherwise matched only in its stiff directions).
``max_frobenius`` scales all FIMs by one factor (the same optimum, unresolved sloppy
directions); ``frobenius`` scales each candidate by its own norm and changes the
problem. The weights are returned unscaled.

Noise is never a selection. A weight is kept only if it is above ``weight_tol`` times
the largest **and** the dual of its w ≥ 0 constraint (its reduced cost, relative to
its cost in the objective: 0 for a candidate the optimum uses, up to 1 for one it
does not) is below ``dual_tol``, as Orchestrator's ``zero_tol``/``zero_tol_dual``.
The kept weights alone are then verified: the smallest eigenvalue of
S^T (Σ wᵢ Fᵢ − F_target) S, in which the target is 1 in every direction it needs, so
``-min_eigenvalue`` is the share of the target's information the selection misses in
its worst direction. Beyond ``max_violation``, the kept weights are scaled up by the
smallest factor that restores it (``rescaled_by``, reported); if none can, it is an
error, as is any solver status but ``optimal``: an inaccurate answer is never passed
on as a selection. ``dropped_weight_mass`` is the share of the solver's total weight
that was dropped as noise.
"""

import time
from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import AtomsieveError, ConfigError, InputError, check_choice
from pipeline.core.outputs import (
    CANDIDATE,
    FIM_PARAMETERS,
    FIM_QUANTITY,
    FIM_TRAINING_SET_SCORE,
    IMAGE_HASH,
    SPLIT,
    mask_of,
)
from pipeline.models.parameters import label_text
from pipeline.models.transforms import import_information_matching

SOLVERS = ("CLARABEL", "SCS", "SDPA")
# SCS stops at 1e-4 by default, far looser than the others; ask it for as much as they give
SOLVER_OPTIONS = {"CLARABEL": {}, "SCS": {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 500_000}, "SDPA": {}}
PRECONDITIONS = ("whiten", "max_frobenius", "frobenius", "none")
RCOND = 1e-12  # target eigenvalues below this times the largest: directions the target does not need
MAX_RESCALE = 1e6  # kept weights that need a larger factor than this cannot cover the target
COLUMNS_FROM = 20_000  # more (preconditioned) candidates than this: column generation (matching_columns.py)


class MatchingError(AtomsieveError):
    """The convex problem has no solution, or the solver failed."""


@dataclass(frozen=True)
class Match:
    weights: np.ndarray  # (n,) every candidate's weight, unscaled; zero where not kept
    selected: tuple[int, ...]  # indices of nonzero weights, sorted
    status: str  # the solver's status: always optimal (anything else is an error)
    solver: str
    min_eigenvalue: float  # λ_min(S^T (Σ w F − F_target) S) over the kept weights (target: 1 in each direction)
    seconds: float
    duals: np.ndarray  # (n,) reduced cost of each candidate relative to its cost (0: the optimum uses it)
    dropped: tuple[int, ...]  # candidates the solver gave a weight that was dropped as noise, sorted
    dropped_weight_mass: float  # their share of the solver's total weight
    rescaled_by: float  # the factor the kept weights were scaled by to satisfy the constraint (1: none)
    target_rank: int  # directions of parameter space the target needs information in
    target_condition: float  # largest over smallest eigenvalue of the target on those directions


CANDIDATES = ("train", "all")  # matching.candidates: which rows may be selected


def candidate_rows(rows, which: str, where: str) -> list:
    """The rows that may be selected: the train split's (``train``) or all (``all``)."""
    check_choice("matching.candidates", which, CANDIDATES)
    chosen = [a for a in rows if which == "all" or a.info.get(SPLIT.key, "train") == "train"]
    if not chosen:
        raise InputError(f"{where}: no candidate images (matching.candidates={which})")
    return chosen


def selection(frames, result: "Match") -> dict[str, dict]:
    """``{candidate: {image_hash, quantity, mask, weight}}`` of the selected candidates,
    in input order (mask: the digest in the id, None where unmasked)."""
    out = {}
    for i in result.selected:
        name = frames[i].info[CANDIDATE.key]
        out[name] = {"image_hash": frames[i].info[IMAGE_HASH.key], "quantity": frames[i].info[FIM_QUANTITY.key],
                     "mask": mask_of(name), "weight": float(result.weights[i])}
    return out


def candidate_fims(frames, target: np.ndarray, target_labels: dict, where: str) -> np.ndarray:
    """The candidates' FIMs (n, P, P) from their info ``fim_training_set_score``, each
    checked against the target: the same parameter labels (info ``fim_parameters``) and
    shape; :class:`InputError` naming the candidate otherwise."""
    want, out = label_text(target_labels), []
    for atoms in frames:
        name = atoms.info.get(CANDIDATE.key)
        if not isinstance(name, str) or FIM_QUANTITY.key not in atoms.info or FIM_PARAMETERS.key not in atoms.info:
            raise InputError(f"{where}: image {atoms.info.get('image_hash')}: expected info 'candidate', "
                             "'fim_quantity' and 'fim_parameters' (written by the fim_train stage); run it again")
        if atoms.info[FIM_PARAMETERS.key] != want:
            raise InputError(f"{where}: candidate {name}: its FIM is over the parameters {atoms.info[FIM_PARAMETERS.key]} "
                             f"but the target's over {want}; make both with the same potential.parameters_optimize")
        fim = np.asarray(atoms.info.get(FIM_TRAINING_SET_SCORE.key, []), dtype=float)
        if fim.size != target.size:
            raise InputError(f"{where}: candidate {name}: expected fim_training_set_score of the target's shape "
                             f"{target.shape}, got {fim.shape}")
        out.append(fim.reshape(target.shape))
    return np.stack(out)


def check_fims(candidates: np.ndarray, target: np.ndarray) -> None:
    p = target.shape[0]
    if target.ndim != 2 or target.shape != (p, p):
        raise InputError(f"target FIM: expected a square matrix, got shape {target.shape}")
    if candidates.ndim != 3 or candidates.shape[1:] != (p, p) or len(candidates) == 0:
        raise InputError(f"candidate FIMs: expected shape (n, {p}, {p}) with n > 0, got {candidates.shape}")
    if not np.all(np.isfinite(candidates)) or not np.all(np.isfinite(target)):
        raise InputError("FIMs: expected finite values")


def check_options(weight_tol: float, max_violation: float, weight_upper_bound: float | None,
                  dual_tol: float) -> None:
    if not 0 < dual_tol <= 1:
        raise ConfigError(f"matching.dual_tol: expected a value in (0, 1], got {dual_tol}")
    if weight_upper_bound is not None and not weight_upper_bound > 0:
        raise ConfigError(f"matching.weight_upper_bound: expected a weight > 0 or null, got {weight_upper_bound}")
    if not 0 <= weight_tol < 1:
        raise ConfigError(f"matching.weight_tol: expected a value in [0, 1), got {weight_tol}")
    if not 0 <= max_violation < 1:
        raise ConfigError(f"matching.max_violation: expected a value in [0, 1), got {max_violation}")


def _hint(solver: str) -> str:
    return (f"try another solver ({', '.join(x for x in SOLVERS if x != solver)}), matching.precondition=whiten, "
            "potential.transform.type=log to put parameters of different sizes on one scale, or a "
            "matching.weight_upper_bound")


def _scaled_confs(configs: dict) -> np.ndarray:
    """Each candidate's fim_scale, as ConvexOpt reads it (1 for a bare matrix)."""
    return np.array([v.get("fim_scale", 1.0) if isinstance(v, dict) else 1.0 for v in configs.values()])


@dataclass(frozen=True)
class Whitening:
    """The congruence S (P, P) in which the target is the identity on the ``rank``
    directions it needs (its eigenvalues above RCOND × the largest) and 0 on the rest,
    which are scaled as the stiffest needed one."""

    s: np.ndarray
    rank: int
    condition: float  # largest over smallest needed eigenvalue


def whitening(target: np.ndarray) -> Whitening:
    sym = (target + target.T) / 2
    lam, vec = np.linalg.eigh(sym)
    need = lam > RCOND * lam.max()
    s = np.hstack([vec[:, need] / np.sqrt(lam[need]), vec[:, ~need] / np.sqrt(lam.max())])
    return Whitening(s, int(need.sum()), float(lam[need].max() / lam[need].min()))


def congruent(fims: np.ndarray, s: np.ndarray) -> np.ndarray:
    """S^T F S of every FIM of ``fims`` (..., P, P), symmetrised."""
    out = np.einsum("ji,...jk,kl->...il", s, fims, s)
    return (out + np.swapaxes(out, -1, -2)) / 2


def smallest_eigenvalue(weights: np.ndarray, white: np.ndarray, white_target: np.ndarray) -> float:
    """λ_min(Σ wᵢ Gᵢ − G_target) of whitened FIMs."""
    return float(np.linalg.eigvalsh(np.einsum("i,ijk->jk", weights, white) - white_target).min())


def rescale_factor(weights: np.ndarray, white: np.ndarray, white_target: np.ndarray, max_violation: float) -> float:
    """The smallest s ≥ 1 with λ_min(s Σ wᵢ Gᵢ − G_target) ≥ −max_violation (bisection: the
    eigenvalue grows with s since Σ wᵢ Gᵢ ⪰ 0), or inf if no s up to MAX_RESCALE gives it."""
    def ok(s):
        return smallest_eigenvalue(s * weights, white, white_target) >= -max_violation

    if ok(1.0):
        return 1.0
    if not ok(MAX_RESCALE):
        return float("inf")
    lo, hi = 1.0, MAX_RESCALE
    while hi / lo > 1 + 1e-12:
        mid = np.sqrt(lo * hi) if hi / lo > 2 else (lo + hi) / 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def weight_scale(white: np.ndarray, white_target: np.ndarray) -> float:
    """An estimate of the optimal sum of weights of whitened FIMs: each direction the
    target needs (a unit diagonal entry) covered alone by the candidate richest in it.
    Dividing the target by it makes the solver's weights about 1."""
    needed = np.diag(white_target) > 0.5
    best = np.diagonal(white, axis1=1, axis2=2)[:, needed].max(axis=0)
    return float(np.sum(1 / best[best > 0])) if (best > 0).any() else 1.0


def _solve(candidates, target, precondition, solver, weight_upper_bound):
    """``(problem, scaled weights, duals, weight unscaling)`` of ConvexOpt on the
    preconditioned FIMs; scaled weights None when the solver gave none."""
    import cvxpy as cp
    from information_matching.convex_optimization import ConvexOpt
    from information_matching.precondition import preconditioner

    configs = {i: f for i, f in enumerate(candidates)}
    target_in = target
    if precondition == "whiten":  # candidates of norm at most 1, the target so that the weights are about 1
        scale = 1 / np.linalg.norm(candidates, axis=(1, 2)).max()
        target_in = {"fim": target, "fim_scale": 1 / weight_scale(scale * candidates, target)}
        configs = {i: {"fim": f, "fim_scale": scale} for i, f in configs.items()}
    elif precondition != "none":
        target_in, configs = preconditioner(target, precondition), preconditioner(configs, precondition)
    kwargs = {"solver": getattr(cp, solver), **SOLVER_OPTIONS[solver]}
    columns = len(configs) > COLUMNS_FROM and precondition != "none"  # unscaled problems are solved whole
    duals = None
    if columns:  # many candidates: the same optimum over a few thousand
        from pipeline.scores.matching_columns import solve as by_columns

        opt, scaled, duals = by_columns(ConvexOpt, target_in, configs, weight_upper_bound, kwargs)
        scale_conf = _scaled_confs(configs)
    else:
        opt, scaled = ConvexOpt(target_in, configs, weight_upper_bound=weight_upper_bound), None
        try:
            opt.solve(**kwargs)
        except AttributeError:  # ConvexOpt.solve reads the weights a failed solve left as None
            pass
        scale_conf = opt.scale_conf
        if opt.result is not None and opt.result["wm"] is not None:
            scaled = np.asarray(opt.result["wm"], dtype=float).ravel()
            duals = np.asarray(opt.result["dual_wm"], dtype=float).ravel()
    return opt, scaled, duals, scale_conf / opt.scale_qoi


def match(candidates: np.ndarray, target: np.ndarray, precondition: str, solver: str, weight_tol: float,
          weight_upper_bound: float | None, max_violation: float, dual_tol: float) -> Match:
    """Information matching of ``target`` (P, P) by ``candidates`` (n, P, P).

    Raises :class:`MatchingError` unless the solver reports ``optimal`` and the kept
    weights (rescaled if needed) satisfy S^T (Σ wᵢ Fᵢ − F_target) S ⪰ −``max_violation``."""
    check_choice("matching.precondition", precondition, PRECONDITIONS)
    check_choice("matching.solver", solver, SOLVERS)
    check_fims(candidates, target)
    check_options(weight_tol, max_violation, weight_upper_bound, dual_tol)
    import_information_matching()
    import cvxpy as cp

    norms = np.linalg.norm(candidates, axis=(1, 2))
    if not np.linalg.norm(target):
        raise InputError("target FIM: every entry is zero; there is nothing to match")
    if not norms.any():
        raise MatchingError("infeasible: every candidate FIM is zero, so no weights can match the target")
    if precondition == "frobenius" and not norms.all():
        raise MatchingError(f"matching.precondition=frobenius: candidate FIMs {np.flatnonzero(norms == 0).tolist()} "
                            "are zero and cannot be scaled by their norm; use whiten or max_frobenius")
    white = whitening(target)
    w_cands, w_target = congruent(candidates, white.s), congruent(target, white.s)
    solve_c, solve_t = (w_cands, w_target) if precondition == "whiten" else (candidates, target)
    start = time.perf_counter()
    try:
        opt, scaled, duals, unscale = _solve(solve_c, solve_t, precondition, solver, weight_upper_bound)
    except (cp.error.SolverError, ValueError, ZeroDivisionError) as err:
        raise MatchingError(
            f"matching.solver={solver}: {type(err).__name__}: {err} Badly scaled FIMs are the usual cause: "
            f"{_hint(solver)}") from err
    seconds = time.perf_counter() - start
    status = opt.problem.status
    if status in ("infeasible", "infeasible_inaccurate") or scaled is None:
        raise MatchingError(
            f"matching.solver={solver}: status {status!r}; the candidates cannot match the target "
            "(do their FIMs together cover every direction the target needs?)")
    if status != "optimal":
        raise MatchingError(f"matching.solver={solver}: status {status!r}; this is not a trustworthy selection: "
                            f"{_hint(solver)}")
    solved = np.clip(scaled * unscale, 0.0, None)
    duals = np.clip(duals, 0.0, None)
    keep = (solved > weight_tol * solved.max()) & (duals < dual_tol)
    if not keep.any():
        raise MatchingError(
            f"matching.solver={solver}: no weight passes both tests (largest weight {solved.max():.3g} with dual "
            f"{duals[np.argmax(solved)]:.2g}; matching.dual_tol={dual_tol:g}): the solver's duals do not tell the "
            f"candidates it uses from those it does not, so its answer is not accurate enough; {_hint(solver)}")
    weights = np.where(keep, solved, 0.0)
    dropped = tuple(int(i) for i in np.flatnonzero((solved > 0) & ~keep))
    factor = rescale_factor(weights, w_cands, w_target, max_violation)
    if not np.isfinite(factor):
        worst = smallest_eigenvalue(weights, w_cands, w_target)
        raise MatchingError(
            f"matching.solver={solver}: status {status!r}, but the kept weights violate the constraint by "
            f"{-worst:.3g} of the target's information in its worst direction, and no rescaling up to "
            f"{MAX_RESCALE:g} restores it (matching.max_violation={max_violation:g}; weight_tol={weight_tol:g} and "
            f"dual_tol={dual_tol:g} dropped {len(dropped)} weights): this is not a trustworthy selection: "
            f"{_hint(solver)}")
    weights = weights * factor
    selected = tuple(int(i) for i in np.flatnonzero(weights))
    return Match(weights, selected, status, solver, smallest_eigenvalue(weights, w_cands, w_target), seconds, duals,
                 dropped, float(solved[list(dropped)].sum() / solved.sum()), factor, white.rank, white.condition)
