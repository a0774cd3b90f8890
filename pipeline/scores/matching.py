"""Information matching: which candidate configurations, with what weight.

Minimise Σ wᵢ subject to Σ wᵢ Fᵢ − F_target ⪰ 0 and w ≥ 0 (optionally w ≤ an upper
bound), with information-matching's ConvexOpt through cvxpy. The FIMs are
preconditioned first (``max_frobenius`` scales all by one factor and leaves the answer
unchanged; ``frobenius`` scales each candidate by its own norm and changes it), and
the weights are returned unscaled. Weights below ``weight_tol`` times the largest are
dropped, and the result is verified: the smallest eigenvalue of Σ wᵢ Fᵢ − F_target
over the kept weights, relative to ‖F_target‖ (Frobenius), is reported, and a
violation of the constraint beyond ``max_violation`` is an error, as is any solver
status but ``optimal``: an inaccurate answer is never passed on as a selection.
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
PRECONDITIONS = ("max_frobenius", "frobenius", "none")
COLUMNS_FROM = 20_000  # more (preconditioned) candidates than this: column generation (matching_columns.py)


class MatchingError(AtomsieveError):
    """The convex problem has no solution, or the solver failed."""


@dataclass(frozen=True)
class Match:
    weights: np.ndarray  # (n,) every candidate's weight, unscaled, below-tolerance ones zeroed
    selected: tuple[int, ...]  # indices of nonzero weights, sorted
    status: str  # the solver's status: always optimal (anything else is an error)
    solver: str
    min_eigenvalue: float  # λ_min(Σ w F − F_target) / ‖F_target‖ over the kept weights
    seconds: float


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


def check_options(weight_tol: float, max_violation: float, weight_upper_bound: float | None) -> None:
    if weight_upper_bound is not None and not weight_upper_bound > 0:
        raise ConfigError(f"matching.weight_upper_bound: expected a weight > 0 or null, got {weight_upper_bound}")
    if not 0 <= weight_tol < 1:
        raise ConfigError(f"matching.weight_tol: expected a value in [0, 1), got {weight_tol}")
    if not 0 <= max_violation < 1:
        raise ConfigError(f"matching.max_violation: expected a value in [0, 1), got {max_violation}")


def _hint(solver: str) -> str:
    return (f"try another solver ({', '.join(x for x in SOLVERS if x != solver)}), "
            "matching.precondition=max_frobenius, potential.transform.type=log to put parameters of "
            "different sizes on one scale, or a matching.weight_upper_bound")


def _scaled_confs(configs: dict) -> np.ndarray:
    """Each candidate's fim_scale, as ConvexOpt reads it (1 for a bare matrix)."""
    return np.array([v.get("fim_scale", 1.0) if isinstance(v, dict) else 1.0 for v in configs.values()])


def match(candidates: np.ndarray, target: np.ndarray, precondition: str, solver: str, weight_tol: float,
          weight_upper_bound: float | None, max_violation: float) -> Match:
    """Information matching of ``target`` (P, P) by ``candidates`` (n, P, P).

    Raises :class:`MatchingError` unless the solver reports ``optimal`` and the kept
    weights satisfy Σ wᵢ Fᵢ − F_target ⪰ −``max_violation`` ‖F_target‖."""
    check_choice("matching.precondition", precondition, PRECONDITIONS)
    check_choice("matching.solver", solver, SOLVERS)
    check_fims(candidates, target)
    check_options(weight_tol, max_violation, weight_upper_bound)
    import_information_matching()
    import cvxpy as cp
    from information_matching.convex_optimization import ConvexOpt
    from information_matching.precondition import preconditioner

    norms = np.linalg.norm(candidates, axis=(1, 2))
    if not np.linalg.norm(target):
        raise InputError("target FIM: every entry is zero; there is nothing to match")
    if not norms.any():
        raise MatchingError("infeasible: every candidate FIM is zero, so no weights can match the target")
    if precondition == "frobenius" and not norms.all():
        raise MatchingError(f"matching.precondition=frobenius: candidate FIMs {np.flatnonzero(norms == 0).tolist()} "
                            "are zero and cannot be scaled by their norm; use max_frobenius")
    configs = {i: f for i, f in enumerate(candidates)}
    target_in = target
    if precondition != "none":
        target_in, configs = preconditioner(target, precondition), preconditioner(configs, precondition)
    start = time.perf_counter()
    kwargs = {"solver": getattr(cp, solver), **SOLVER_OPTIONS[solver]}
    try:
        columns = len(configs) > COLUMNS_FROM and precondition != "none"  # unscaled problems are solved whole
        if columns:  # many candidates: the same optimum over a few thousand
            from pipeline.scores.matching_columns import solve as by_columns

            opt, scaled = by_columns(ConvexOpt, target_in, configs, weight_upper_bound, kwargs)
            scale_conf = _scaled_confs(configs)
        else:
            opt, scaled = ConvexOpt(target_in, configs, weight_upper_bound=weight_upper_bound), None
            opt.solve(**kwargs)
            scale_conf = opt.scale_conf
    except (cp.error.SolverError, ValueError, ZeroDivisionError) as err:
        raise MatchingError(
            f"matching.solver={solver}: {type(err).__name__}: {err} Badly scaled FIMs are the usual cause: "
            f"{_hint(solver)}") from err
    except AttributeError:  # ConvexOpt.solve reads the weights a failed solve left as None
        scaled = None
    seconds = time.perf_counter() - start
    status = opt.problem.status
    if scaled is None and opt.result is not None and opt.result["wm"] is not None and not columns:
        scaled = np.asarray(opt.result["wm"], dtype=float).ravel()
    if status in ("infeasible", "infeasible_inaccurate") or scaled is None:
        raise MatchingError(
            f"matching.solver={solver}: status {status!r}; the candidates cannot match the target "
            "(do their FIMs together cover every direction the target needs?)")
    weights = np.clip(scaled * scale_conf / opt.scale_qoi, 0.0, None)
    weights[weights < weight_tol * weights.max()] = 0.0
    selected = tuple(int(i) for i in np.flatnonzero(weights))
    if not selected:
        raise MatchingError(f"matching.solver={solver}: no weight above zero; the target FIM may be zero")
    gap = np.einsum("i,ijk->jk", weights, candidates) - target
    min_eig = float(np.linalg.eigvalsh((gap + gap.T) / 2).min() / np.linalg.norm(target))
    if status != "optimal" or -min_eig > max_violation:
        raise MatchingError(
            f"matching.solver={solver}: status {status!r}, constraint violated by {max(-min_eig, 0.0):.3g} "
            f"relative to the target (smallest eigenvalue of sum w F - F_target over |F_target|: {min_eig:.3g}; "
            f"matching.max_violation={max_violation:g}); this is not a trustworthy selection: {_hint(solver)}")
    return Match(weights, selected, status, solver, min_eig, seconds)
