"""Budgeted selection: exactly K candidates (or a cost budget), by simulated annealing
(:mod:`pipeline.core.annealing`) of an objective from :data:`OBJECTIVES`, beside the
baselines a user would otherwise reach for.

Objectives, as energies to minimise over a subset S:

- ``information``: −log det(Σ_{i∈S} F_i + εI), D-optimal design on the training FIMs
  (transformed parameters); ε = ``epsilon`` × the mean of tr(F_i)/P, so that a subset
  that leaves a direction unconstrained is finite but poor;
- ``target``: λ_max((Σ_{i∈S} F_i + εI)⁻¹ F_target), how far the subset is from matching the
  target (≤ 1: matched with unit weights);
- ``diversity``: −H(S), the QUESTS entropy of the environments of the chosen images,
  H = ln n − mean_x ln Σ_y exp(−‖x − y‖²/2h²) over the n environments of S.

A move swaps a chosen candidate for another (with a cost budget it may also add or
drop one); candidates to keep are never dropped. Each objective updates its energy
from the current subset's (one term of a sum changes).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import eigh

from pipeline.core.errors import ConfigError, InputError

COSTS = ("count", "atoms", "atoms3")
OBJECTIVES = ("information", "target", "diversity")
SCHEDULES = ("auto", "manual")


@dataclass(frozen=True)
class Problem:
    """Which subsets are allowed: ``budget`` candidates, or total ``costs`` within
    ``cost_budget``; ``keep`` always in."""

    n: int
    budget: int | None
    costs: np.ndarray  # (n,)
    cost_budget: float | None
    keep: tuple[int, ...]

    def feasible(self, state: tuple[int, ...]) -> bool:
        if self.cost_budget is None:
            return len(state) == self.budget
        return float(self.costs[list(state)].sum()) <= self.cost_budget * (1 + 1e-12)


def problem(n: int, budget: int | None, costs: np.ndarray, cost_budget: float | None, keep: Sequence[int]) -> Problem:
    """A checked :class:`Problem`: a count budget in 1..n, or a cost budget some
    candidate fits; never both, never neither; the kept ones within it."""
    keep = tuple(sorted(set(int(k) for k in keep)))
    if (budget is None) == (cost_budget is None):
        raise ConfigError("selection: expected exactly one of budget (a count) and cost_budget, got "
                          f"budget={budget}, cost_budget={cost_budget}")
    if budget is not None and not 1 <= budget <= n:
        raise ConfigError(f"selection.budget: expected a count from 1 to the {n} candidates, got {budget} (the "
                          "default where not set: give selection.budget=K)")
    if budget is not None and len(keep) > budget:
        raise ConfigError(f"selection.budget={budget}: fewer than the {len(keep)} candidates to keep")
    if cost_budget is not None:
        if not cost_budget > 0:
            raise ConfigError(f"selection.cost_budget: expected a cost > 0, got {cost_budget}")
        if costs.min() > cost_budget:
            raise ConfigError(f"selection.cost_budget={cost_budget}: no single candidate fits (the cheapest costs "
                              f"{costs.min():.6g})")
        if costs[list(keep)].sum() > cost_budget:
            raise ConfigError(f"selection.cost_budget={cost_budget}: the candidates to keep alone cost "
                              f"{costs[list(keep)].sum():.6g}")
    return Problem(n, budget, np.asarray(costs, dtype=float), cost_budget, keep)


def check_options(budget: int | None, cost: str, cost_budget: float | None) -> None:
    """The options that can be checked before the candidates are known."""
    if cost not in COSTS:
        raise ConfigError(f"selection.cost: expected one of {list(COSTS)}, got {cost!r}")
    if (budget is None) == (cost_budget is None):
        raise ConfigError("selection: expected exactly one of budget (a count) and cost_budget, got "
                          f"budget={budget}, cost_budget={cost_budget}")
    if budget is not None and budget < 1:
        raise ConfigError(f"selection.budget: expected a count of at least 1, got {budget}")
    if cost_budget is not None and not cost_budget > 0:
        raise ConfigError(f"selection.cost_budget: expected a cost > 0, got {cost_budget}")
    if cost != "count" and cost_budget is None:
        raise ConfigError(f"selection.cost={cost}: needs selection.cost_budget (and budget: null)")


def costs_of(atoms_counts: Sequence[int], cost: str) -> np.ndarray:
    if cost not in COSTS:
        raise ConfigError(f"selection.cost: expected one of {list(COSTS)}, got {cost!r}")
    n = np.asarray(atoms_counts, dtype=float)
    return {"count": np.ones_like(n), "atoms": n, "atoms3": n**3}[cost]


STEPS_PER_NEIGHBOUR = 100  # automatic schedule: at most this many steps per neighbour of a subset


def enough_steps(p: Problem) -> int:
    """Steps that suffice for ``p``: STEPS_PER_NEIGHBOUR times the number of subsets one
    swap away (K (n − K); with a cost budget, n²)."""
    k = p.budget if p.budget is not None else p.n
    return STEPS_PER_NEIGHBOUR * max(k * (p.n - k), p.n) if p.budget is not None else STEPS_PER_NEIGHBOUR * p.n * p.n


def move(p: Problem):
    """The move function of :func:`pipeline.core.annealing.anneal` for ``p``."""
    kept = set(p.keep)

    def swap(state, rng):
        chosen = set(state)
        inside = [i for i in state if i not in kept]
        kinds = ["swap"] if p.cost_budget is None else ["swap", "add", "drop"]
        for _ in range(32):
            kind = kinds[rng.integers(len(kinds))]
            new = set(chosen)
            if kind in ("swap", "drop"):
                if not inside:
                    continue
                new.discard(inside[rng.integers(len(inside))])
            if kind in ("swap", "add"):
                if len(chosen) >= p.n:
                    continue
                j = int(rng.integers(p.n))
                while j in chosen:  # an outside candidate, uniformly
                    j = int(rng.integers(p.n))
                new.add(j)
            new = tuple(sorted(new))
            if new != state and new and p.feasible(new):
                return new
        return state

    return swap


class Information:
    """−log det(Σ F_i + εI) over the subset; with ``target``, λ_max((Σ F_i + εI)⁻¹ F_target)."""

    def __init__(self, fims: np.ndarray, epsilon: float, target: np.ndarray | None = None):
        self.f = np.asarray(fims, dtype=float)
        p = self.f.shape[1]
        self.ridge = epsilon * float(np.mean(np.trace(self.f, axis1=1, axis2=2))) / p * np.eye(p)
        self.target = target
        self._cache: dict[tuple, np.ndarray] = {}

    def _value(self, a: np.ndarray) -> float:
        if self.target is None:
            sign, logdet = np.linalg.slogdet(a)
            return -logdet if sign > 0 else np.inf
        return float(eigh(self.target, a, eigvals_only=True)[-1])

    def _sum(self, state) -> np.ndarray:
        if state not in self._cache:
            if len(self._cache) > 4:
                self._cache.clear()
            self._cache[state] = self.f[list(state)].sum(axis=0) + self.ridge
        return self._cache[state]

    def energy(self, state) -> float:
        return self._value(self._sum(tuple(state)))

    def delta(self, state, new, _e) -> float:
        a = self._sum(state)
        out, into = set(state) - set(new), set(new) - set(state)
        b = a - self.f[list(out)].sum(axis=0) + self.f[list(into)].sum(axis=0)
        self._cache[new] = b
        return self._value(b)

    def score(self, state) -> float:
        """The objective as reported: log det (higher is better) or λ_max (lower is better)."""
        return -self.energy(state) if self.target is None else self.energy(state)


class Diversity:
    """−H of the environments of the chosen images; ``per_image`` (n,) arrays (atoms, d)."""

    def __init__(self, per_image: Sequence[np.ndarray], bandwidth: float, max_pairs: float = 2e8):
        sizes = np.array([len(x) for x in per_image])
        x = np.concatenate(per_image)
        if len(x) * len(per_image) > max_pairs:
            raise ConfigError(f"selection.objective=diversity: {len(x)} environments x {len(per_image)} candidates "
                              f"is more than {max_pairs:.0e} kernel sums; use objective=information or fewer candidates")
        owner = np.repeat(np.arange(len(per_image)), sizes)
        x = x - x.mean(axis=0)  # keeps ‖x‖² + ‖y‖² − 2x·y from cancelling the digits of the norms
        sq, starts = (x**2).sum(axis=1), np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.s = np.empty((len(x), len(per_image)))  # (environment, image): Σ_{y in image} k(x, y)
        for a in range(0, len(x), 1024):
            d2 = np.maximum(sq[a:a + 1024, None] + sq[None] - 2 * x[a:a + 1024] @ x.T, 0.0)
            self.s[a:a + 1024] = np.add.reduceat(np.exp(-d2 / (2 * bandwidth**2)), starts, axis=1)
        self.owner, self.sizes = owner, sizes
        self._p: dict[tuple, np.ndarray] = {}

    def _sums(self, state) -> np.ndarray:
        if state not in self._p:
            if len(self._p) > 4:
                self._p.clear()
            self._p[state] = self.s[:, list(state)].sum(axis=1)
        return self._p[state]

    def _value(self, state, p) -> float:
        mine = np.isin(self.owner, state)
        n = int(self.sizes[list(state)].sum())
        return -(np.log(n) - float(np.mean(np.log(p[mine]))))

    def energy(self, state) -> float:
        return self._value(tuple(state), self._sums(tuple(state)))

    def delta(self, state, new, _e) -> float:
        out, into = list(set(state) - set(new)), list(set(new) - set(state))
        p = self._sums(state) - self.s[:, out].sum(axis=1) + self.s[:, into].sum(axis=1)
        self._p[new] = p
        return self._value(new, p)

    def score(self, state) -> float:
        return -self.energy(state)


def greedy(p: Problem, objective) -> tuple[int, ...]:
    """Forward selection: from the kept candidates, add the one that lowers the energy
    most (among those that fit), until the budget is spent."""
    state = p.keep
    while True:
        if p.cost_budget is None and len(state) == p.budget:
            return state
        options = [tuple(sorted(state + (j,))) for j in range(p.n) if j not in state]
        if p.cost_budget is not None:
            options = [s for s in options if p.feasible(s)]
        if not options:
            return state
        if not state:
            energies = [objective.energy(s) for s in options]
        else:
            energies = [objective.delta(state, s, None) for s in options]
        state = options[int(np.argmin(energies))]


def top_k(p: Problem, order: Sequence[int]) -> tuple[int, ...]:
    """The kept candidates, then others in ``order`` while the budget allows."""
    state = list(p.keep)
    for j in order:
        if p.cost_budget is None and len(state) == p.budget:
            break
        if j not in state and (p.cost_budget is None or p.feasible(tuple(state + [j]))):
            state.append(int(j))
    return tuple(sorted(state))


def fps_order(x: np.ndarray, first: int) -> list[int]:
    """Every candidate in farthest-point order from ``first`` (scikit-matter's FPS)."""
    try:
        from skmatter.sample_selection import FPS
    except ImportError as err:
        from pipeline.core.errors import BackendMissing

        raise BackendMissing("the FPS baseline needs scikit-matter: pip install skmatter") from err
    fps = FPS(n_to_select=len(x), initialize=int(first))
    fps.fit(np.asarray(x, dtype=float))
    return [int(i) for i in fps.selected_idx_]


def check_labels(fim_labels: list, target_labels: list, where: str) -> None:
    if list(fim_labels) != list(target_labels):
        raise InputError(f"{where}: the target FIM's parameters {list(target_labels)} are not the candidates' "
                         f"{list(fim_labels)} (fim_train and fim_property ran with other parameters_optimize)")
