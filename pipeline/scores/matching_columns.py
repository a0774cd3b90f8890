"""Information matching of many candidates by column generation.

The matching problem, min Σ c_i w_i subject to Σ w_i G_i ⪰ T and w ≥ 0 (c_i the
weight scales, G_i the preconditioned candidate FIMs, as information-matching's
ConvexOpt states it), has the dual max tr(Z T) subject to tr(Z G_i) ≤ c_i and Z ⪰ 0.
So a solution over a subset of the candidates is the solution over all of them when no
candidate left out has a negative reduced cost c_i − tr(Z G_i) at the subset's dual Z.
:func:`solve` starts from the candidates most aligned with the target, solves
ConvexOpt on them, prices every candidate with the dual of its matrix constraint, adds
the most negative (up to ``ADD`` per round) and repeats: a 100,000-candidate problem
solves as a few of a few thousand.
"""

import numpy as np

START = 2000  # candidates in the first subset
ADD = 2000  # at most this many candidates enter per round
ROUNDS = 30
PRICE_TOL = 1e-7  # a reduced cost below −PRICE_TOL × c_i enters


def _subset_problem(opt_class, target_in, configs: dict, subset, weight_upper_bound):
    if weight_upper_bound is not None and np.ndim(weight_upper_bound):  # one per candidate: those of the subset
        weight_upper_bound = np.asarray(weight_upper_bound)[list(subset)]
    return opt_class(target_in, {i: configs[i] for i in subset}, weight_upper_bound=weight_upper_bound)


def _scaled(configs: dict, order: list) -> tuple[np.ndarray, np.ndarray]:
    """G_i flattened (n, P²) and c_i (n,) as ConvexOpt scales them."""
    g, c = [], []
    for i in order:
        value = configs[i]
        if isinstance(value, dict):
            g.append(value.get("fim_scale", 1.0) * np.asarray(value["fim"], dtype=float).ravel())
            c.append(value.get("weight_scale", 1.0))
        else:
            g.append(np.asarray(value, dtype=float).ravel())
            c.append(1.0)
    return np.stack(g), np.array(c)


def solve(opt_class, target_in, configs: dict, weight_upper_bound, solve_kwargs: dict):
    """``(problem, weights, duals)``: the last subset's solved ConvexOpt, every
    candidate's scaled weight (configs' order; 0 outside the subset) and reduced cost
    relative to its cost (the solver's dual of w ≥ 0 inside the subset, priced by its
    dual Z outside), or ``(problem, None, None)`` when the solver gave no weights."""
    order = list(configs)
    g, c = _scaled(configs, order)
    t = np.asarray(target_in["fim"] if isinstance(target_in, dict) else target_in, dtype=float)
    t_scale = target_in.get("fim_scale", 1.0) if isinstance(target_in, dict) else 1.0
    score = g @ (t.ravel() * t_scale) / np.maximum(np.linalg.norm(g, axis=1), 1e-300) / c
    subset = list(np.argsort(-score, kind="stable")[:START])
    for _ in range(ROUNDS):
        opt = _subset_problem(opt_class, target_in, configs, [order[i] for i in subset], weight_upper_bound)
        try:
            opt.solve(**solve_kwargs)
        except AttributeError:  # ConvexOpt reads the weights a failed solve left as None
            pass
        status = opt.problem.status
        if status in ("infeasible", "infeasible_inaccurate") and len(subset) < len(order):
            rest = [i for i in np.argsort(-score, kind="stable") if i not in set(subset)]
            subset += rest[:max(len(subset), ADD)]  # the subset cannot cover the target yet: widen it
            continue
        if opt.result is None or opt.result["wm"] is None:
            return opt, None, None
        z = np.asarray(opt.constraints[1].dual_value, dtype=float)
        reduced = c - g @ z.ravel()
        inside = np.zeros(len(order), dtype=bool)
        inside[subset] = True
        entering = np.flatnonzero(~inside & (reduced < -PRICE_TOL * c))
        if not len(entering):
            weights = np.zeros(len(order))
            weights[subset] = np.asarray(opt.result["wm"], dtype=float).ravel()
            duals = reduced / c
            duals[subset] = np.asarray(opt.result["dual_wm"], dtype=float).ravel()
            return opt, weights, duals
        subset += list(entering[np.argsort(reduced[entering], kind="stable")][:ADD])
    return opt, None, None
