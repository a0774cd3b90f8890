"""Stages fim_property and match on the example, and their bad input."""

import json

import ase.io
import numpy as np
import pytest
from conftest import ROOT, example_front, independent_selection, kim_model_or_skip, params_file, stage_cli
from test_fim import SW

from pipeline.core.errors import InputError
from pipeline.scores.matching import MatchingError
from stages import match
from stages.common import load_config


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """hash, fim_train and fim_property of the bundled example, in a temporary folder."""
    kim_model_or_skip(SW)
    tmp = tmp_path_factory.mktemp("example")
    return example_front(tmp), tmp


def test_fim_property_output(example):
    cfg, tmp = example
    data = json.loads((tmp / "fim_property/fim_property.json").read_text())
    assert set(data) == {"fim_property_score", "jacobian", "values", "labels", "covariances"}
    assert data["values"]["elastic.C11"] == pytest.approx(151.42, rel=1e-4)
    fim, jac = np.array(data["fim_property_score"]), np.array(data["jacobian"])
    cov = np.array(data["covariances"]["elastic"])
    np.testing.assert_allclose(np.diag(cov), (0.1 * np.array(list(data["values"].values()))) ** 2)
    np.testing.assert_allclose(fim, jac.T @ np.linalg.inv(cov) @ jac, rtol=1e-10)


def test_match_output_and_solvers_agree(example):
    """Clarabel and SDPA select the same candidates with the same weights, the selection
    of an independent solve (conftest.independent_selection); SCS, where it cannot reach
    an optimal status, is refused naming it, never passed on."""
    cfg, tmp = example
    results, fims, target = {}, tmp / "fim_train/fims.extxyz", tmp / "fim_property/fim_property.json"
    for solver in ("CLARABEL", "SDPA", "SCS"):
        out = tmp / f"match_{solver}"
        solver_cfg = load_config(ROOT / "params.yaml", [f"matching.solver={solver}"])
        try:
            summary = match.run(solver_cfg, out, fims, target)
        except MatchingError as err:
            assert solver == "SCS" and "status 'optimal_inaccurate'" in str(err) and not out.exists()
            continue
        results[solver] = json.loads((out / "weights.json").read_text())
        assert summary["counts"]["status"] == "optimal"
        assert summary["counts"]["min_eigenvalue_rel"] >= -1e-6
    ref = results["CLARABEL"]
    for solver in set(results) - {"CLARABEL"}:
        assert results[solver].keys() == ref.keys()
        for c, w in ref.items():  # SDPA stops at its default gap; its kept weights are rescaled up to 0.3 %
            assert results[solver][c]["weight"] == pytest.approx(w["weight"], rel=1e-2)
    rows = [a for a in ase.io.read(fims, ":") if a.info["split"] == "train"]
    goal = json.loads(target.read_text())
    independent = independent_selection(np.stack([a.info["fim_training_set_score"] for a in rows]),
                                        np.array(goal["fim_property_score"]), 1e-4, 1e-3)
    assert sorted(ref) == sorted(rows[i].info["candidate"] for i in independent)
    selected = ase.io.read(tmp / "match_CLARABEL/selected.extxyz", ":")
    assert {a.info["candidate"]: a.info["fim_matching_weight_score"] for a in selected} == pytest.approx(
        {c: w["weight"] for c, w in ref.items()})
    for c, w in ref.items():
        assert c == f"{w['image_hash']}:{w['quantity']}" and w["mask"] is None
    assert all(a.info["split"] == "train" for a in selected)
    lines = (tmp / "match_CLARABEL/weights.csv").read_text().splitlines()  # plain numbers, for dvc plots
    assert lines[0] == "candidate,weight" and len(lines) == len(ref) + 1
    assert sorted(float(line.rsplit(",", 1)[1]) for line in lines[1:]) == pytest.approx(
        sorted(w["weight"] for w in ref.values()), rel=1e-15)
    metrics = json.loads((tmp / "match_CLARABEL/metrics.json").read_text())
    assert metrics["selected"] == len(ref) >= 3  # the example's answer is several configurations
    assert metrics["sum_weights"] == pytest.approx(sum(w["weight"] for w in ref.values()))


def cli(tmp_path, module, *args, overrides=()):
    out = tmp_path / "out"
    return stage_cli(module, params_file(tmp_path / "p.yaml", overrides), out, *args, cwd=tmp_path), out


def test_fim_property_bad_target(tmp_path):
    kim_model_or_skip(SW)
    proc, out = cli(tmp_path, "fim_property", overrides=["target.properties.elastic.type=bulk_modulus"])
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and "target.properties.elastic.type: expected one of" in last
    assert not out.exists()


def test_match_bad_inputs(example, tmp_path):
    _, tmp = example
    fims, target = str(tmp / "fim_train/fims.extxyz"), tmp / "fim_property/fim_property.json"
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**json.loads(target.read_text()), "fim_property_score": np.eye(3).tolist()}))
    zero = tmp_path / "zero.extxyz"
    frames = ase.io.read(fims, ":")
    for a in frames:
        a.info["fim_training_set_score"] = np.zeros((4, 4))
    ase.io.write(zero, frames)
    for args, message in [
        (["--fims", fims, "--target", str(wrong)], "its labels name 4 parameters (A:0,B:0,sigma:0,lambda:0) but its fim_property_score is 3×3"),
        (["--fims", fims, "--target", str(tmp_path / "absent.json")], "no such file (run the fim_property stage"),
        (["--fims", str(zero), "--target", str(target)], "infeasible: every candidate FIM is zero"),
    ]:
        proc, out = cli(tmp_path, "match", *args)
        last = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode == 1 and last.startswith("error: ") and message in last, proc.stderr
        assert not out.exists()


def test_every_candidate_carries_its_weight(example):
    cfg, tmp = example
    match.run(cfg, tmp / "match_all", tmp / "fim_train/fims.extxyz", tmp / "fim_property/fim_property.json")
    weights = json.loads((tmp / "match_all/weights.json").read_text())
    rows = ase.io.read(tmp / "match_all/candidates.extxyz", ":")
    assert len(rows) == len(ase.io.read(tmp / "fim_train/fims.extxyz", ":"))  # train and test: every candidate
    for atoms in rows:
        expected = weights[atoms.info["candidate"]]["weight"] if atoms.info["candidate"] in weights else 0.0
        assert atoms.info["fim_matching_weight_score"] == pytest.approx(expected, rel=1e-12)


def test_match_refuses_fims_over_other_parameters(example, tmp_path):
    cfg, tmp = example
    target = json.loads((tmp / "fim_property/fim_property.json").read_text())
    target["labels"]["3"] = {"parameter": "gamma", "extent": 0}
    (tmp_path / "t.json").write_text(json.dumps(target))
    with pytest.raises(InputError, match=r"over the parameters A:0,B:0,sigma:0,lambda:0 but the target's \(.*t.json\) "
                                         r"over A:0,B:0,sigma:0,gamma:0"):
        match.run(cfg, tmp_path / "o", tmp / "fim_train/fims.extxyz", tmp_path / "t.json")
    assert not (tmp_path / "o").exists()


def test_a_weight_bound_that_makes_matching_impossible_is_named_by_the_stage(example, tmp_path):
    _, tmp = example
    proc, out = cli(tmp_path, "match", "--fims", str(tmp / "fim_train/fims.extxyz"), "--target",
                    str(tmp / "fim_property/fim_property.json"), overrides=["matching.weight_upper_bound=1e-9"])
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and "matching.weight_upper_bound=1e-09 no candidate may weigh more" in last, proc.stderr
    assert not out.exists()
