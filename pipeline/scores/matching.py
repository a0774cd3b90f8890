"""Information matching: which candidate configurations, with what weight.

Minimise Σ wᵢ subject to Σ wᵢ Fᵢ − F_target ⪰ 0 and w ≥ 0 (optionally w ≤ an upper
bound), with information-matching's ConvexOpt through cvxpy.

Preconditioning. ``balance`` (the default) solves the same problem in coordinates
where the target and the candidates' total information meet halfway
(:mod:`pipeline.scores.matching_geometry`): a congruence, so the optimum is the plain
problem's, but a target whose eigenvalues span ten decades is resolved in every
direction it needs, not only in its stiff ones. ``max_frobenius`` scales all FIMs by
one factor (the same optimum, solved as it is); ``frobenius`` scales each candidate
by its own norm and changes the problem. The weights are returned unscaled.

Noise is never a selection. A weight is kept only if it is above ``weight_tol`` times
the largest **and** the dual of its w ≥ 0 constraint (its reduced cost, relative to
its cost in the objective: 0 for a candidate the optimum uses, up to 1 for one it
does not) is below ``dual_tol``, as Orchestrator's ``zero_tol``/``zero_tol_dual``.
The kept weights alone are then verified (:func:`matching_geometry.shortfall`): what
they hold about every direction the target needs, the directions it does not need
marginalised, over what it needs, minus 1; ``-min_eigenvalue`` is the share of the
target's information the selection misses in its worst direction. Beyond
``max_violation``, the kept weights are scaled up by the
smallest factor that restores it (``rescaled_by``, reported); if none can, it is an
error. A solver status of ``optimal_inaccurate`` (SDPA's usual answer) is taken only
when the kept weights, verified here, miss at most ``max_violation`` without any
rescaling; it is then recorded and warned about, never passed on silently. Any other
status is an error. Any installed cvxpy solver that takes semidefinite constraints
may be named, with any of its options (:mod:`pipeline.scores.solvers`); the weight
bound may be one number or one per candidate. ``dropped_weight_mass`` is the share of the solver's total weight
that was dropped as noise. ``optimality_gap`` bounds how far the final Σ w is above
the optimum, from the solver's dual (a certificate, computed here).
"""

import time
import warnings
from dataclasses import dataclass, field, replace

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
from pipeline.scores import matching_geometry as geometry
from pipeline.scores import solvers

SOLVERS = solvers.KNOWN  # those installed with atomsieve; any other installed SDP solver may be named
PRECONDITIONS = ("balance", "max_frobenius", "frobenius", "none")
COLUMNS_FROM = 20_000  # more (preconditioned) candidates than this: column generation (matching_columns.py)


class MatchingError(AtomsieveError):
    """The convex problem has no solution, or the solver failed."""


@dataclass(frozen=True)
class Match:
    weights: np.ndarray  # (n,) every candidate's weight, unscaled; zero where not kept
    selected: tuple[int, ...]  # indices of nonzero weights, sorted
    status: str  # the solver's status: optimal, or optimal_inaccurate verified within max_violation
    solver: str
    min_eigenvalue: float  # matching_geometry.shortfall of the kept weights: −(share of the target missed), ≥ 0 if none
    seconds: float
    duals: np.ndarray  # (n,) reduced cost of each candidate relative to its cost (0: the optimum uses it)
    dropped: tuple[int, ...]  # candidates the solver gave a weight that was dropped as noise, sorted
    dropped_weight_mass: float  # their share of the solver's total weight
    rescaled_by: float  # the factor the kept weights were scaled by to satisfy the constraint (1: none)
    target_rank: int  # directions of parameter space the target needs information in
    target_condition: float  # largest over smallest eigenvalue of the target on those directions
    optimality_gap: float | None  # 1 − the dual's lower bound over Σ w: how far from the optimum at most
    same_as: dict[int, int] = field(default_factory=dict)  # candidate -> the earlier one with the same FIM (solved once)


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


def check_options(weight_tol: float, max_violation: float, weight_upper_bound, dual_tol: float) -> None:
    if not 0 < dual_tol <= 1:
        raise ConfigError(f"matching.dual_tol: expected a value in (0, 1], got {dual_tol}")
    if weight_upper_bound is not None and not np.all(np.asarray(weight_upper_bound, dtype=float) > 0):
        raise ConfigError(f"matching.weight_upper_bound: expected a weight > 0 or null, got {weight_upper_bound}")
    if not 0 <= weight_tol < 1:
        raise ConfigError(f"matching.weight_tol: expected a value in [0, 1), got {weight_tol}")
    if not 0 <= max_violation < 1:
        raise ConfigError(f"matching.max_violation: expected a value in [0, 1), got {max_violation}")


def _hint(solver: str, precondition: str) -> str:
    balance = "" if precondition == "balance" else "matching.precondition=balance, "
    return (f"try another solver ({', '.join(x for x in SOLVERS if x != solver)}) or matching.solver_options, "
            f"{balance}"
            "(in a pipeline) potential.transform.type=log to put parameters of different sizes on one scale, "
            "or a matching.weight_upper_bound")


def _scaled_confs(configs: dict, key: str = "fim_scale") -> np.ndarray:
    """Each candidate's ``fim_scale`` (or ``weight_scale``), as ConvexOpt reads it (1 for a bare matrix)."""
    return np.array([v.get(key, 1.0) if isinstance(v, dict) else 1.0 for v in configs.values()])


def _configs(candidates: np.ndarray, target: np.ndarray, precondition: str):
    """``(target_in, configs)`` as ConvexOpt takes them, preconditioned."""
    from information_matching.precondition import preconditioner

    configs = {i: f for i, f in enumerate(candidates)}
    if precondition == "none":
        return target, configs
    how = "max_frobenius" if precondition == "balance" else precondition  # balanced, then of norms about 1
    return preconditioner(target, how), preconditioner(configs, how)


def _solve(candidates, target, precondition, solver, weight_upper_bound, solver_options):
    """``(problem, scaled weights, duals, weight unscaling, lower bound on Σ cᵢ w̃ᵢ)`` of
    ConvexOpt on the preconditioned FIMs; scaled weights None when the solver gave none."""
    from information_matching.convex_optimization import ConvexOpt

    target_in, configs = _configs(candidates, target, precondition)
    kwargs = {"solver": solver, **solver_options}
    columns = len(configs) > COLUMNS_FROM and precondition != "none"  # unscaled problems are solved whole
    duals = None
    if columns:  # many candidates: the same optimum over a few thousand
        from pipeline.scores.matching_columns import solve as by_columns

        opt, scaled, duals = by_columns(ConvexOpt, target_in, configs, weight_upper_bound, kwargs)
    else:
        opt, scaled = ConvexOpt(target_in, configs, weight_upper_bound=weight_upper_bound), None
        try:
            with warnings.catch_warnings():  # cvxpy's "may be inaccurate", sdpap's eigs: the status is judged here
                warnings.simplefilter("ignore", UserWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                opt.solve(**kwargs)
        except AttributeError:  # ConvexOpt.solve reads the weights a failed solve left as None
            pass
        if opt.result is not None and opt.result["wm"] is not None:
            scaled = np.asarray(opt.result["wm"], dtype=float).ravel()
            duals = np.asarray(opt.result["dual_wm"], dtype=float).ravel()
    scale_conf = _scaled_confs(configs)
    bound = 0.0
    z = opt.constraints[1].dual_value if scaled is not None else None
    if z is not None and weight_upper_bound is None:
        t_scale = target_in.get("fim_scale", 1.0) if isinstance(target_in, dict) else 1.0
        bound = geometry.lower_bound(np.asarray(z, dtype=float), candidates * scale_conf[:, None, None],
                                     target * t_scale, _scaled_confs(configs, "weight_scale"))
    return opt, scaled, duals, scale_conf / opt.scale_qoi, bound


def same_fims(candidates: np.ndarray) -> dict[int, int]:
    """``{i: j}`` for each candidate i whose FIM equals an earlier candidate j's (to 1e-10
    of the largest entry): symmetry-equivalent configurations, say a vacancy at another
    site. The solver would split their weight arbitrarily between them; one is enough."""
    scale = float(np.max(np.abs(candidates))) or 1.0
    first: dict[bytes, int] = {}
    out = {}
    for i, fim in enumerate(np.round(candidates / scale, 10) + 0.0):
        j = first.setdefault(fim.tobytes(), i)
        if j != i:
            out[i] = j
    return out


def match(candidates: np.ndarray, target: np.ndarray, precondition: str, solver: str, weight_tol: float,
          weight_upper_bound, max_violation: float, dual_tol: float, solver_options: dict) -> Match:
    """Information matching of ``target`` (P, P) by ``candidates`` (n, P, P);
    ``weight_upper_bound``: None, one number, or one per candidate. Candidates with the
    same FIM (:func:`same_fims`) are solved once, as the first of them (``same_as``),
    unless they have bounds of their own.

    Raises :class:`MatchingError` unless the solver reports ``optimal`` (or
    ``optimal_inaccurate`` and the kept weights verify without rescaling) and the kept
    weights (rescaled if needed) miss at most ``max_violation`` of the target's
    information in any direction it needs (:func:`matching_geometry.shortfall`)."""
    check_choice("matching.precondition", precondition, PRECONDITIONS)
    solvers.check_solver(solver)
    check_fims(candidates, target)
    check_options(weight_tol, max_violation, weight_upper_bound, dual_tol)
    kwargs = solvers.options(solver, solver_options)
    if weight_upper_bound is not None and np.ndim(weight_upper_bound):
        weight_upper_bound = np.asarray(weight_upper_bound, dtype=float).ravel()
        if len(weight_upper_bound) != len(candidates):
            raise InputError(f"weight upper bounds: expected one per candidate ({len(candidates)}), "
                             f"got {len(weight_upper_bound)}")
    import_information_matching()
    same = same_fims(candidates) if weight_upper_bound is None or not np.ndim(weight_upper_bound) else {}
    if not same:
        return _match(candidates, target, precondition, solver, weight_tol, weight_upper_bound, max_violation,
                      dual_tol, kwargs)
    keep = np.array([i for i in range(len(candidates)) if i not in same])
    r = _match(candidates[keep], target, precondition, solver, weight_tol, weight_upper_bound, max_violation,
               dual_tol, kwargs)
    weights, duals = np.zeros(len(candidates)), np.zeros(len(candidates))
    weights[keep], duals[keep] = r.weights, r.duals
    for i, j in same.items():
        duals[i] = duals[j]
    return replace(r, weights=weights, duals=duals, selected=tuple(int(keep[i]) for i in r.selected),
                   dropped=tuple(int(keep[i]) for i in r.dropped), same_as=same)


def _match(candidates, target, precondition, solver, weight_tol, weight_upper_bound, max_violation, dual_tol,
           kwargs) -> Match:
    import cvxpy as cp

    norms = np.linalg.norm(candidates, axis=(1, 2))
    if not np.linalg.norm(target):
        raise InputError("target FIM: every entry is zero; there is nothing to match")
    if not norms.any():
        raise MatchingError("infeasible: every candidate FIM is zero, so no weights can match the target")
    if precondition == "frobenius" and not norms.all():
        raise MatchingError(f"matching.precondition=frobenius: candidate FIMs {np.flatnonzero(norms == 0).tolist()} "
                            "are zero and cannot be scaled by their norm; use balance or max_frobenius")
    white = geometry.whitening(target)
    w_cands = geometry.congruent(candidates, white.s)
    if precondition == "balance":
        s_solve = geometry.balancing(w_cands, white)
        solve_c, solve_t = geometry.congruent(candidates, s_solve), geometry.congruent(target, s_solve)
    else:
        solve_c, solve_t = candidates, target
    start = time.perf_counter()
    try:
        opt, scaled, duals, unscale, bound = _solve(solve_c, solve_t, precondition, solver, weight_upper_bound, kwargs)
    except (cp.error.SolverError, ValueError, ZeroDivisionError) as err:
        raise MatchingError(
            f"matching.solver={solver}: {type(err).__name__}: {err} Badly scaled FIMs are the usual cause: "
            f"{_hint(solver, precondition)}") from err
    seconds = time.perf_counter() - start
    status = opt.problem.status
    if status in ("infeasible", "infeasible_inaccurate") or scaled is None:
        capped = (f"; with matching.weight_upper_bound={_bound_text(weight_upper_bound)} no candidate may weigh more, "
                  "which may be what makes it impossible: raise or drop the bound") if weight_upper_bound is not None else ""
        raise MatchingError(
            f"matching.solver={solver}: status {status!r}; the candidates cannot match the target "
            f"(do their FIMs together cover every direction the target needs?){capped}")
    if status not in ("optimal", "optimal_inaccurate"):
        limit = " (the solver stopped at its iteration or time limit)" if status == "user_limit" else ""
        raise MatchingError(f"matching.solver={solver}: status {status!r}{limit}; this is not a trustworthy selection: "
                            f"{_hint(solver, precondition)}")
    solved = np.clip(scaled * unscale, 0.0, None)
    duals = np.clip(duals, 0.0, None)
    keep = (solved > weight_tol * solved.max()) & (duals < dual_tol)
    if not keep.any():
        raise MatchingError(
            f"matching.solver={solver}: no weight passes both tests (largest weight {solved.max():.3g} with dual "
            f"{duals[np.argmax(solved)]:.2g}; matching.dual_tol={dual_tol:g}): the solver's duals do not tell the "
            f"candidates it uses from those it does not, so its answer is not accurate enough; {_hint(solver, precondition)}")
    weights = np.where(keep, solved, 0.0)
    dropped = tuple(int(i) for i in np.flatnonzero((solved > 0) & ~keep))
    factor = geometry.rescale_factor(weights, w_cands, white.rank, max_violation)
    if status == "optimal_inaccurate" and factor != 1.0:
        worst = geometry.shortfall(weights, w_cands, white.rank)
        raise MatchingError(
            f"matching.solver={solver}: status 'optimal_inaccurate', and its kept weights miss {-worst:.3g} of the "
            f"target's information in its worst direction (matching.max_violation={max_violation:g}): an inaccurate "
            f"answer is taken only when it verifies as it is; {_hint(solver, precondition)}")
    if not np.isfinite(factor):
        worst = geometry.shortfall(weights, w_cands, white.rank)
        raise MatchingError(
            f"matching.solver={solver}: status {status!r}, but the kept weights violate the constraint by "
            f"{-worst:.3g} of the target's information in its worst direction, and no rescaling up to "
            f"{geometry.MAX_RESCALE:g} restores it (matching.max_violation={max_violation:g}; weight_tol={weight_tol:g} and "
            f"dual_tol={dual_tol:g} dropped {len(dropped)} weights): this is not a trustworthy selection: "
            f"{_hint(solver, precondition)}")
    weights = weights * factor
    selected = tuple(int(i) for i in np.flatnonzero(weights))
    gap = optimality_gap(weights, unscale, bound)
    return Match(weights, selected, status, solver, geometry.shortfall(weights, w_cands, white.rank), seconds, duals,
                 dropped, float(solved[list(dropped)].sum() / solved.sum()), factor, white.rank, white.condition, gap)


def _bound_text(bound) -> str:
    return f"{bound:g}" if np.ndim(bound) == 0 else f"(one per candidate, {np.min(bound):g} to {np.max(bound):g})"


def optimality_gap(weights: np.ndarray, unscale: np.ndarray, bound: float) -> float | None:
    """1 − (the dual's lower bound) / (the objective of the final weights), in the solved
    problem's scaling (``w̃ = w / unscale``); None where no bound applies (a weight bound,
    or a solver without duals)."""
    if bound <= 0:
        return None
    value = float(np.sum(weights / unscale))
    return max(0.0, 1.0 - bound / value)
