"""FIMs brought from elsewhere: Orchestrator's files as they are, a .npz and a .npy,
through `atomsieve match`; solvers and their options as the anchors use them."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ORCHESTRATOR = ROOT / "tests/data/orchestrator"
BIN = Path(sys.executable).parent
ENSO_PUBLISHED = {"year_1": 0.2090, "year_3": 0.0238, "year_8": 0.0861, "year_10": 0.0696, "year_11": 0.4445,
                  "year_13": 0.1195, "year_14": 0.3407}  # information-matching's weather_oed example


def tutorial(name: str):
    """A script of docs/tutorials/, imported as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "docs/tutorials" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def atomsieve_match(fims: Path, target: Path, out: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "atomsieve"), "match", "--fims", str(fims), "--target", str(target),
                           "--out", str(out), *overrides], capture_output=True, text=True, cwd=out.parent)


@pytest.fixture(scope="module")
def enso(tmp_path_factory):
    """The example's FIMs as docs/tutorials/enso_fims.py writes them: each of 14 years of
    monthly data (σ = 1) a candidate; the target, the 15th year's 12 months to σ = 2."""
    folder = tmp_path_factory.mktemp("enso")
    tutorial("enso_fims").write(folder)
    return folder


def test_the_tutorials_enso_jacobian_is_the_models_derivative():
    """The hand-written Jacobian against central differences of the model itself."""
    enso = tutorial("enso_fims")

    def model(theta, t):
        return (theta[0] + theta[1] * np.cos(2 * np.pi * t / 12) + theta[2] * np.sin(2 * np.pi * t / 12)
                + theta[4] * np.cos(2 * np.pi * t / theta[3]) + theta[5] * np.sin(2 * np.pi * t / theta[3])
                + theta[7] * np.cos(2 * np.pi * t / theta[6]) + theta[8] * np.sin(2 * np.pi * t / theta[6]))

    t, th = np.arange(1.0, 181.0), enso.NIST_ENSO
    steps = 1e-6 * np.maximum(np.abs(th), 1)
    numeric = np.stack([(model(th + np.eye(9)[k] * steps[k], t) - model(th - np.eye(9)[k] * steps[k], t))
                        / (2 * steps[k]) for k in range(9)], 1)
    np.testing.assert_allclose(enso.jacobian(th, t), numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("solver", ["CLARABEL", "SDPA", "SCS"])
def test_orchestrators_test_13_files_as_they_are(tmp_path, solver):
    """FIMMatchingScore test 13: its reference is 316.98 on configuration 5 and nothing
    else; the weight is also the closed form for one candidate, λ_max(F₅⁻¹ T)."""
    proc = atomsieve_match(ORCHESTRATOR / "query_configs_with_fim.extxyz", ORCHESTRATOR / "target_property_fim.json",
                           tmp_path / "out", f"matching.solver={solver}")
    assert proc.returncode == 0, proc.stderr
    weights = json.loads((tmp_path / "out/weights.json").read_text())
    assert list(weights) == ["query_configs_with_fim.extxyz@5"]
    np.testing.assert_allclose(weights["query_configs_with_fim.extxyz@5"]["weight"], 316.98361927983535, rtol=1e-5)
    import ase.io

    frames = ase.io.read(ORCHESTRATOR / "query_configs_with_fim.extxyz", ":")
    target = np.array(json.loads((ORCHESTRATOR / "target_property_fim.json").read_text())["fim_property_score"])
    closed = np.linalg.eigvals(np.linalg.solve(frames[5].info["fim_training_set_score"], target)).real.max()
    np.testing.assert_allclose(weights["query_configs_with_fim.extxyz@5"]["weight"], closed, rtol=1e-6)
    written = ase.io.read(tmp_path / "out/candidates.extxyz", ":")  # Orchestrator's key, on every frame
    assert [a.info["fim_matching_weight_score"] > 0 for a in written] == [i == 5 for i in range(9)]
    assert "names no parameters" in proc.stderr  # its extxyz does not say which; said, not assumed


@pytest.mark.parametrize("solver", ["CLARABEL", "SDPA"])
def test_the_enso_example_gives_the_published_weights(enso, tmp_path, solver):
    proc = atomsieve_match(enso / "years.npz", enso / "year_15.npy", tmp_path / "out", f"matching.solver={solver}")
    assert proc.returncode == 0, proc.stderr
    weights = {k: v["weight"] for k, v in json.loads((tmp_path / "out/weights.json").read_text()).items()}
    assert weights.keys() == ENSO_PUBLISHED.keys()
    assert {k: round(v, 4) for k, v in weights.items()} == ENSO_PUBLISHED
    assert (tmp_path / "out/selected.extxyz").read_text() == ""  # FIMs without structures: said in the log
    assert "without structures" in proc.stderr


def test_an_inaccurate_status_is_taken_only_when_it_verifies(enso):
    """SDPA cut at a few iterations answers optimal_inaccurate: refused while its kept
    weights miss more than max_violation, taken (and recorded) once they verify, which
    is checked here by hand: λ_min(L⁻¹ Σ wᵢFᵢ L⁻ᵀ) ≥ 1 − max_violation, T = L Lᵀ."""
    from pipeline.scores.matching import MatchingError, match

    data = np.load(enso / "years.npz")
    fims, target = data["fims"], np.load(enso / "year_15.npy")
    refused = taken = 0
    for iterations in (14, 30):
        try:
            result = match(fims, target, "none", "SDPA", 1e-4, None, 1e-6, 1e-3, {"maxIteration": iterations})
        except MatchingError as err:
            assert "optimal_inaccurate" in str(err) and "verifies as it is" in str(err)
            refused += 1
            continue
        assert result.status in ("optimal", "optimal_inaccurate") and result.rescaled_by == 1.0
        lower = np.linalg.cholesky(target)
        held = np.linalg.solve(lower, np.linalg.solve(lower, np.tensordot(result.weights, fims, 1)).T)
        assert np.linalg.eigvalsh(held).min() >= 1 - 1e-6
        taken += result.status == "optimal_inaccurate"
    assert refused == 1 and taken == 1


def test_a_small_neural_models_last_layer(tmp_path):
    """docs/tutorials/last_layer_fims.py: the selected energies, to σ/√w each, predict the
    three targets' energies to σ or better, checked by propagating the FIM by hand:
    gₜᵀ (Σ wᵢ Fᵢ)⁺ gₜ ≤ σ² for each target's gradient gₜ. Symmetry-equivalent cells
    (±2 % strain along x and z) are matched once."""
    nn = tutorial("last_layer_fims")
    fims, target = nn.write(tmp_path / "nn")
    proc = atomsieve_match(fims, target, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    weights = {k: v["weight"] for k, v in json.loads((tmp_path / "out/weights.json").read_text()).items()}
    data = np.load(fims)
    held = sum(w * data["fims"][list(data["ids"]).index(k)] for k, w in weights.items())
    layer = nn.frozen_layer()
    for name, atoms in nn.targets().items():
        g = nn.gradient(atoms, layer)
        assert g @ np.linalg.pinv(held, rcond=1e-12) @ g <= nn.SIGMA ** 2 * (1 + 1e-5), name
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["same_fim_as"]["strained_2"] == "strained_1" and not {"strained_2", "strained_3"} & weights.keys()


def test_equal_fims_are_matched_once():
    """Two candidates with one FIM: the weight goes to the first, as if the second were
    not there (the solver alone would split it between them at will)."""
    from conftest import matched

    cands = np.stack([np.diag([1.0, 0.1]), np.diag([0.1, 1.0]), np.diag([1.0, 0.1])])
    alone = matched(cands[:2], np.eye(2))
    both = matched(cands, np.eye(2))
    assert both.same_as == {2: 0} and both.weights[2] == 0
    np.testing.assert_allclose(both.weights[:2], alone.weights, rtol=1e-6)


def test_a_bound_per_candidate(tmp_path):
    """Target I; candidate 0 is I with at most 0.25, candidate 1 is I/2: the cheapest
    match is w = (0.25, 1.5) (the bound binds; 0.75 more from the dearer one), against
    (1, 0) unbounded. The scalar bound and the per-candidate ones combine (the smaller
    of the two for each)."""
    np.savez(tmp_path / "c.npz", ids=np.array(["cheap", "dear"]), fims=np.stack([np.eye(2), np.eye(2) / 2]),
             upper_bounds=np.array([0.25, np.inf]))
    np.save(tmp_path / "t.npy", np.eye(2))
    for out, extra in (("a", ()), ("b", ("matching.weight_upper_bound=2",))):
        proc = atomsieve_match(tmp_path / "c.npz", tmp_path / "t.npy", tmp_path / out, *extra)
        assert proc.returncode == 0, proc.stderr
        weights = json.loads((tmp_path / out / "weights.json").read_text())
        np.testing.assert_allclose([weights["cheap"]["weight"], weights["dear"]["weight"]], [0.25, 1.5], rtol=1e-5)
    proc = atomsieve_match(tmp_path / "c.npz", tmp_path / "t.npy", tmp_path / "d", "matching.weight_upper_bound=1")
    assert proc.returncode == 1 and "status 'infeasible'" in proc.stderr  # the dear one would need 1.5
    np.savez(tmp_path / "u.npz", ids=np.array(["cheap", "dear"]), fims=np.stack([np.eye(2), np.eye(2) / 2]))
    proc = atomsieve_match(tmp_path / "u.npz", tmp_path / "t.npy", tmp_path / "c")
    assert json.loads((tmp_path / "c/weights.json").read_text()).keys() == {"cheap"}


def test_solver_options_reach_the_solver(enso, tmp_path):
    proc = atomsieve_match(enso / "years.npz", enso / "year_15.npy", tmp_path / "out",
                           "matching.solver_options={max_iter: 2}")
    assert proc.returncode == 1 and "status 'user_limit'" in proc.stderr  # Clarabel stopped where it was told
    proc = atomsieve_match(ORCHESTRATOR / "query_configs_with_fim.extxyz", ORCHESTRATOR / "target_property_fim.json",
                           tmp_path / "out", "matching.solver=SCS", "matching.solver_options={eps_abs: 1e-8, eps_rel: 1e-8}")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["params"]["solver_options"] == {"eps_abs": 1e-8, "eps_rel": 1e-8}


@pytest.mark.parametrize("case, expect", [
    ("no fim key", "expected info 'fim_training_set_score'"),
    ("target without its key", "expected key 'fim_property_score'"),
    ("mismatched shapes", "expected candidate FIMs of the target's shape (2, 2)"),
    ("mismatched labels", "over the parameters A:0,B:0,C:0 but the target's"),
    ("shapes within the npz", "expected 'fims' of shape (n, P, P)"),
    ("unknown solver option", "not an option of SDPA"),
    ("misspelt clarabel option", "Clarabel: unrecognized solver setting 'max_iters'"),
    ("not a matching key", "expected overrides matching.KEY=VALUE"),
    ("a solver that cannot", "expected an installed cvxpy solver that takes semidefinite constraints"),
    ("a misspelt npz array", "unknown arrays ['upper_bound']; expected ['ids', 'fims'] and optionally"),
    ("a FIM that is not symmetric", "(candidate 1): expected each of 'fims' to be symmetric (a FIM is)"),
    ("labels neither list nor atomsieve's", "expected 'labels' as a list of parameter names"),
    ("a .npy of candidates", "expected candidate FIMs in an .extxyz (atomsieve's or Orchestrator's) or a .npz"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, case, expect):
    import ase.io

    orch_fims, orch_target = ORCHESTRATOR / "query_configs_with_fim.extxyz", ORCHESTRATOR / "target_property_fim.json"
    fims, target, extra = orch_fims, orch_target, []
    if case == "no fim key":
        frames = ase.io.read(orch_fims, ":")
        del frames[3].info["fim_training_set_score"]
        ase.io.write(tmp_path / "f.extxyz", frames)
        fims = tmp_path / "f.extxyz"
    elif case == "target without its key":
        (tmp_path / "t.json").write_text(json.dumps({"fim": [[1, 0], [0, 1]]}))
        target = tmp_path / "t.json"
    elif case == "mismatched shapes":
        np.savez(tmp_path / "f.npz", ids=np.array(["a"]), fims=np.eye(3)[None])
        fims = tmp_path / "f.npz"
    elif case == "mismatched labels":
        np.savez(tmp_path / "f.npz", ids=np.array(["a"]), fims=np.eye(3)[None], labels=np.array(["A", "B", "C"]))
        (tmp_path / "t.json").write_text(json.dumps({"fim_property_score": np.eye(3).tolist(), "labels": {
            str(i): {"parameter": p, "extent": 0} for i, p in enumerate("ABD")}}))
        fims, target = tmp_path / "f.npz", tmp_path / "t.json"
    elif case == "shapes within the npz":
        np.savez(tmp_path / "f.npz", ids=np.array(["a", "b"]), fims=np.eye(2)[None])
        fims = tmp_path / "f.npz"
    elif case == "unknown solver option":
        extra = ["matching.solver=SDPA", "matching.solver_options={maxIterations: 50}"]
    elif case == "misspelt clarabel option":
        extra = ["matching.solver_options={max_iters: 50}"]
    elif case == "not a matching key":
        extra = ["solver=SDPA"]
    elif case == "a solver that cannot":
        extra = ["matching.solver=HIGHS"]
    elif case == "a misspelt npz array":
        np.savez(tmp_path / "f.npz", ids=np.array(["a"]), fims=np.eye(2)[None], upper_bound=np.array([1.0]))
        fims = tmp_path / "f.npz"
    elif case == "a FIM that is not symmetric":
        np.savez(tmp_path / "f.npz", ids=np.array(["a", "b"]), fims=np.stack([np.eye(2), [[1.0, 0.5], [0.0, 1.0]]]))
        fims = tmp_path / "f.npz"
    elif case == "labels neither list nor atomsieve's":
        (tmp_path / "t.json").write_text(json.dumps({"fim_property_score": np.eye(2).tolist(), "labels": {"0": "A"}}))
        target = tmp_path / "t.json"
    elif case == "a .npy of candidates":
        np.save(tmp_path / "f.npy", np.eye(2)[None])
        fims = tmp_path / "f.npy"
    proc = atomsieve_match(fims, target, tmp_path / "out", *extra)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[-1].startswith("error: ") and expect in lines[-1], lines[-1]
    assert not (tmp_path / "out").exists()


def test_atomsieve_select_on_orchestrators_files_finds_the_best_pair(tmp_path):
    """`atomsieve select` on test 13's files, budget 2, objective target: the pair it
    picks is the best of all 36 by enumeration here, λ_max((F_i + F_j + εI)⁻¹ F_target)
    with the ridge ε·mean tr(F)/P; the frames' own per-atom descriptors give the
    farthest-point baseline."""
    import itertools

    import ase.io

    proc = subprocess.run([str(BIN / "atomsieve"), "select", "--fims", str(ORCHESTRATOR / "query_configs_with_fim.extxyz"),
                           "--target", str(ORCHESTRATOR / "target_property_fim.json"), "--out", str(tmp_path / "out"),
                           "selection.budget=2", "selection.objective=target", "selection.seconds=1"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    fims = np.stack([a.info["fim_training_set_score"] for a in ase.io.read(ORCHESTRATOR / "query_configs_with_fim.extxyz", ":")])
    target = np.array(json.loads((ORCHESTRATOR / "target_property_fim.json").read_text())["fim_property_score"])
    ridge = 1e-8 * np.mean(np.trace(fims, axis1=1, axis2=2)) / 2 * np.eye(2)

    def worst(pair):
        return np.linalg.eigvals(np.linalg.solve(fims[list(pair)].sum(0) + ridge, target)).real.max()

    best = min(itertools.combinations(range(9), 2), key=worst)
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert sorted(summary["selected"]) == [f"query_configs_with_fim.extxyz@{i}" for i in best]
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    assert metrics["objective_annealing"] == pytest.approx(worst(best), rel=1e-6) and "objective_fps" in metrics
    assert len(ase.io.read(tmp_path / "out/selected.extxyz", ":")) == 2


def test_the_match_stage_takes_brought_fims_as_dvc_would_run_it(enso, tmp_path):
    """README's pipeline route: the match stage's command with --fims and --target at a
    .npz and a .npy; its every output is written (the extxyz ones empty: no structures)."""
    from conftest import params_file, stage_cli

    params = params_file(tmp_path / "p.yaml", ["matching.solver=SDPA"])
    proc = stage_cli("match", params, tmp_path / "out", "--fims", enso / "years.npz", "--target", enso / "year_15.npy",
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    weights = {k: round(v["weight"], 4) for k, v in json.loads((tmp_path / "out/weights.json").read_text()).items()}
    assert weights == ENSO_PUBLISHED
    from stages.match import OUTPUTS

    assert all((tmp_path / "out" / name).exists() for name in OUTPUTS)


def test_a_target_json_may_name_its_parameters_in_a_list(tmp_path):
    np.savez(tmp_path / "f.npz", ids=np.array(["a", "b"]), fims=np.stack([np.diag([1.0, 0.1]), np.diag([0.1, 1.0])]),
             labels=np.array(["A", "B"]))
    for names, ok in ((["A", "B"], True), (["B", "A"], False)):
        (tmp_path / "t.json").write_text(json.dumps({"fim_property_score": np.eye(2).tolist(), "labels": names}))
        proc = atomsieve_match(tmp_path / "f.npz", tmp_path / "t.json", tmp_path / f"out{ok}")
        assert (proc.returncode == 0) == ok, proc.stderr
        assert ok or "over the parameters A:0,B:0 but the target's" in proc.stderr


def test_a_tie_among_more_candidates_than_an_optimum_needs_is_said(tmp_path):
    """Rank-one FIMs u uᵀ along 0°, 45°, 90° and 135° against I: every optimum sums to
    tr(I) = 2 (tr(u uᵀ) = 1), reached by the pair (0°, 90°) alone; an interior-point
    solver returns all four at 1/2. More than P(P+1)/2 = 3 selected: said."""
    u = [np.array([np.cos(a), np.sin(a)]) for a in np.radians([0, 45, 90, 135])]
    np.savez(tmp_path / "f.npz", ids=np.array(["0", "45", "90", "135"]), fims=np.stack([np.outer(v, v) for v in u]))
    np.save(tmp_path / "t.npy", np.eye(2))
    proc = atomsieve_match(tmp_path / "f.npz", tmp_path / "t.npy", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["counts"]["sum_weights"] == pytest.approx(2.0, rel=1e-6)
    assert summary["counts"]["selected"] == 4  # Clarabel's interior point: the centre of the optimal face
    assert summary["counts"]["more_than_an_optimum_needs"] and "the optimum is not unique" in proc.stderr


def test_select_refuses_descriptors_it_cannot_use(enso, tmp_path):
    (tmp_path / "d.npz").write_bytes(b"")
    proc = subprocess.run([str(BIN / "atomsieve"), "select", "--fims", str(enso / "years.npz"), "--target",
                           str(enso / "year_15.npy"), "--out", str(tmp_path / "out"), "--descriptors",
                           str(tmp_path / "d.npz"), "selection.budget=3"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1 and "--descriptors" in proc.stderr.strip().splitlines()[-1] and "no frames" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.heavy
def test_a_fim_only_pipeline_runs_with_dvc_repro(tmp_path):
    """docs/tutorials/fim_pipeline/ as a user would use it: copied into a repository, the
    ENSO FIMs put where its dvc.yaml says, `dvc repro` gives the published weights; a
    second repro runs nothing; a changed solver re-runs the stages with matching among
    their params, with the same weights."""
    import os
    import shutil

    repo = tmp_path / "fims"
    shutil.copytree(ROOT / "docs/tutorials/fim_pipeline", repo)
    tutorial("enso_fims").write(repo / "data")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}

    def sh(*args):
        proc = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout + proc.stderr

    sh("git", "init", "-q")
    sh("dvc", "init", "-q")
    sh("git", "add", "-A")
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "fims")
    first = sh("dvc", "repro")
    assert "Running stage 'match'" in first and "Running stage 'select'" in first
    weights = {k: round(v["weight"], 4) for k, v in json.loads((repo / "outputs/match/weights.json").read_text()).items()}
    assert weights == ENSO_PUBLISHED
    assert len(json.loads((repo / "outputs/select/summary.json").read_text())["selected"]) == 3
    assert "Running stage" not in sh("dvc", "repro")
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text().replace("solver: CLARABEL", "solver: SDPA"))
    again = sh("dvc", "repro")
    assert {line.split("'")[1] for line in again.splitlines() if line.startswith("Running stage")} == {"match", "select"}
    summary = json.loads((repo / "outputs/match/summary.json").read_text())
    assert summary["params"]["solver"] == "SDPA"
    assert {k: round(v["weight"], 4) for k, v in json.loads((repo / "outputs/match/weights.json").read_text()).items()} \
        == ENSO_PUBLISHED


def test_match_reads_its_options_from_a_params_file(enso, tmp_path):
    (tmp_path / "p.yaml").write_text("matching:\n  solver: SDPA\nunrelated: {section: 1}\n")
    proc = subprocess.run([str(BIN / "atomsieve"), "match", "--params", str(tmp_path / "p.yaml"), "--fims",
                           str(enso / "years.npz"), "--target", str(enso / "year_15.npy"), "--out", str(tmp_path / "a")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "a/summary.json").read_text())["params"]["solver"] == "SDPA"
    (tmp_path / "q.yaml").write_text("matching:\n  solvr: SDPA\n")
    proc = subprocess.run([str(BIN / "atomsieve"), "match", "--params", str(tmp_path / "q.yaml"), "--fims",
                           str(enso / "years.npz"), "--target", str(enso / "year_15.npy"), "--out", str(tmp_path / "b")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1 and "solvr" in proc.stderr.strip().splitlines()[-1] and not (tmp_path / "b").exists()
