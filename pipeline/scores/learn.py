"""The information-matching active-learning loop (Kurniawan et al., arXiv 2411.02740;
the ``information-matching`` package's SW_Si study), over the candidates of a dataset.

Iteration k, at parameters θ_k (the transformed space of the FIMs):

1. the FIM of every candidate and of the targets at θ_k, through the store (keyed by
   image, quantity, parameter values and code), so a re-run recomputes nothing;
2. information matching: weights w_k with Σ w F ⪰ F_target;
3. after ``warmup`` iterations the weights accumulate as the element-wise maximum over
   iterations (the package's ``compare_weights``); the loop has converged when the
   accumulated weights equal the previous ones (same candidates, ``rtol``);
4. fit: weighted least squares of θ to the reference labels of the selected
   candidates, residual (prediction − label)·√w, by ``scipy.optimize.least_squares``
   (LM when there are at least as many residuals as unknowns, else TRF), started from
   θ_0 and from θ_k, keeping the lower cost. With ``energy_shift`` a per-atom energy
   offset s is fitted beside θ (E_ref ≈ E(θ) + N s): a reference model on another
   energy zero (SNAP's −5.4 against SW's −4.3 eV/atom) is matched in its differences.

The targets' predicted values carry the uncertainty propagated from the weighted
training FIM: σ = √diag(J (Σ w F)⁺ Jᵀ).
"""

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from ase import Atoms
from scipy.optimize import least_squares

from pipeline.core.code_identity import code_digest
from pipeline.core.errors import AtomsieveError, ConfigError, InputError
from pipeline.core.executors import worker_resource
from pipeline.core.fanout import get_or_compute
from pipeline.core.store import Store, entry_key, fingerprint
from pipeline.models.derivatives import Derivative, resolve
from pipeline.models.parameters import ParamSpec
from pipeline.models.potential import PotentialSpec, make_potential, with_defaults
from pipeline.models.transforms import Transform, resolve_transform
from pipeline.scores.matching import match
from pipeline.scores.property_fim import PropertyFim, Target, property_fim
from pipeline.scores.training_fim import Candidate, training_fims

FIT_METHODS = ("auto", "lm", "trf")


class FitError(AtomsieveError):
    """The weighted least-squares fit did not converge."""


@dataclass(frozen=True)
class Loop:
    """The loop's options (defaults: stages/schema.py LearnConfig)."""

    warmup: int
    max_iterations: int
    rtol: float  # accumulated weights equal within this: converged
    fit_method: str  # auto | lm | trf
    energy_shift: bool
    max_nfev: int  # evaluations of the residuals per fit start


@dataclass(frozen=True)
class Matching:
    precondition: str
    solver: str
    weight_tol: float
    weight_upper_bound: float | None
    max_violation: float
    dual_tol: float
    solver_options: dict


@dataclass(frozen=True)
class Iteration:
    k: int  # 1-based
    theta: np.ndarray  # (P,) transformed parameters the FIMs were taken at
    parameters: np.ndarray  # (P,) the same in the model's units
    weights: dict[str, float]  # this iteration's matching weights (candidate id -> w > 0)
    accumulated: dict[str, float]  # the weights the fit used
    targets: np.ndarray  # (m,) target values at theta
    sigma: np.ndarray  # (m,) their propagated uncertainty from the accumulated weights
    fit_theta: np.ndarray  # (P,) after the fit
    fit_cost: float  # ½ Σ residual² at the fit
    energy_shift: float  # eV/atom, fitted (0 without energy_shift)
    reduced_chi2: float  # of the fit: ≫ 1 means the model cannot reproduce the data at these weights
    computed: int  # FIMs computed (not from the store) in this iteration
    converged: bool

    def as_dict(self) -> dict:
        return {"iteration": self.k, "theta": self.theta.tolist(), "parameters": self.parameters.tolist(),
                "weights": self.weights, "accumulated": self.accumulated, "targets": self.targets.tolist(),
                "sigma": self.sigma.tolist(), "fit_theta": self.fit_theta.tolist(), "fit_cost": self.fit_cost,
                "energy_shift": self.energy_shift, "reduced_chi2": self.reduced_chi2, "computed": self.computed, "converged": self.converged}


@dataclass(frozen=True)
class Fit:
    theta: np.ndarray  # (P,) transformed parameters at the lowest cost
    cost: float  # ½ Σ (√w (prediction − label))²
    energy_shift: float  # eV/atom
    reduced_chi2: float  # 2 cost / (residuals − unknowns): about 1 when the model fits the data to 1/√w
    residuals: int
    method: str


def with_values(spec: ParamSpec, values: np.ndarray) -> ParamSpec:
    """``spec`` with its tunable entries set to ``values`` (model units), in order."""
    it = iter(np.asarray(values, dtype=float).tolist())
    return ParamSpec(tuple(replace(e, value=next(it)) if not e.fixed else e for e in spec.entries))


def target_fim(potential: PotentialSpec, spec: ParamSpec, transform: Transform, derivative: Derivative,
               targets: Sequence[Target], store: Store) -> tuple[PropertyFim, int]:
    """:func:`property_fim` through the store (one entry per parameter values), and
    whether it was computed now."""
    model = worker_resource(make_potential, potential)
    params = {"potential": potential.as_dict(), "model": model.identity(),
              "assignments": [list(a) for a in resolve(spec, model)], "transform": repr(transform),
              "derivative": repr(derivative), "targets": repr(list(targets))}
    key = entry_key("targets", fingerprint("fim_property", params, code_digest(property_fim.__module__)))
    p = len(spec.tunable)
    fetched = get_or_compute(store, [key], [None], lambda _: _target_arrays(potential, spec, transform, derivative,
                                                                             targets), None, "target FIM",
                             shapes=lambda _: {"fim": (p, p), "jacobian": (None, p), "values": (None,)})
    r = fetched.results[0]
    return PropertyFim(r["fim"], r["jacobian"], r["values"], (), (), spec.labels(), {}), fetched.computed


def _target_arrays(potential, spec, transform, derivative, targets) -> dict[str, np.ndarray]:
    f = property_fim(potential, spec, transform, derivative, targets)
    return {"fim": f.fim, "jacobian": f.jacobian, "values": f.values}


def accumulate(previous: dict[str, float] | None, current: dict[str, float]) -> dict[str, float]:
    """Element-wise maximum of two weight sets (a candidate absent from one counts 0)."""
    if previous is None:
        return dict(current)
    return {c: max(previous.get(c, 0.0), current.get(c, 0.0)) for c in sorted(set(previous) | set(current))}


def same_weights(a: dict[str, float] | None, b: dict[str, float], rtol: float) -> bool:
    return a is not None and sorted(a) == sorted(b) and all(np.isclose(a[c], b[c], rtol=rtol, atol=0) for c in a)


def reference(atoms: Atoms, quantity: str, where: str) -> np.ndarray:
    """The reference label of ``quantity`` on ``atoms``, flattened as the potential returns it."""
    calc = atoms.calc
    results = getattr(calc, "results", {}) if calc is not None else {}
    if quantity not in results:
        raise InputError(f"{where}: no reference {quantity!r} label to fit to (learn needs every selected "
                         f"candidate labelled; it has {sorted(results)})")
    value = np.asarray(results[quantity], dtype=float)
    return value.reshape(-1) if quantity != "stress" or value.size == 6 else _voigt(value)


def _voigt(s: np.ndarray) -> np.ndarray:
    s = s.reshape(3, 3)
    return np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


def fit(frames: Sequence[Atoms], cands: Sequence[Candidate], weights: dict[str, float], potential: PotentialSpec,
        spec: ParamSpec, resolved, starts: Sequence[np.ndarray], loop: Loop) -> "Fit":
    """Weighted least squares of θ (transformed by ``resolved``) to the selected
    candidates' labels, from each of ``starts``; the best θ, its cost and the energy
    shift (eV/atom) as a :class:`Fit`."""
    model = worker_resource(make_potential, potential)
    assignments = resolve(spec, model)
    n = len(spec.tunable)
    chosen = [c for c in cands if weights.get(c.id, 0.0) > 0]
    refs = [reference(frames[c.row], c.quantity, f"image {c.image_hash}") for c in chosen]
    root_w = [np.sqrt(weights[c.id]) * (c.mask if c.mask is not None else 1.0) for c in chosen]
    shifted = loop.energy_shift and any(c.quantity == "energy" for c in chosen)

    def residuals(x):
        theta, shift = x[:n], (x[n] if shifted else 0.0)
        values = resolved.inverse(theta)
        model.set(with_defaults(model, [(a[0], a[1], v) for a, v in zip(assignments, values)] + list(assignments[n:])))
        out = []
        for c, ref, w in zip(chosen, refs, root_w):
            pred = model.compute(frames[c.row], c.quantity)
            if c.quantity == "energy":
                pred = pred + shift * len(frames[c.row])
            out.append(w * (pred - ref))
        return np.concatenate(out)

    size = len(residuals(np.concatenate([starts[0], [0.0] if shifted else []])))
    lower, upper = theta_bounds(spec, resolved)
    bounded = bool(np.isfinite(lower).any() or np.isfinite(upper).any())
    method = _method(loop.fit_method, size, n + shifted, bounded)
    lower, upper = np.append(lower, -np.inf)[:n + shifted], np.append(upper, np.inf)[:n + shifted]
    best = None
    for start in starts:
        x0 = np.clip(np.concatenate([start, [0.0] if shifted else []]), lower, upper)
        try:
            r = least_squares(residuals, x0, method=method, max_nfev=loop.max_nfev, x_scale="jac",
                              bounds=(lower, upper) if bounded else (-np.inf, np.inf))
        except (ValueError, FloatingPointError) as err:
            raise FitError(f"learn: the weighted least-squares fit failed from θ = {start.tolist()}: {err}") from err
        if r.status > 0 and np.isfinite(r.cost) and (best is None or r.cost < best.cost):
            best = r
    if best is None:
        raise FitError(f"learn: the weighted least-squares fit did not converge within {loop.max_nfev} evaluations "
                       f"from any start ({len(starts)} tried, method {method}); raise learn.max_nfev or check the data")
    dof = max(size - n - shifted, 1)
    return Fit(best.x[:n], float(best.cost), float(best.x[n]) if shifted else 0.0, 2 * float(best.cost) / dof,
               size, method)


def _method(name: str, residuals: int, unknowns: int, bounded: bool) -> str:
    if name not in FIT_METHODS:
        raise ConfigError(f"learn.fit_method: expected one of {list(FIT_METHODS)}, got {name!r}")
    if name == "lm" and (residuals < unknowns or bounded):
        raise ConfigError(f"learn.fit_method=lm needs at least as many residuals ({residuals}) as unknowns "
                          f"({unknowns}) and no bounds in potential.parameters_optimize; use trf or auto")
    return ("lm" if residuals >= unknowns and not bounded else "trf") if name == "auto" else name


def theta_bounds(spec: ParamSpec, resolved) -> tuple[np.ndarray, np.ndarray]:
    """The bounds of ``parameters_optimize`` ([value, lower, upper]) in the transformed
    space, (P,) each, ±inf where none; only for transforms that act on each parameter
    alone (identity, log, diagonal affine)."""
    lo = np.array([e.bounds[0] if e.bounds else -np.inf for e in spec.tunable])
    hi = np.array([e.bounds[1] if e.bounds else np.inf for e in spec.tunable])
    if not (np.isfinite(lo).any() or np.isfinite(hi).any()):
        return lo, hi
    if np.count_nonzero(resolved.a - np.diag(np.diag(resolved.a))):
        raise ConfigError("potential.parameters_optimize: bounds need a transform that acts on each parameter alone "
                          "(identity, log or a diagonal affine), not a full matrix")
    if np.any(lo >= hi) or (resolved.sign is not None and np.any((lo <= 0) & np.isfinite(lo))):
        raise ConfigError(f"potential.parameters_optimize: expected lower < upper (and > 0 under a log transform), "
                          f"got {list(zip(lo.tolist(), hi.tolist()))}")
    ends = np.stack([_forward_each(resolved, lo), _forward_each(resolved, hi)])
    return np.nanmin(ends, axis=0), np.nanmax(ends, axis=0)


def _forward_each(resolved, x: np.ndarray) -> np.ndarray:
    """``resolved.forward`` of each entry alone (±inf kept as the limit it tends to)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if resolved.sign is not None:
            return np.where(np.isfinite(x), np.log(np.abs(x)), x)
        scale = np.diag(resolved.a)
        return np.where(np.isfinite(x), scale * (x - resolved.x0) + resolved.b, np.sign(scale) * x)


def propagated_sigma(jacobian: np.ndarray, fims: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """σ (m,) of values with Jacobian (m, P) under the covariance (Σ w F)⁺ of θ."""
    weighted = np.einsum("n,npq->pq", weights, fims)
    cov = np.linalg.pinv((weighted + weighted.T) / 2, hermitian=True)
    return np.sqrt(np.maximum(np.einsum("ip,pq,iq->i", jacobian, cov, jacobian), 0.0))


def check_loop(warmup: int, max_iterations: int, rtol: float) -> None:
    if warmup < 0 or max_iterations < 1 or not rtol > 0:
        raise ConfigError(f"learn: expected warmup >= 0, max_iterations >= 1 and rtol > 0, got {warmup}, "
                          f"{max_iterations}, {rtol}")


def learn(frames: Sequence[Atoms], cands: Sequence[Candidate], potential: PotentialSpec, spec: ParamSpec,
          transform: Transform, fim_derivative: Derivative, targets: Sequence[Target], target_derivative: Derivative,
          matching: Matching, loop: Loop, store: Store, executor: Callable | None = None,
          report: Callable[[Iteration], None] | None = None) -> list[Iteration]:
    """Run the loop from ``spec``'s values; every iteration, in order."""
    check_loop(loop.warmup, loop.max_iterations, loop.rtol)
    model = worker_resource(make_potential, potential)
    spec.check(model.parameter_extents(), potential.kim_id or potential.calculator)
    start = np.array([v for _, _, v in resolve(spec, model)[:len(spec.tunable)]])
    resolved = resolve_transform(transform, start)
    theta0 = resolved.forward(start)
    theta, acc, out = theta0, None, []
    for k in range(1, loop.max_iterations + 1):
        values = resolved.inverse(theta)
        spec_k = with_values(spec, values)
        train = training_fims(frames, cands, potential, spec_k, transform, fim_derivative, store, executor)
        goal, target_computed = target_fim(potential, spec_k, transform, target_derivative, targets, store)
        m = match(train.fims, goal.fim, **asdict(matching))
        current = {cands[i].id: float(m.weights[i]) for i in m.selected}
        previous = acc
        acc = current if k <= loop.warmup or acc is None else accumulate(acc, current)
        converged = k > loop.warmup and same_weights(previous, acc, loop.rtol)
        vector = np.array([acc.get(c.id, 0.0) for c in cands])
        sigma = propagated_sigma(goal.jacobian, train.fims, vector)
        starts = [theta0] if np.array_equal(theta, theta0) else [theta0, theta]
        done = fit(frames, cands, acc, potential, spec_k, resolved, starts, loop)
        it = Iteration(k, theta, values, current, acc, goal.values, sigma, done.theta, done.cost, done.energy_shift,
                       done.reduced_chi2, train.computed + target_computed, converged)
        out.append(it)
        if report is not None:
            report(it)
        if converged:
            break
        theta = done.theta
    return out


def evaluate(potential: PotentialSpec, spec: ParamSpec, targets: Sequence[Target]) -> np.ndarray:
    """Every target's values with the potential at ``spec``'s values."""
    model = worker_resource(make_potential, potential)
    model.set(with_defaults(model, resolve(spec, model)))
    return np.concatenate([t.evaluate(model) for t in targets])


@dataclass(frozen=True)
class Report:
    """The learned potential's target values beside a reference model's ("truth")."""

    labels: tuple[str, ...]
    predicted: np.ndarray  # (m,) at the final fit; cohesive energies with the fitted energy shift added
    sigma: np.ndarray  # (m,) propagated from the last iteration's weighted training FIM
    truth: np.ndarray | None  # (m,) the reference model's values

    def metrics(self) -> dict:
        out = {}
        for i, lab in enumerate(self.labels):
            out[f"{lab}.predicted"], out[f"{lab}.sigma"] = float(self.predicted[i]), float(self.sigma[i])
            if self.truth is not None:
                out[f"{lab}.truth"] = float(self.truth[i])
                out[f"{lab}.error_over_sigma"] = float(abs(self.predicted[i] - self.truth[i]) / self.sigma[i]) \
                    if self.sigma[i] > 0 else None
        if self.truth is not None:
            out["truth_within_2_sigma"] = int(np.sum(np.abs(self.predicted - self.truth) <= 2 * self.sigma))
        return out

    def as_dict(self) -> dict:
        return {"labels": list(self.labels), "predicted": self.predicted.tolist(), "sigma": self.sigma.tolist(),
                "truth": None if self.truth is None else self.truth.tolist()}


def final_report(its: Sequence[Iteration], targets: Sequence[Target], potential: PotentialSpec, spec: ParamSpec,
                 transform: Transform, truth_kim_id: str | None) -> Report:
    """Targets at the last fit (σ from the last iteration), and with ``truth_kim_id`` the
    same targets by that KIM model."""
    model = worker_resource(make_potential, potential)
    start = np.array([v for _, _, v in resolve(spec, model)[:len(spec.tunable)]])
    last = its[-1]
    values = resolve_transform(transform, start).inverse(last.fit_theta)
    predicted = evaluate(potential, with_values(spec, values), targets)
    labels = tuple(lab for t in targets for lab in t.labels())
    kinds = [t.kind for t in targets for _ in t.labels()]
    predicted = predicted + np.where(np.array(kinds) == "cohesive_energy", last.energy_shift, 0.0)
    truth = None
    if truth_kim_id:
        truth_spec = replace(potential, type="kim", kim_id=truth_kim_id, calculator=None)
        truth = np.concatenate([t.evaluate(worker_resource(make_potential, truth_spec)) for t in targets])
    return Report(labels, predicted, last.sigma, truth)
