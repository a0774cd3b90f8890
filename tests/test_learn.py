"""The study's target properties (energy_curve, phonon_band) against independent
computations, and the active-learning loop (pipeline/scores/learn.py, stage learn)."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from conftest import ROOT, kim_model_or_skip, params_file, stage_cli
from test_dvc import committed  # noqa: F401  (a fixture)

from pipeline.atoms.hashing import image_hashes
from pipeline.core.errors import ConfigError, InputError
from pipeline.core.store import Store
from pipeline.models import parameters, properties
from pipeline.models.derivatives import Derivative
from pipeline.models.potential import PotentialSpec
from pipeline.models.transforms import Transform, resolve_transform
from pipeline.scores import learn as loop_module
from pipeline.scores.matching import MatchingError
from pipeline.scores.property_fim import property_fim
from pipeline.scores.training_fim import candidates, masks, quantities
from stages.common import matching_options
from stages.models import targets_of
from stages.schema import MatchingConfig

SW = "SW_StillingerWeber_1985_Si__MO_405512056662_005"
SNAP = "SNAP_ZuoChenLi_2019_Si__MO_869330304805_000"
CANDIDATES = ROOT / "data/sw_si_learn/candidates.extxyz"


@pytest.fixture(scope="module")
def sw():
    kim_model_or_skip(SW)
    from pipeline.models.kim import KIMPotential

    return KIMPotential(SW, ("Si",), 0.5)


def target(kind, **extra):
    return targets_of({"t": {"type": kind, "lattice": "diamond", "species": "Si", "a_guess": 5.43,
                             "covariance": {"relative": 0.1}, **extra}})[0]


def test_energy_curve_is_the_energy_of_strained_cells_and_bends_as_the_bulk_modulus_says(sw):
    c = properties.crystal("diamond", "Si", 5.43)
    a0 = properties.zero_pressure_a(sw, c)
    curve = target("energy_curve", delta_range=[-0.5, 0.5], points=5)
    grid = [-0.5, -0.25, 0.25, 0.5]
    assert curve.labels() == [f"t.dE({d:+.3f})" for d in grid]
    per_atom = [float(sw.compute(bulk("Si", "diamond", a=a, cubic=True), "energy")[0]) / 8 for a in a0 + np.r_[0, grid]]
    np.testing.assert_allclose(curve.evaluate(sw), np.array(per_atom[1:]) - per_atom[0], rtol=1e-12, atol=1e-13)
    # small Δa: ΔE per atom = (9/2) B V_atom (Δa/a0)², B = (C11 + 2 C12)/3 from the stress route
    c11, c12, _ = properties.elastic_constants(sw, c)
    b = (c11 + 2 * c12) / 3 * units.GPa
    small = target("energy_curve", delta_range=[-0.002, 0.002], points=2).evaluate(sw)
    np.testing.assert_allclose(small, 4.5 * b * a0**3 / 8 * (0.002 / a0) ** 2, rtol=2e-3)


class Adapter(Calculator):
    """An ASE calculator over a potential, for ASE's Phonons."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, potential):
        super().__init__()
        self.potential = potential

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": float(self.potential.compute(atoms, "energy")[0]),
                        "forces": self.potential.compute(atoms, "forces").reshape(-1, 3)}


@pytest.mark.parametrize("path", ["GX", "GL"])
def test_phonon_band_equals_ases_phonons(sw, tmp_path, monkeypatch, path):
    from ase.phonons import Phonons

    monkeypatch.chdir(tmp_path)
    c = properties.crystal("diamond", "Si", 5.43)
    a0 = properties.zero_pressure_a(sw, c)
    primitive = bulk("Si", "diamond", a=a0)
    ph = Phonons(primitive, Adapter(sw), supercell=(5, 5, 5), delta=0.01, name="ph")
    ph.run()
    ph.read(acoustic=True)
    q = properties.q_path(path, 6, a0)
    energies = ph.band_structure(q @ primitive.cell.array.T / (2 * np.pi))  # eV, q in reduced coordinates
    theirs = energies[:, 0] / (units._hplanck / units._e) / 1e12
    mine = target("phonon_band", path=path, points=6).evaluate(sw)
    np.testing.assert_allclose(mine, theirs, rtol=1e-4)
    assert np.all(np.diff(mine) > 0) and mine[-1] > 3  # a rising acoustic branch, THz


@pytest.mark.parametrize("kind,extra", [("energy_curve", {"delta_range": [-1.0, 1.0], "points": 6}),
                                        ("phonon_band", {"points": 4, "supercell": 3})])
def test_new_target_fims_are_symmetric_psd_and_agree_between_steps(sw, kind, extra):
    spec = parameters.parse({"A": [["default"]], "sigma": [["default"]], "lambda": [["default"]]})
    pot = PotentialSpec("kim", SW, ("Si",), None, "{}", 0.5)
    fims = [property_fim(pot, spec, Transform("log", (), (), ()), Derivative("central", step, 1e-6, "{}", None),
                         [target(kind, **extra)]).fim for step in (1e-4, 1e-3)]
    for f in fims:
        np.testing.assert_allclose(f, f.T, rtol=1e-12)
        assert np.linalg.eigvalsh(f).min() >= -1e-9 * np.abs(f).max()
    np.testing.assert_allclose(fims[0], fims[1], rtol=2e-3, atol=1e-8 * np.abs(fims[0]).max())


def test_the_loop_runs_only_when_asked(tmp_path):
    proc = stage(tmp_path, "learn.enabled=false", f"store.path={tmp_path / 'store'}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "learn/metrics.json").read_text()) == {"enabled": False}
    assert (tmp_path / "learn/learn.png").stat().st_size > 0 and (tmp_path / "learn/selected.extxyz").read_text() == ""


def test_bad_targets_are_refused():
    with pytest.raises(ConfigError, match=r"lattice: expected one of \['bcc', 'diamond', 'fcc'\], got 'hcp'"):
        targets_of({"t": {"type": "energy_curve", "lattice": "hcp", "species": "Si", "covariance": {"relative": 0.1}}})
    with pytest.raises(ConfigError, match="expected delta_range \\[lo, hi\\] with lo < hi"):
        target("energy_curve", delta_range=[0.5, -0.5])
    with pytest.raises(ConfigError, match=r"path: expected one of \['GK', 'GL', 'GX'\], got 'GM'"):
        target("phonon_band", path="GM")
    with pytest.raises(ConfigError, match="lammps computes"):
        target("phonon_band", backend="lammps")
    ge = targets_of({"ge": {"type": "phonon_band", "lattice": "diamond", "species": "Ge", "a_guess": 5.66,
                            "covariance": {"relative": 0.1}}})
    with pytest.raises(ConfigError, match=r"target.properties.ge.species: 'Ge' is not among potential.species \['Si'\]"):
        property_fim(POTENTIAL, SPEC, LOG, CENTRAL, ge)


# --- the loop ------------------------------------------------------------------------------------------------------

POTENTIAL = PotentialSpec("kim", SW, ("Si",), None, "{}", 0.5)
SPEC = parameters.parse({"A": [["default"]], "B": [["default"]], "lambda": [["default"]]})
LOG = Transform("log", (), (), ())
CENTRAL = Derivative("central", 1e-4, 1e-6, "{}", None)
MATCHING = loop_module.Matching(**matching_options(MatchingConfig()))  # the schema's defaults


def small_case():
    kim_model_or_skip(SW)
    frames = ase.io.read(CANDIDATES, ":")
    hashes = image_hashes(frames)
    cands = candidates(frames, hashes, quantities(frames, hashes, "forces", "fim_quantity"),
                       masks(frames, hashes, None, []))
    targets = targets_of({
        "lattice": {"type": "lattice_constant", "lattice": "diamond", "species": "Si", "a_guess": 5.43,
                    "covariance": {"relative": 0.02}},
        "curve": {"type": "energy_curve", "lattice": "diamond", "species": "Si", "a_guess": 5.43,
                  "delta_range": [-0.3, 0.3], "points": 4, "covariance": {"relative": 0.1}}})
    return frames, cands, targets


def run_loop(store, max_iterations=10, **options):
    frames, cands, targets = small_case()
    loop = loop_module.Loop(1, max_iterations, 1e-4, "auto", True, 200)
    return loop_module.learn(frames, cands, POTENTIAL, SPEC, LOG, CENTRAL, targets, CENTRAL,
                             replace(MATCHING, **options), loop, store)


def test_the_loop_converges_and_a_rerun_computes_nothing(tmp_path):
    store = Store(tmp_path / "store")
    its = run_loop(store)
    assert its[-1].converged and len(its) <= 10 and its[0].computed > 0
    for before, after in zip(its, its[1:]):  # accumulated weights never decrease
        assert all(after.accumulated.get(c, 0) >= w for c, w in before.accumulated.items())
    again = run_loop(store)
    assert sum(it.computed for it in again) == 0 and len(again) == len(its)
    np.testing.assert_array_equal(again[-1].fit_theta, its[-1].fit_theta)


def test_raising_max_iterations_continues_from_the_cache(tmp_path):
    store = Store(tmp_path / "store")
    first = run_loop(store, max_iterations=2)
    longer = run_loop(store, max_iterations=10)
    assert [it.computed for it in longer[:2]] == [0, 0] and len(longer) >= len(first)
    np.testing.assert_array_equal(longer[1].fit_theta, first[1].fit_theta)


def test_the_fit_at_a_fixed_selection_equals_an_independent_least_squares():
    from scipy.optimize import least_squares

    from pipeline.models.kim import KIMPotential

    frames, cands, _ = small_case()
    weights = {c.id: w for c, w in zip(cands, np.linspace(0.5, 3.0, len(cands)))}
    loop = loop_module.Loop(1, 1, 1e-4, "auto", True, 200)
    model = KIMPotential(SW, ("Si",), 0.5)
    start = np.array([model.get("A", 0), model.get("B", 0), model.get("lambda", 0)])
    resolved = resolve_transform(LOG, start)
    mine = loop_module.fit(frames, cands, weights, POTENTIAL, SPEC, resolved, [np.log(start)], loop)

    fresh = KIMPotential(SW, ("Si",), 0.5)
    chosen = [c for c in cands if weights.get(c.id, 0) > 0]

    def residuals(x):  # by hand: the KIM model's parameters are exp(θ); energies get 8·shift
        fresh.set([("A", 0, np.exp(x[0])), ("B", 0, np.exp(x[1])), ("lambda", 0, np.exp(x[2]))])
        out = []
        for c in chosen:
            atoms = frames[c.row]
            if c.quantity == "energy":
                r = fresh.compute(atoms, "energy") + x[3] * len(atoms) - atoms.get_potential_energy()
            else:
                r = fresh.compute(atoms, "forces") - atoms.get_forces().ravel()
            out.append(np.sqrt(weights[c.id]) * r)
        return np.concatenate(out)

    theirs = least_squares(residuals, np.r_[np.log(start), 0.0], method="lm", max_nfev=200, x_scale="jac")
    assert mine.method == "lm"
    np.testing.assert_allclose(mine.theta, theirs.x[:3], rtol=1e-7, atol=1e-9)
    assert mine.energy_shift == pytest.approx(theirs.x[3], rel=1e-7)
    assert mine.cost == pytest.approx(theirs.cost, rel=1e-9)


def test_bounds_hold_and_a_missing_label_or_a_stuck_fit_is_an_error():
    frames, cands, _ = small_case()
    model_start = np.log([15.2848479197914, 0.6022245584, 45.5322])
    bounded = parameters.parse({"A": [["default", 14.0, 16.0]], "B": [["default", 0.5, 0.7]],
                                "lambda": [["default", 40.0, 50.0]]})
    weights = {c.id: 1.0 for c in cands if c.quantity == "forces"}
    loop = loop_module.Loop(1, 1, 1e-4, "auto", False, 200)
    resolved = resolve_transform(LOG, np.exp(model_start))
    done = loop_module.fit(frames, cands, weights, POTENTIAL, bounded, resolved, [model_start], loop)
    assert done.method == "trf" and np.all(np.exp(done.theta) >= np.array([14.0, 0.5, 40.0]) - 1e-9)
    assert np.all(np.exp(done.theta) <= np.array([16.0, 0.7, 50.0]) + 1e-9)
    unlabelled = [a.copy() for a in frames]  # a copy loses the single-point labels
    with pytest.raises(InputError, match="no reference 'forces' label to fit to"):
        loop_module.fit(unlabelled, cands, weights, POTENTIAL, SPEC, resolved, [model_start], loop)
    with pytest.raises(loop_module.FitError, match="did not converge within 1 evaluations"):
        loop_module.fit(frames, cands, weights, POTENTIAL, SPEC, resolved, [model_start], replace(loop, max_nfev=1))


def test_an_infeasible_matching_stops_the_loop(tmp_path):
    with pytest.raises(MatchingError):
        run_loop(Store(tmp_path / "store"), max_iterations=2, weight_upper_bound=1e-9)


# --- the stage, as a user runs it ----------------------------------------------------------------------------------

def stage(tmp, *overrides, out="learn"):
    def edit(cfg):
        cfg["potential"]["parameters_optimize"] = {"A": [["default"]], "B": [["default"]], "lambda": [["default"]]}
        cfg["target"]["properties"] = {"lattice": {"type": "lattice_constant", "lattice": "diamond", "species": "Si",
                                                   "a_guess": 5.43, "covariance": {"relative": 0.02}}}

    params = params_file(tmp / "p.yaml", overrides, edit)
    proc = stage_cli("hash", params, tmp / "hash", cwd=ROOT)
    return proc if proc.returncode else stage_cli("learn", params, tmp / out, "--images", tmp / "hash/images.extxyz",
                                                  cwd=ROOT)


LEARN = ["learn.enabled=true", "dataset.paths=[data/sw_si_learn/candidates.extxyz]", "dataset.test_fraction=0.0", "matching.candidates=all",
         "potential.transform.type=log", f"learn.truth_kim_id={SNAP}"]


def test_the_stage_writes_every_output_and_refuses_bad_runs_whole(tmp_path):
    kim_model_or_skip(SW)
    kim_model_or_skip(SNAP)
    proc = stage(tmp_path, *LEARN, f"store.path={tmp_path / 'store'}", "runtime.executor=serial")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "learn"
    metrics = json.loads((out / "metrics.json").read_text())
    report = json.loads((out / "iterations.json").read_text())
    assert metrics["converged"] and metrics["iterations"] == len(report["iterations"])
    snap_a0 = properties.zero_pressure_a(__import__("pipeline.models.kim", fromlist=["x"]).KIMPotential(
        SNAP, ("Si",), 0.5), properties.crystal("diamond", "Si", 5.43))
    assert metrics["lattice.a0.truth"] == pytest.approx(snap_a0, rel=1e-9)
    selected = ase.io.read(out / "selected.extxyz", ":")
    assert len(selected) == metrics["selected"] > 0
    assert all(a.info["fim_matching_weight_score"] > 0 and a.info["learn_iteration"] >= 1 for a in selected)
    assert (out / "learn.png").stat().st_size > 10_000
    assert (out / "targets.csv").read_text().startswith("target,predicted,sigma,reference\nlattice.a0,")
    for bad, message in ((["learn.max_nfev=1"], "did not converge within 1 evaluations"),
                         (["matching.weight_upper_bound=1e-9"], "status 'infeasible'; the candidates cannot match the target"),
                         (["learn.fit_method=newton"], "learn.fit_method: expected one of")):
        proc = stage(tmp_path, *LEARN, f"store.path={tmp_path / 'store'}", "runtime.executor=serial", *bad, out="bad")
        assert proc.returncode == 1 and message in proc.stderr.strip().splitlines()[-1], proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / "bad").exists()


@pytest.mark.heavy
def test_every_preset_runs_with_its_one_command_in_a_fresh_clone(committed):
    import csv
    import io

    from test_dvc import sh

    kim_model_or_skip(SNAP)
    presets = sorted(p.stem for p in (committed / "conf/experiment").glob("*.yaml"))
    assert presets == ["sw_si_elastic", "sw_si_energy_curve_medium", "sw_si_energy_curve_small",
                       "sw_si_energy_curve_wide", "sw_si_phonon"]
    for name in presets:
        sh(committed, "atomsieve", "experiment", name)
    rows = {r["Experiment"]: r for r in csv.DictReader(io.StringIO(sh(committed, "dvc", "exp", "show", "--csv")))}
    for name in presets:
        assert rows[name]["converged"] == "True" and int(rows[name]["iterations"]) <= 10, rows[name]
    assert "expected one of" in subprocess.run([str(Path(sys.executable).parent / "atomsieve"), "experiment", "nope"], cwd=committed,
                                               capture_output=True, text=True).stderr
