"""Every input a result depends on reaches DVC's hashes or the store's keys: code
closures, DVC deps, model identity, and settings left out of keys."""

import re

import numpy as np
import pytest
import yaml
from ase.build import bulk
from conftest import ROOT, kim_model_or_skip

from pipeline.core import code_identity
from pipeline.core.errors import ConfigError

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
SW = "SW_StillingerWeber_1985_Si__MO_405512056662_005"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_dvc_deps_hold_each_stage_modules_import_closure(name):
    stage = STAGES[name]
    module = re.search(r"python -m (stages\.\w+)", stage["cmd"]).group(1)
    assert module == f"stages.{name}", f"stage {name} runs {module}"
    listed = {d for d in stage["deps"] if isinstance(d, str)}
    missing = sorted(set(code_identity.closure_files(module)) - listed)
    assert not missing, f"dvc.yaml: stage {name} runs {missing} but does not list them in deps"


def test_closure_follows_lazy_imports_and_nothing_else():
    fim = code_identity.closure_files("pipeline.scores.fim")
    assert "pipeline/models/kim.py" in fim and "pipeline/models/ase_potential.py" in fim  # imported inside functions
    assert "pipeline/__init__.py" in fim and "pipeline/models/transforms.py" in fim
    assert "pipeline/core/store.py" not in fim and "pipeline/scores/ltau.py" not in fim
    assert code_identity.closure_files("pipeline.atoms.descriptors") == (
        "pipeline/__init__.py", "pipeline/atoms/__init__.py", "pipeline/atoms/arrays.py",
        "pipeline/atoms/descriptors.py", "pipeline/atoms/dscribe_backend.py", "pipeline/core/__init__.py",
        "pipeline/core/errors.py")
    with pytest.raises(ValueError, match="not a module of this project"):
        code_identity.closure("numpy")


def test_params_that_name_files_are_dependencies_of_the_stages_that_read_them():
    for name, keys in {"fim_train": ["fim"], "quests": ["quests"], "ltau_fit": ["ltau.train_images"]}.items():
        stage = STAGES[name]
        assert "${dataset.root}" in stage["deps"] and "dataset.root" in stage["params"], name
        assert all(k in stage["params"] for k in keys)


def test_code_digest_changes_with_the_source_it_covers(tmp_path, monkeypatch):
    import shutil

    for package in ("pipeline", "stages"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(code_identity, "ROOT", tmp_path)
    digest = lambda: code_identity.code_digest.__wrapped__("pipeline.scores.fim")  # noqa: E731  (uncached)
    before, other = digest(), code_identity.code_digest.__wrapped__("pipeline.atoms.descriptors")
    fim = tmp_path / "pipeline/scores/fim.py"
    fim.write_text(fim.read_text().replace('return {"fim": jac.T @ jac', 'return {"fim": 4 * jac.T @ jac'))
    assert digest() != before
    assert code_identity.code_digest.__wrapped__("pipeline.atoms.descriptors") == other  # not in its closure
    kim = tmp_path / "pipeline/models/kim.py"
    kim.write_text(kim.read_text() + "\n# a comment\n")
    changed = digest()
    (tmp_path / "pipeline/scores/ltau.py").write_text("# unrelated\n")
    assert digest() == changed


def test_kim_model_identity_names_model_and_driver_files():
    kim_model_or_skip(SW)
    from pipeline.models.kim import model_identity

    ident = model_identity(SW)
    assert set(ident) == {"kim_api", "kimpy", "model", "driver"}
    assert ident["driver"].startswith("SW__MD_") and len(ident["model"]) == 40


def test_the_skin_cannot_change_results_and_a_negative_one_is_refused():
    kim_model_or_skip(SW)
    from pipeline.models.kim import KIMPotential

    atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.05, seed=3)
    from test_fim import task

    from pipeline.scores.fim import fim_of

    # neighbours come in another order with another skin, so sums differ in the last bit only
    for quantity in ("forces", "energy", "stress"):
        values = [KIMPotential(SW, ("Si",), skin).compute(atoms, quantity) for skin in (0.0, 0.5, 3.0)]
        assert np.abs(values[0]).max() > 1e-3
        for v in values[1:]:
            np.testing.assert_allclose(v, values[0], rtol=1e-13, atol=1e-13)
    fims = []
    for skin in (0.0, 3.0):
        pot = KIMPotential(SW, ("Si",), skin)
        fims.append(fim_of(pot, task(pot, ["A", "B", "lambda"], atoms))["fim"])
    np.testing.assert_allclose(fims[1], fims[0], rtol=1e-9)
    with pytest.raises(ConfigError, match="potential.skin: expected a finite length >= 0"):
        KIMPotential(SW, ("Si",), -0.5)


LAYERS = ("core", "atoms", "models", "scores")  # from the ground up


def test_imports_only_go_down_the_layers_and_modules_stay_short():
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if len(rel.parts) < 3:
            continue
        layer = LAYERS.index(rel.parts[1])
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        for imported in code_identity._imported(name, path):
            parts = imported.split(".")
            assert parts[0] == "pipeline", f"{rel} imports {imported}: the library never imports stages"
            if len(parts) > 2:
                assert LAYERS.index(parts[1]) <= layer, f"{rel} ({rel.parts[1]}) imports {imported}, a layer above"
        assert len(path.read_text().splitlines()) <= 400, f"{rel} is over 400 lines: split it"


def test_every_knob_default_is_defined_once_in_the_schema():
    """No library function gives a default to a parameter named like a config key: the
    schema's default is the only one (a library caller passes every knob)."""
    import dataclasses
    import importlib
    import inspect
    import pkgutil

    import pipeline
    from stages.schema import GROUPS, DaskConfig, DerivativeConfig, TransformConfig

    knobs = {f.name for cls in [*GROUPS.values(), DaskConfig, DerivativeConfig, TransformConfig]
             for f in dataclasses.fields(cls)}
    allowed = {"executor": "an executor maker, not the option's name", "root": "None: no folder restriction",
               "key": "expand_paths: the option its messages name, not descriptors.key"}
    found = []
    for info in pkgutil.walk_packages(pipeline.__path__, "pipeline."):
        module = importlib.import_module(info.name)
        members = inspect.getmembers(module, lambda m: inspect.isfunction(m) or inspect.isclass(m))
        for name, fn in members:
            if fn.__module__ != info.name:
                continue
            try:
                params = inspect.signature(fn).parameters.values()
            except ValueError:  # exception classes: no Python signature
                continue
            for p in params:
                if p.default is not inspect.Parameter.empty and p.name in knobs and p.name not in allowed:
                    found.append(f"{info.name}.{name}({p.name}={p.default!r})")
    assert not found, f"defaults that the schema also defines: {found}"
