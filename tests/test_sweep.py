"""`atomsieve sweep`, as a user runs it in a committed copy of the repository."""

import csv
import json
import subprocess

import pytest
from test_dvc import committed, sh  # noqa: F401  (a fixture)
from test_trust import BIN, fails, summary

from stages.sweep import expand

pytestmark = pytest.mark.heavy


def exp_show(repo) -> dict[str, dict]:
    """``{experiment: {"stage:key": value}}`` from ``dvc exp show --json``."""
    out = {}
    for commit in json.loads(sh(repo, "dvc", "exp", "show", "--json", "--no-pager")):
        for exp in commit.get("experiments") or []:
            for rev in exp["revs"]:
                metrics = {}
                for path, content in (rev["data"].get("metrics") or {}).items():
                    stage = path.split("/")[1]
                    metrics.update({f"{stage}:{k}": v for k, v in (content.get("data") or {}).items()})
                out[rev["name"]] = {"rev": rev["rev"], **metrics}
    return out


def report_rows(repo, name):
    with open(repo / f"outputs/sweeps/{name}/results.csv") as fh:
        return {r["experiment"]: r for r in csv.DictReader(fh)}


def test_a_tolerance_sweep_from_a_fresh_clone_reports_what_dvc_shows(committed):
    sh(committed, "atomsieve", "sweep", "matching.weight_tol=1e-3,1e-4,1e-5", "--name", "tol", "-j", "2")
    folder = committed / "outputs/sweeps/tol"
    report = (folder / "report.md").read_text()
    assert "Swept: `matching.weight_tol`; 3 experiments" in report and "## What changed" in report
    # only the metrics that changed are drawn: hash:train cannot depend on the tolerance
    pngs = sorted(p.name for p in folder.glob("*.png"))
    assert not (folder / "hash__train__vs__matching_weight_tol.png").exists()
    assert all(f"![{p}]({p})" in report for p in pngs)
    shown, rows = exp_show(committed), report_rows(committed, "tol")
    assert sorted(rows) == ["tol-0", "tol-1", "tol-2"]
    for exp, row in rows.items():
        for column in ("match:sum_weights", "match:selected", "quests:entropy", "hash:train"):
            assert float(row[column]) == pytest.approx(float(shown[exp][column]), rel=1e-12)
    # the selections compared: each experiment's recommendation, read from its commit
    assert "## Which configurations to compute" in report and "Overlap of the recommendations" in report
    for exp in rows:
        committed_rows = sh(committed, "git", "show", f"{shown[exp]['rev']}:outputs/recommend/recommendation.csv")
        for r in csv.DictReader(committed_rows.splitlines()):
            if r["recommendation"] == "compute":
                assert f"{r['source']} {r['quantity']}" in report
    # what a user reads: only what differs, within 120 columns
    table = sh(committed, "atomsieve", "show", "tol")
    lines = [line for line in table.splitlines() if line]
    assert max(map(len, lines)) <= 120 and "weight_tol" in lines[0] and len([x for x in lines if x.startswith("tol-")]) == 3
    assert [float(rows[f"tol-{i}"]["matching.weight_tol"]) for i in range(3)] == [1e-3, 1e-4, 1e-5]
    before = report
    sh(committed, "atomsieve", "sweep", "--report", "tol")  # drawn again from dvc exp show
    assert (folder / "report.md").read_text() == before


def test_a_parallel_seed_sweep_reuses_the_store_and_equals_serial_runs(committed):
    sh(committed, "dvc", "repro")  # the workspace's run: every image's FIMs and descriptors in the store
    sh(committed, "git", "add", "-A")
    sh(committed, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run")
    sh(committed, "atomsieve", "sweep", "dataset.seed=1,2", "--name", "seed", "-j", "2")
    shown = exp_show(committed)
    for exp in ("seed-0", "seed-1"):
        for stage in ("fim_train", "descriptors"):
            assert summary(committed, stage, shown[exp]["rev"])["counts"]["computed"] == 0, (exp, stage)
    for i, seed in ((1, 2),):  # the second seed, run serially in the workspace (one full run: the suite's time)
        sh(committed, "atomsieve", "compose", f"dataset.seed={seed}")
        sh(committed, "dvc", "repro")
        serial = json.loads((committed / "outputs/match/metrics.json").read_text())
        hashed = json.loads((committed / "outputs/hash/metrics.json").read_text())
        assert shown[f"seed-{i}"]["match:sum_weights"] == serial["sum_weights"]
        assert shown[f"seed-{i}"]["hash:test"] == hashed["test"]
        assert shown[f"seed-{i}"]["quests:entropy"] == json.loads(
            (committed / "outputs/quests/metrics.json").read_text())["entropy"]


def test_bad_sweeps_fail_fast_and_queue_nothing(committed):
    for args, message in ((["no_such.key=1,2"], "experiment 0 (['no_such.key=1'])"),
                          (["dataset.seed=1,,2"], "cannot parse"),
                          (["dataset.seed=1,2", "runtime.executor=dask", "runtime.dask.cluster=address",
                            "runtime.dask.address=tcp://127.0.0.1:9"], "runtime.dask.address: nothing answers at "
                                                                       "127.0.0.1:9"),
                          (["dataset.seed=1,2", "runtime.executor=dask", "runtime.dask.cluster=ssh",
                            "runtime.dask.hosts=[127.0.0.1]", "runtime.dask.cluster_kwargs={connect_options:{port:9}}"],
                           "runtime.dask.hosts: nothing answers at 127.0.0.1:9")):
        out = fails(committed, "atomsieve", "sweep", *args, "--name", "bad")
        assert message in out and "Traceback" not in out, out
    assert "bad-" not in sh(committed, "dvc", "exp", "show", "--no-pager") + sh(committed, "dvc", "queue", "status")
    assert subprocess.run([f"{BIN}/atomsieve", "sweep", "--report", "nothing"], cwd=committed,
                          capture_output=True, text=True).returncode == 1


def test_hydra_sweep_syntax_expands_to_the_product():
    combos = expand(["a=1,2", "b=range(0,3)", "c=x"])
    assert combos == [[f"a={a}", f"b={b}", "c=x"] for a in (1, 2) for b in range(3)]
