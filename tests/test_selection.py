"""Budgeted selection: the annealer (pipeline/core/annealing.py), the objectives and
baselines (pipeline/scores/selection.py) and the stage select, against every subset
enumerated, known answers, SIGINT and bad input."""

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time

import ase.io
import numpy as np
import pytest
from conftest import example_front, kim_model_or_skip, params_file, stage_cli

from pipeline.core import annealing
from pipeline.core.errors import ConfigError
from pipeline.scores import selection as sel


def random_fims(n, p, rank, seed):
    rng = np.random.default_rng(seed)
    j = rng.normal(size=(n, rank, p)) * rng.uniform(0.1, 3.0, size=(n, 1, 1))
    return np.einsum("nrp,nrq->npq", j, j)


def brute_force(objective, n, k):
    return min(itertools.combinations(range(n), k), key=objective.energy)


def anneal_subset(objective, p, seed, steps=6000):
    start = tuple(range(p.budget))
    schedule = annealing.Schedule(5.0, 1e-3, steps, 20)
    return annealing.anneal(start, objective.energy, sel.move(p), schedule, seed, objective.delta,
                            handle_sigint=False)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_annealing_finds_the_exact_optimum_of_the_information_objectives(seed):
    fims = random_fims(14, 4, 1, seed)  # rank-1 FIMs: four are needed to cover 4 parameters
    target = random_fims(1, 4, 4, seed + 100)[0]
    p = sel.problem(14, 4, np.ones(14), None, ())
    for objective in (sel.Information(fims, 1e-8), sel.Information(fims, 1e-8, target)):
        best = brute_force(objective, 14, 4)
        for s in (seed, seed + 10):
            done = anneal_subset(objective, p, s)
            assert done.state == best and done.energy == pytest.approx(objective.energy(best), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_annealing_finds_the_exact_optimum_of_diversity(seed):
    rng = np.random.default_rng(seed)
    per_image = [rng.normal(size=(rng.integers(2, 6), 3)) * 0.05 + rng.normal(size=3) * 0.03 for _ in range(14)]
    objective = sel.Diversity(per_image, 0.05)
    p = sel.problem(14, 4, np.ones(14), None, ())
    best = brute_force(objective, 14, 4)
    for s in (seed, seed + 10):
        assert anneal_subset(objective, p, s).state == best


def test_diversity_is_the_quests_entropy_of_the_chosen_environments():
    rng = np.random.default_rng(4)
    per_image = [rng.normal(size=(3, 5)) * 0.02 for _ in range(6)]
    objective = sel.Diversity(per_image, 0.015)
    x = np.concatenate([per_image[i] for i in (1, 3, 4)])
    d2 = ((x[:, None] - x[None]) ** 2).sum(axis=2)
    h = math.log(len(x)) - np.mean(np.log(np.exp(-d2 / (2 * 0.015**2)).sum(axis=1)))
    assert objective.score((1, 3, 4)) == pytest.approx(h, rel=1e-12)
    assert objective.delta((0, 3, 4), (1, 3, 4), None) == pytest.approx(-h, rel=1e-12)


def test_the_annealer_is_deterministic_never_mutates_and_keeps_what_must_be_kept():
    fims = random_fims(30, 3, 1, 7)
    p = sel.problem(30, 6, np.ones(30), None, (2, 5))
    objective = sel.Information(fims, 1e-8)
    start = (2, 5, 0, 1, 3, 4)
    start = tuple(sorted(start))
    runs = [anneal_subset(objective, p, 3, steps=3000) for _ in range(2)]
    assert runs[0].state == runs[1].state and np.array_equal(runs[0].trace, runs[1].trace)
    assert {2, 5} <= set(runs[0].state) and len(runs[0].state) == 6
    assert runs[0].energy <= objective.energy(tuple(range(6)))


def test_a_cost_budget_is_respected_and_greedy_is_forward_selection():
    fims = random_fims(12, 3, 1, 9)
    atoms = np.array([8, 8, 16, 16, 64, 8, 8, 16, 64, 8, 16, 8])
    costs = sel.costs_of(atoms, "atoms3")
    p = sel.problem(12, None, costs, 3 * 16**3, ())
    objective = sel.Information(fims, 1e-8)
    best = min((s for k in range(1, 13) for s in itertools.combinations(range(12), k) if p.feasible(s)),
               key=objective.energy)
    done = annealing.anneal(sel.greedy(p, objective), objective.energy, sel.move(p),
                            annealing.Schedule(5.0, 1e-3, 8000, 10), 0, objective.delta, handle_sigint=False)
    assert p.feasible(done.state) and done.state == best
    state = ()  # forward selection by hand
    for _ in range(3):
        state = min((tuple(sorted(state + (j,))) for j in range(12) if j not in state), key=objective.energy)
    assert sel.greedy(sel.problem(12, 3, np.ones(12), None, ()), objective) == state


def test_auto_schedule_spans_hot_to_frozen_within_its_budget():
    fims = random_fims(200, 5, 1, 3)
    p = sel.problem(200, 10, np.ones(200), None, ())
    objective = sel.Information(fims, 1e-8)
    start = tuple(range(10))
    began = time.perf_counter()
    schedule = annealing.auto_schedule(start, objective.energy, sel.move(p), 1.0, 0, objective.delta)
    assert time.perf_counter() - began < 20 and schedule.t_max > schedule.t_min > 0 and schedule.steps > 100
    hot = annealing._probe(start, objective.energy, sel.move(p), objective.delta, schedule.t_max,
                           np.random.default_rng(1), 400)
    assert hot[2] > 0.9  # about 98 % of moves accepted at t_max
    began = time.perf_counter()
    done = annealing.anneal(sel.greedy(p, objective), objective.energy, sel.move(p), schedule, 0, objective.delta,
                            handle_sigint=False)
    assert time.perf_counter() - began < 5 and done.energy <= objective.energy(sel.greedy(p, objective))


def test_a_time_limit_stops_with_the_best_state():
    fims = random_fims(50, 3, 1, 1)
    p = sel.problem(50, 5, np.ones(50), None, ())
    objective = sel.Information(fims, 1e-8)
    done = annealing.anneal(tuple(range(5)), objective.energy, sel.move(p), annealing.Schedule(1.0, 1e-3, 10**9, 10),
                            0, objective.delta, time_limit=0.3, handle_sigint=False)
    assert done.interrupted and done.reason == "time limit" and done.steps < 10**9
    assert done.energy == pytest.approx(objective.energy(done.state)) and done.energy <= objective.energy(tuple(range(5)))


def test_bad_budgets_are_refused():
    costs = np.ones(5)
    for args, message in (((5, 6, costs, None, ()), "expected a count from 1 to the 5 candidates, got 6"),
                          ((5, 0, costs, None, ()), "expected a count from 1 to the 5 candidates, got 0"),
                          ((5, None, costs * 600, 500.0, ()), "no single candidate fits"),
                          ((5, 2, costs, None, (0, 1, 2)), "fewer than the 3 candidates to keep"),
                          ((5, 2, costs, 3.0, ()), "exactly one of budget")):
        with pytest.raises(ConfigError, match=message):
            sel.problem(*args)
    with pytest.raises(ConfigError, match="selection.budget: expected a count of at least 1, got -2"):
        sel.check_options(-2, "count", None)


# --- the stage --------------------------------------------------------------------------------------------------

SW = "SW_StillingerWeber_1985_Si__MO_405512056662_005"
INPUTS = {"--fims": "outputs/fim_train/fims.extxyz", "--target": "outputs/fim_property/fim_property.json",
          "--descriptors": "outputs/descriptors/descriptors.npz"}


@pytest.fixture(scope="module")
def example_outputs(tmp_path_factory):
    """The example's fim_train, fim_property and descriptors outputs, made here by the stages."""
    kim_model_or_skip(SW)
    base = tmp_path_factory.mktemp("example")
    example_front(base / "outputs", descriptors=True)
    return base


def select_stage(tmp, *overrides, out="select", wait=True, base=None):
    params = params_file(tmp / "p.yaml", ["matching.candidates=all", "selection.enabled=true", *overrides])
    inputs = [arg for key, value in INPUTS.items() for arg in (key, base / value)]
    return stage_cli("select", params, tmp / out, *inputs, cwd=tmp, wait=wait)


def test_the_stage_beats_or_equals_every_baseline(example_outputs, tmp_path):
    proc = select_stage(tmp_path, "selection.budget=4", "selection.seconds=2", base=example_outputs)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "select/metrics.json").read_text())
    for baseline in ("greedy", "fps", "matching_top_k"):
        assert m["objective_annealing"] >= m[f"objective_{baseline}"] - 1e-9
    import ase.io

    chosen = ase.io.read(tmp_path / "select/selected.extxyz", ":")
    assert sorted(a.info["selection_rank"] for a in chosen) == [1, 2, 3, 4]
    assert (tmp_path / "select/objective.csv").read_text().startswith("step,temperature,current,best,acceptance\n")


def test_sigint_while_annealing_writes_the_best_so_far(example_outputs, tmp_path):
    proc = select_stage(tmp_path, "selection.budget=4", "selection.schedule=manual", "selection.steps=3000000",
                        "runtime.log_level=DEBUG", wait=False, base=example_outputs)
    deadline = time.time() + 60
    seen = ""
    while time.time() < deadline and "step" not in seen:  # the annealer's first progress line
        line = proc.stderr.readline()
        seen += line
        if "selecting (information): step" in line:
            break
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    # the best found so far is written, to look at, but the stage fails: DVC must not record a partial answer
    assert proc.returncode == 1 and "Traceback" not in err, err
    assert "stopped by SIGINT" in err and "run `dvc repro select` again" in err.strip().splitlines()[-1]
    m = json.loads((tmp_path / "select/metrics.json").read_text())
    summary = json.loads((tmp_path / "select/summary.json").read_text())
    assert m["interrupted"] is True and m["stopped_by"] == "SIGINT" and m["selected"] == 4
    assert summary["counts"]["steps"] < 3000000
    assert all((tmp_path / "select" / name).exists() for name in ("selected.extxyz", "objective.png", "summary.json"))


def test_the_stage_runs_only_when_asked(example_outputs, tmp_path):
    proc = select_stage(tmp_path, "selection.enabled=false", base=example_outputs)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "select/metrics.json").read_text()) == {"enabled": False}


def test_bad_selection_input_is_refused_whole(example_outputs, tmp_path):
    n = len(ase.io.read(example_outputs / INPUTS["--fims"], ":"))  # matching.candidates=all: every row
    for overrides, message in ((["selection.budget=1000"], f"expected a count from 1 to the {n} candidates, got 1000"),
                               (["selection.budget=0"], "selection.budget: expected a count of at least 1, got 0"),
                               (["selection.budget=null", "selection.cost=atoms3", "selection.cost_budget=100"],
                                "no single candidate fits"),
                               (["selection.objective=dopt"], "selection.objective: expected one of")):
        proc = select_stage(tmp_path, *overrides, out="bad", base=example_outputs)
        assert proc.returncode == 1 and message in proc.stderr.strip().splitlines()[-1], proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / "bad").exists()
    target = json.loads((example_outputs / INPUTS["--target"]).read_text())
    target["labels"] = {"0": {"parameter": "sigma", "extent": 0}, "1": {"parameter": "B", "extent": 0}}
    (tmp_path / "target.json").write_text(json.dumps(target))
    params = tmp_path / "p.yaml"
    proc = subprocess.run([sys.executable, "-m", "stages.select", "--params", str(params), "--out", str(tmp_path / "bad"),
                           "--fims", str(example_outputs / INPUTS["--fims"]), "--target", str(tmp_path / "target.json"),
                           "--descriptors", str(example_outputs / INPUTS["--descriptors"])], capture_output=True,
                          text=True)
    assert proc.returncode == 1 and "its labels name 2 parameters (sigma:0,B:0) but its fim_property_score is 4×4" in proc.stderr, proc.stderr
    assert not (tmp_path / "bad").exists()
