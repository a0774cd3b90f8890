"""Simulated annealing of any state: what Amp's Annealer offered, working.

``anneal`` minimises ``energy(state)`` by Metropolis moves ``move(state, rng) -> new``
at temperatures falling exponentially from ``t_max`` to ``t_min`` over ``steps``;
``delta(state, new, e_state) -> e_new``, when given, computes a move's energy from the
current one (an objective whose swap changes one term). It never mutates a state, is
deterministic for a seed, reports progress (tqdm with temperature, energy, acceptance
and improvement rates over the last update interval, and ``logging``), and stops on
SIGINT (Ctrl-C) or a time limit with the best state found and a flag saying so.

``auto_schedule`` explores temperatures, as Amp's ``auto`` meant to: from the size of
typical energy changes, up until about 98 % of moves are accepted (``t_max``), then
down until no move improves (``t_min``), and sizes ``steps`` to a time budget from the
measured cost of a step.
"""

import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from pipeline.core.errors import ConfigError

log = logging.getLogger(__name__)
ACCEPT_HOT = 0.98  # auto: acceptance that defines t_max
PROBE = 200  # auto: moves per probed temperature
FACTOR = 1.5  # auto: temperature step between probes


@dataclass(frozen=True)
class Schedule:
    t_max: float
    t_min: float
    steps: int
    updates: int  # progress reports (and trace rows) over the run


@dataclass(frozen=True)
class Annealed:
    state: Any  # the best state found
    energy: float
    interrupted: bool  # stopped early: see reason
    reason: str  # "" | "SIGINT" | "time limit"
    steps: int  # steps taken
    schedule: Schedule
    trace: np.ndarray  # (rows, 5): step, temperature, current energy, best energy, acceptance rate


def check_schedule(s: Schedule) -> None:
    if not (0 < s.t_min < s.t_max) or s.steps < 1 or s.updates < 1:
        raise ConfigError(f"annealing: expected 0 < t_min < t_max, steps >= 1 and updates >= 1, got {s}")


@contextmanager
def _interrupts(enabled: bool) -> Iterator[threading.Event]:
    """An event set by SIGINT while inside (main thread only; elsewhere never set)."""
    event = threading.Event()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = signal.signal(signal.SIGINT, lambda *_: event.set())
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, previous)


def anneal(state, energy: Callable, move: Callable, schedule: Schedule, seed: int,
           delta: Callable | None = None, time_limit: float | None = None, handle_sigint: bool = True,
           desc: str = "annealing") -> Annealed:
    """Minimise ``energy`` from ``state``; see the module docstring."""
    check_schedule(schedule)
    rng = np.random.default_rng(seed)
    e = float(energy(state))
    best, best_e = state, e
    factor = math.log(schedule.t_min / schedule.t_max)
    every = max(schedule.steps // schedule.updates, 1)
    rows, accepted, improved, reason, step = [], 0, 0, "", 0
    started = time.perf_counter()
    bar = tqdm(total=schedule.steps, desc=desc, leave=False, disable=None)
    with _interrupts(handle_sigint) as stop, bar:
        for step in range(1, schedule.steps + 1):
            t = schedule.t_max * math.exp(factor * (step - 1) / schedule.steps)
            new = move(state, rng)
            new_e = float(delta(state, new, e) if delta is not None else energy(new))
            change = new_e - e
            if change <= 0 or rng.random() < math.exp(-change / t):
                accepted += 1
                improved += change < 0
                state, e = new, new_e
                if e < best_e:
                    best, best_e = state, e
            if step % every == 0 or step == schedule.steps:
                n = step - (rows[-1][0] if rows else 0)
                rows.append((step, t, e, best_e, accepted / n))
                bar.set_postfix(T=f"{t:.3g}", E=f"{e:.6g}", best=f"{best_e:.6g}", accept=f"{accepted / n:.0%}",
                                improve=f"{improved / n:.0%}", refresh=False)
                bar.update(n)
                log.debug("%s: step %d T %.4g E %.8g best %.8g accept %.3f improve %.3f", desc, step, t, e, best_e,
                          accepted / n, improved / n)
                accepted = improved = 0
            if stop.is_set():
                reason = "SIGINT"
            elif time_limit is not None and time.perf_counter() - started > time_limit:
                reason = "time limit"
            if reason:
                rows.append((step, t, e, best_e, float("nan")))
                log.warning("%s: stopped by %s after %d of %d steps; keeping the best state found", desc, reason,
                            step, schedule.steps)
                break
    return Annealed(best, best_e, bool(reason), reason, step, schedule, np.array(rows, dtype=float).reshape(-1, 5))


def _probe(state, energy, move, delta, t: float, rng, steps: int):
    """``steps`` Metropolis moves at fixed ``t``: final state and energy, acceptance and
    improvement rates."""
    e, accepted, improved = float(energy(state)), 0, 0
    for _ in range(steps):
        new = move(state, rng)
        new_e = float(delta(state, new, e) if delta is not None else energy(new))
        if new_e - e <= 0 or rng.random() < math.exp(-(new_e - e) / t):
            accepted += 1
            improved += new_e < e
            state, e = new, new_e
    return state, e, accepted / steps, improved / steps


def auto_schedule(state, energy: Callable, move: Callable, seconds: float, seed: int, delta: Callable | None = None,
                  updates: int = 100, max_steps: int | None = None) -> Schedule:
    """A schedule whose anneal takes about ``seconds`` (exploration not counted), or
    ``max_steps`` if fewer (a small problem needs no more)."""
    if not seconds > 0:
        raise ConfigError(f"annealing: expected a time budget > 0 s, got {seconds}")
    rng = np.random.default_rng(seed)
    e = float(energy(state))
    changes = []
    for _ in range(PROBE):  # the scale of an energy change: where the search starts
        new_e = float(delta(state, move(state, rng), e) if delta is not None else energy(move(state, rng)))
        if new_e != e:
            changes.append(abs(new_e - e))
    t = float(np.median(changes)) if changes else 1.0
    started, probes = time.perf_counter(), 0
    state, _, accept, _ = _probe(state, energy, move, delta, t, rng, PROBE)
    probes += 1
    while accept < ACCEPT_HOT and probes < 60:
        t *= FACTOR
        state, _, accept, _ = _probe(state, energy, move, delta, t, rng, PROBE)
        probes += 1
    while accept > ACCEPT_HOT and probes < 120:
        t /= FACTOR
        state, _, accept, _ = _probe(state, energy, move, delta, t, rng, PROBE)
        probes += 1
    t_max, improve = t * FACTOR, 1.0
    while improve > 0 and probes < 240:
        t /= FACTOR
        state, _, _, improve = _probe(state, energy, move, delta, t, rng, PROBE)
        probes += 1
    per_step = (time.perf_counter() - started) / (probes * PROBE)
    t_min = min(t, t_max / 10)
    steps = max(int(seconds / per_step), 1)
    return Schedule(t_max, t_min, min(steps, max_steps) if max_steps else steps, updates)
