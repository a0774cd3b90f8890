import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

ROOT = Path(__file__).resolve().parents[1]


def labelled_si(seed: int, repeat=(1, 1, 1), energy: float | None = None):
    """A rattled diamond Si cell with made-up labels (their values do not matter here)."""
    atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=seed)
    rng = np.random.default_rng(seed)
    atoms.calc = SinglePointCalculator(
        atoms, energy=-4.3 * len(atoms) + (seed if energy is None else energy),
        forces=rng.normal(size=(len(atoms), 3)))
    return atoms


def require(module: str, why: str):
    """Import ``module`` or skip the test, saying what is missing."""
    return pytest.importorskip(module, reason=f"{module} not installed: {why}")


def kim_model_or_skip(name: str) -> None:
    require("kimpy", "the KIM API tests need kimpy (make setup installs it)")
    import kimpy

    try:
        collections = kimpy.collections.create()
        collections.get_item_type(name)
    except RuntimeError:
        pytest.skip(f"KIM model {name} not installed (Debian package openkim-models)")


@pytest.fixture
def repo_copy(tmp_path):
    """A copy of the working tree (committed and uncommitted files) as a fresh clone
    would have it: no venv, store, outputs or DVC cache."""
    dest = tmp_path / "repo"
    names = shutil.ignore_patterns(".venv", ".atomsieve", "outputs", ".pytest_cache", ".hypothesis", "__pycache__")

    def ignore(folder, entries):  # and, as in a fresh clone, no DVC cache (its run-cache would skip runs)
        return names(folder, entries) | ({"cache", "tmp"} if Path(folder) == ROOT / ".dvc" else set())

    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


EXAMPLE = ROOT / "data/example/si_candidates.extxyz"


def example_config(*overrides):
    """params.yaml on the bundled example (its file named absolutely), ``overrides`` after."""
    from stages.common import load_config

    return load_config(ROOT / "params.yaml", [f"dataset.root={ROOT / 'data'}", f"dataset.paths=[{EXAMPLE}]",
                                              *overrides])


def example_front(out: Path, descriptors: bool = False):
    """hash, fim_train and fim_property (and with ``descriptors``, descriptors) of the
    bundled example, run serially by the stages into ``out/<stage>`` with a store in
    ``out/store``; the config they ran with."""
    from stages import descriptors as descriptors_stage
    from stages import fim_property, fim_train
    from stages import hash as hash_stage

    cfg = example_config(f"store.path={out / 'store'}", "runtime.executor=serial")
    hash_stage.run(cfg, out / "hash")
    fim_train.run(cfg, out / "fim_train", out / "hash/images.extxyz")
    fim_property.run(cfg, out / "fim_property")
    if descriptors:
        descriptors_stage.run(cfg, out / "descriptors", out / "hash/images.extxyz")
    return cfg


def params_file(path: Path, overrides=(), edit=None) -> Path:
    """The repository's params.yaml with dotted ``overrides``, checked against the schema,
    then ``edit`` (a function of the plain dict) applied; saved to ``path``."""
    from omegaconf import OmegaConf

    from stages.common import load_config

    cfg = OmegaConf.to_container(OmegaConf.structured(load_config(ROOT / "params.yaml", list(overrides))))
    if edit is not None:
        edit(cfg)
    OmegaConf.save(OmegaConf.create(cfg), path)
    return path


def stage_cli(module: str, params: Path, out: Path, *args, cwd: Path, env=None, wait=True):
    """``python -m stages.MODULE --params P --out O ARGS`` in ``cwd``, as DVC runs a stage,
    its output captured: the finished process, or with ``wait=False`` the running one."""
    argv = [sys.executable, "-m", f"stages.{module}", "--params", str(params), "--out", str(out), *map(str, args)]
    if not wait:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env)


# The library takes every knob explicitly; tests that mean "the default" take it from the schema,
# where it is defined once.
def describe(atoms, k=None, cutoff=None):
    """The QUESTS descriptor at the schema's k and cutoff unless given."""
    from pipeline.atoms.descriptors import quests
    from stages.schema import DescriptorConfig

    d = DescriptorConfig()
    return quests(atoms, d.k if k is None else k, d.cutoff if cutoff is None else cutoff)


def matched(candidates, target, **options):
    """Information matching with the schema's matching options, those given replaced."""
    from dataclasses import asdict

    from pipeline.scores.matching import match
    from stages.schema import MatchingConfig

    opts = {k: v for k, v in asdict(MatchingConfig()).items() if k not in ("candidates", "weight_upper_bound_key")}
    return match(candidates, target, **{**opts, **options})


def independent_selection(candidates, target, weight_tol, dual_tol):
    """The selection of an information-matching solve written here, apart from the
    library's: cvxpy's Clarabel on min Σ w s.t. Σ wᵢ Fᵢ ⪰ T, w ≥ 0, posed in the
    coordinates where the candidates' total information is the identity (C^-½ Fᵢ C^-½,
    C = Σ Fᵢ; the library balances target and candidates instead), keeping a weight
    above ``weight_tol`` × the largest whose w ≥ 0 dual is below ``dual_tol``: the sorted
    indices."""
    import cvxpy as cp

    lam, vec = np.linalg.eigh(np.sum(candidates, axis=0))
    s = vec / np.sqrt(np.maximum(lam, 1e-300))
    own = np.array([s.T @ f @ s for f in candidates])
    goal = s.T @ target @ s
    scale = np.linalg.norm(goal)
    w = cp.Variable(len(candidates))
    positive = w >= 0
    total = sum(w[i] * (own[i] + own[i].T) / 2 for i in range(len(own)))
    problem = cp.Problem(cp.Minimize(cp.sum(w)), [positive, total >> (goal + goal.T) / 2 / scale])
    problem.solve(solver=cp.CLARABEL)
    weights, duals = np.asarray(w.value), np.asarray(positive.dual_value)
    return tuple(int(i) for i in np.flatnonzero((weights > weight_tol * weights.max()) & (duals < dual_tol)))
