"""The recommendation: closed forms of its numbers, the bundled example's answer, README's
table, and (heavy) a user's own data, labelled by another KIM model, through `dvc repro`."""

import csv
import json
import re
import sys

import ase.io
import numpy as np
import pytest
from conftest import ROOT, example_front, independent_selection, kim_model_or_skip

from pipeline.scores import recommendation as rec
from stages.recommend_report import readme_table

SW = "SW_StillingerWeber_1985_Si__MO_405512056662_005"
TERSOFF = "Tersoff_LAMMPS_Tersoff_1988T3_Si__MO_186459956893_003"


def test_information_gain_and_shares_in_closed_form():
    target = np.diag([4.0, 1.0])
    fims = np.stack([target, 0.5 * target, np.zeros((2, 2))])
    # whitened, the candidates are I, I/2 and 0: ½ ln det(2I) = ln 2, ½ ln det(1.5 I) = ln 1.5, 0
    blocks = rec.needed_blocks(fims, target)
    np.testing.assert_allclose(rec.information_gains(blocks), [np.log(2), np.log(1.5), 0.0], rtol=1e-12)
    # weights (1, 2, 0): traces 2 and 1 of the whitened FIMs, weighted 2 and 2: halves
    np.testing.assert_allclose(rec.target_shares(blocks, np.array([1.0, 2.0, 0.0])), [0.5, 0.5, 0.0])


def test_needed_by_is_the_value_whose_sigma_grows_most():
    """Two values with gradients e1, e2 (σ = 1). A = diag(1,0)·w1 + diag(0,1)·w2 + diag(1,0)·w3:
    without the first, value 1 keeps only w3 (σ² from 1/2 to 1: ×√2); without the second,
    value 2 is undetermined (inf)."""
    fims = np.stack([np.diag([1.0, 0.0]), np.diag([0.0, 1.0]), np.diag([1.0, 0.0])])
    grads = rec.whitened_gradients(np.eye(2), np.eye(2))
    needs = rec.needed_by(fims, np.array([1.0, 1.0, 1.0]), grads, ["v1", "v2"])
    assert needs[0] == ("v1", pytest.approx(np.sqrt(2))) and needs[1][0] == "v2" and needs[1][1] == np.inf
    # a covariance rescales the gradients: σ = 2 halves them
    np.testing.assert_allclose(rec.whitened_gradients(np.eye(2), 4 * np.eye(2)), 0.5 * np.eye(2))


def candidate(i, **kw):
    base = dict(id=f"h{i}:forces", source=f"d.extxyz@{i}", config_type="rattled", quantity="forces", mask=None,
                atoms=8, weight=0.0, reduced_cost=0.5)
    return rec.Candidate(**{**base, **kw})


def test_rows_are_classified_and_sorted_with_their_reasons():
    target = np.eye(2)
    fims = np.stack([np.diag([1.0, 0.0]), np.diag([0.0, 1.0]), np.eye(2), np.zeros((2, 2)), np.eye(2), np.eye(2)])
    cands = [candidate(0, weight=1.0, reduced_cost=0.0), candidate(1, weight=2.0, reduced_cost=0.0),
             candidate(2, energy_z=9.0), candidate(3, zero_information="its forces vanish by symmetry"),
             candidate(4, dh_max=3.0, dh_mean=1.0), candidate(5, split="test")]
    rows = rec.recommend(cands, fims, target, np.eye(2), np.eye(2), ["a", "b"], 3.5)
    kinds = [(r.candidate.source, r.recommendation) for r in rows]
    assert kinds == [("d.extxyz@1", "compute"), ("d.extxyz@0", "compute"), ("d.extxyz@2", "check label"),
                     ("d.extxyz@4", "consider"), ("d.extxyz@5", "test set"), ("d.extxyz@3", "no information")]
    assert [r.rank for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0].reason.startswith("needed by b at weight 2 (without it, b is left undetermined")
    assert "no information: its forces vanish by symmetry" in rows[-1].reason
    assert rec.table(rows)[0].keys() == set(rec.COLUMNS)


def test_a_candidate_with_the_same_fim_as_a_selected_one_is_said_to_be_not_needed():
    fims = np.stack([np.eye(2), np.eye(2)])
    cands = [candidate(0, weight=1.0, reduced_cost=0.0), candidate(1, reduced_cost=0.0, same_as="h0:forces")]
    rows = rec.recommend(cands, fims, np.eye(2), np.eye(2), np.eye(2), ["a", "b"], 3.5)
    assert [r.recommendation for r in rows] == ["compute", "not needed"]
    assert rows[1].reason.startswith("not needed: its FIM is that of h0:forces (a symmetry-equivalent configuration)")


def compute_rows(path) -> list[dict]:
    return [r for r in csv.DictReader(open(path)) if r["recommendation"] == "compute"]


def test_readme_opens_with_the_committed_answer():
    text = (ROOT / "README.md").read_text()
    shown = re.search(r"<!-- recommendation:.*?-->\n(.*?)\n<!-- /recommendation -->", text, re.S).group(1)
    committed = (ROOT / "outputs/recommend/recommendation.csv").read_text()
    assert shown == readme_table(committed), "README's answer is stale: paste readme_table(recommendation.csv)"


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """Every stage recommend reads, on the bundled example, then recommend."""
    kim_model_or_skip(SW)
    from stages import energy_outlier, ltau, ltau_fit, match, quests, recommend, select

    out = tmp_path_factory.mktemp("example")
    cfg = example_front(out, descriptors=True)
    images, fims = out / "hash/images.extxyz", out / "fim_train/fims.extxyz"
    match.run(cfg, out / "match", fims, out / "fim_property/fim_property.json")
    quests.run(cfg, out / "quests", out / "descriptors/descriptors.npz", images)
    ltau_fit.run(cfg, out / "ltau_fit", images)
    ltau.run(cfg, out / "ltau", out / "ltau_fit", out / "descriptors/descriptors.npz", images)
    energy_outlier.run(cfg, out / "energy_outlier", images)
    select.run(cfg, out / "select", fims, out / "fim_property/fim_property.json", out / "descriptors/descriptors.npz")
    recommend.run(cfg, out / "recommend", images, out / "fim_train/fims.npz", out / "fim_train/zero_information.json",
                  out / "fim_property/fim_property.json", out / "match/candidates.extxyz",
                  out / "select/selected.extxyz", out / "quests/delta_entropy.extxyz", out / "ltau/uncertainty.extxyz",
                  out / "energy_outlier/scores.json")
    return out


def test_the_example_shows_the_answer(example):
    """Several configurations of different types to compute, each with its reason, one row
    per candidate, the selection match's, the same as the committed run (README's)."""
    rows = list(csv.DictReader(open(example / "recommend/recommendation.csv")))
    assert len(rows) == len(np.load(example / "fim_train/fims.npz")["candidate"])
    chosen = compute_rows(example / "recommend/recommendation.csv")
    assert len(chosen) >= 3 and len({r["config_type"] for r in chosen}) >= 3
    assert all(r["reason"].startswith("needed by elastic.C") for r in chosen)
    weights = json.loads((example / "match/weights.json").read_text())
    assert {r["candidate"] for r in chosen} == set(weights)
    committed = compute_rows(ROOT / "outputs/recommend/recommendation.csv")
    assert [(Path_name(r), r["quantity"]) for r in chosen] == [(Path_name(r), r["quantity"]) for r in committed]
    assert all(float(r["ltau_max"]) > 0 for r in rows)  # the example's LTAU runs
    metrics = json.loads((example / "recommend/metrics.json").read_text())
    assert metrics["compute"] == len(chosen)


def Path_name(row) -> str:  # noqa: N802 - the source's file name and frame, wherever the file lives
    return row["source"].rsplit("/", 1)[-1]


def test_the_report_works_offline_and_shows_the_plot(example):
    page = (example / "recommend/report.html").read_text()
    assert "data:image/png;base64," in page and "<table>" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)  # nothing fetched from anywhere
    assert "http://" not in page and "https://" not in page
    md = (example / "recommend/report.md").read_text()
    assert md.startswith("# Which configurations to compute, and why") and "## The answer" in md
    assert (example / "recommend/recommendation.png").read_bytes()[:4] == b"\x89PNG"
    by_type = list(csv.DictReader(open(example / "recommend/by_type.csv")))
    assert {r["config_type"] for r in by_type} == {"bulk", "strained", "rattled", "vacancy", "slab", "md"}


# --- a user's own data, through dvc repro ------------------------------------------------------------------------


def user_dataset(path):
    """Si frames labelled by Tersoff (not the example's model): bulk cells at several
    lattice constants, rattled cells, vacancies, a slab and MD snapshots, all asked for
    their forces (no fim_quantity), as a new user's data come."""
    sys.path.insert(0, str(ROOT / "data/example"))
    import make_example

    frames = make_example.study(TERSOFF, seed=11, counts={"bulk": 5, "strained": 0, "rattled": 10, "vacancy": 2,
                                                           "slab": 3, "md": 8, "copies": 0})
    for atoms in frames:
        atoms.info.pop("fim_quantity")
    path.parent.mkdir(parents=True)
    ase.io.write(path, frames)
    return frames


def shortfall_by_hand(weights, fims, target, rcond=1e-12):
    """What the weights miss of the target's information in its worst needed direction,
    the rest marginalised: λ_min(A − B C⁺ Bᵀ) − 1 of M = Sᵀ (Σ w F) S, written apart from the library."""
    lam, vec = np.linalg.eigh(target)
    need = lam > rcond * lam.max()
    s = np.hstack([vec[:, need] / np.sqrt(lam[need]), vec[:, ~need]])
    m = s.T @ np.einsum("i,ijk->jk", weights, fims) @ s
    r = int(need.sum())
    a, b, c = m[:r, :r], m[:r, r:], m[r:, r:]
    schur = a - b @ np.linalg.pinv(c, rcond=1e-12) @ b.T if c.size else a
    return np.linalg.eigvalsh((schur + schur.T) / 2).min() - 1


def check_user_answer(repo, frames):
    """The acceptance lines of issue 20 on ``repo``'s outputs."""
    npz = np.load(repo / "outputs/fim_train/fims.npz")
    rows = list(csv.DictReader(open(repo / "outputs/recommend/recommendation.csv")))
    assert len(rows) == len(npz["candidate"])  # one row per candidate
    goal = json.loads((repo / "outputs/fim_property/fim_property.json").read_text())
    target = np.array(goal["fim_property_score"])
    matched = {a.info["candidate"]: a for a in ase.io.read(repo / "outputs/match/candidates.extxyz", ":")}
    train = [i for i, c in enumerate(npz["candidate"]) if matched[str(c)].info["split"] == "train"]
    weights = np.array([matched[str(npz["candidate"][i])].info["fim_matching_weight_score"] for i in train])
    kept = weights > 0
    assert kept.any() and weights[kept].min() >= 1e-4 * weights.max()  # no weight below the relative tolerance
    independent = independent_selection(npz["fim"][train], target, 1e-4, 1e-3)
    assert tuple(np.flatnonzero(kept)) == independent
    assert shortfall_by_hand(weights, npz["fim"][train], target) >= -1e-6  # the kept weights cover the target
    chosen = {r["candidate"] for r in rows if r["recommendation"] == "compute"}
    assert chosen == {str(npz["candidate"][train[i]]) for i in np.flatnonzero(kept)}
    bulk = [f"data/mine/si.extxyz@{i}" for i, a in enumerate(frames) if a.info["config_type"] == "bulk"]
    by_source = {r["source"]: r for r in rows}
    assert len(bulk) == 5
    for source in bulk:  # perfect cells asked for forces: named, with the cause
        row = by_source[source]
        assert row["recommendation"] == "no information" and "vanish by symmetry" in row["reason"]
    return rows


@pytest.mark.heavy
def test_a_users_own_data_through_dvc_repro(repo_copy):
    """Issue 20's acceptance, as a user runs it: their Tersoff-labelled frames composed in,
    `dvc repro`, the answer read; then Tersoff as the potential (A, B, λ1, λ2)."""
    from test_dvc import sh

    kim_model_or_skip(TERSOFF)
    repo = repo_copy
    frames = user_dataset(repo / "data/mine/si.extxyz")
    sh(repo, "atomsieve", "compose", "dataset.paths=[data/mine/si.extxyz]", "ltau=disabled")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "my data")
    log = sh(repo, "dvc", "repro")
    assert "carry no information" in log and "vanish by symmetry" in log
    rows = check_user_answer(repo, frames)
    assert any(r["recommendation"] == "compute" for r in rows)
    assert all(r["ltau_max"] == "" for r in rows) and "LTAU was not run" in (repo / "outputs/recommend/report.md").read_text()
    sh(repo, "atomsieve", "compose", f"potential.kim_id={TERSOFF}",
       "potential.parameters_optimize={A:[[default]],B:[[default]],lambda1:[[default]],lambda2:[[default]]}")
    sh(repo, "dvc", "repro")
    check_user_answer(repo, frames)
    summary = json.loads((repo / "outputs/match/summary.json").read_text())["counts"]
    assert summary["target_rank"] == 3 and summary["min_eigenvalue_rel"] >= -1e-6
