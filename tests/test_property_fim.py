"""Target-property FIMs: converged, re-relaxed at every perturbation, Orchestrator parity."""

import numpy as np
import pytest
from ase.build import bulk
from conftest import kim_model_or_skip
from scipy.optimize import brentq
from test_fim import SW, SW_SPEC, Transform

from pipeline.core.errors import ConfigError
from pipeline.models.parameters import parse
from pipeline.scores.property_fim import property_fim
from stages.models import derivative_of, targets_of
from stages.schema import DerivativeConfig

ELASTIC = {"elastic": {"type": "elastic_constants", "lattice": "diamond", "species": "Si", "a_guess": 5.43,
                       "covariance": {"diagonal": [1.0, 1.0, 1.0]}}}
AB = parse({"A": [["default"]], "B": [["default"]]})


def D(**kw):  # noqa: N802 - the schema's defaults
    return derivative_of(DerivativeConfig(**kw))


@pytest.fixture(autouse=True)
def sw():
    kim_model_or_skip(SW)


def fim(targets=ELASTIC, spec=AB, **derivative):
    return property_fim(SW_SPEC, spec, Transform(), D(**derivative), targets_of(targets))


def test_elastic_fim_is_converged_in_its_step():
    coarse, fine = fim(rel_step=1e-4).fim, fim(rel_step=1e-5).fim
    assert np.abs(coarse - fine).max() / np.abs(fine).max() < 1e-4
    assert np.allclose(coarse, coarse.T) and np.linalg.eigvalsh(coarse).min() > 0


def c11_at(b, a=None):
    """C11 (GPa) of SW Si with parameter B = b, at the zero-pressure lattice constant
    unless ``a`` is given: ASE's KIM calculator, Brent's method, central differences."""
    from ase.calculators.kim import KIM
    from ase.units import GPa

    calc = KIM(SW)
    calc.set_parameters(B=[[0], [b]])

    def stress(a, e=0.0):
        atoms = bulk("Si", "diamond", a=a, cubic=True)
        atoms.set_cell(atoms.cell.array @ np.diag([1 + e, 1, 1]), scale_atoms=True)
        atoms.calc = calc
        return atoms.get_stress()

    if a is None:
        a = brentq(lambda x: -stress(x)[:3].mean(), 5.2, 5.7, xtol=1e-13)
    return (stress(a, 1e-4)[0] - stress(a, -1e-4)[0]) / 2e-4 / GPa, a


def test_lattice_constant_is_re_relaxed_at_every_perturbation():
    b0, h = 0.6022245584, 0.6022245584 * 1e-4
    (plus, a_plus), (minus, a_minus) = c11_at(b0 + h), c11_at(b0 - h)
    assert abs(a_plus - a_minus) / (2 * h) > 0.1  # da0/dB is far from zero
    relaxed = (plus - minus) / (2 * h)
    a0 = c11_at(b0)[1]
    frozen = (c11_at(b0 + h, a0)[0] - c11_at(b0 - h, a0)[0]) / (2 * h)
    ours = fim().jacobian[0, 1]  # dC11/dB
    assert ours == pytest.approx(relaxed, rel=1e-5)
    assert abs(frozen - relaxed) > 0.01 * abs(relaxed)  # a frozen lattice would be wrong
    lattice = fim({"a": {"type": "lattice_constant", "lattice": "diamond", "species": "Si",
                         "covariance": {"diagonal": [1.0]}}})
    assert lattice.jacobian[0, 1] == pytest.approx((a_plus - a_minus) / (2 * h), rel=1e-5)


def test_fim_is_the_sum_over_properties_of_jt_cinv_j():
    both = {**ELASTIC, "e": {"type": "cohesive_energy", "lattice": "diamond", "species": "Si",
                             "covariance": {"relative": 0.01}}}
    out = fim(both)
    j = out.jacobian
    c_e = (0.01 * out.values[3]) ** 2
    expected = j[:3].T @ j[:3] + np.outer(j[3], j[3]) / c_e
    np.testing.assert_allclose(out.fim, expected, rtol=1e-10)
    assert out.value_labels == ("elastic.C11", "elastic.C12", "elastic.C44", "e.E_coh")


def test_orchestrator_forward_differences_with_absolute_step():
    from pipeline.models.potential import make_potential
    from pipeline.models.properties import crystal, elastic_constants

    out = fim(method="forward", abs_step=0.1)
    pot = make_potential(SW_SPEC)
    si = crystal("diamond", "Si", 5.43)
    base = elastic_constants(pot, si)
    for col, name in enumerate(["A", "B"]):
        value = pot.defaults[name, 0]
        pot.set([(name, 0, value + 0.1)])
        np.testing.assert_allclose(out.jacobian[:, col], (elastic_constants(pot, si) - base) / 0.1, rtol=1e-9)
        pot.set([(name, 0, value)])


@pytest.mark.parametrize("targets,match", [
    ({"x": {"type": "bulk_modulus", "lattice": "diamond", "species": "Si"}},
     r"target.properties.x.type: expected one of \['cohesive_energy', 'elastic_constants', 'energy_curve', "
     r"'lattice_constant', 'phonon_band'\]"),
    ({"x": {**ELASTIC["elastic"], "covariance": {"diagonal": [1.0, 1.0]}}}, r"expected a 3x3 covariance .* got shape \(2, 2\)"),
    ({"x": {**ELASTIC["elastic"], "covariance": {"matrix": [[1, 2, 0], [2, 1, 0], [0, 0, 1]]}}}, "positive semi-definite"),
    ({"x": {**ELASTIC["elastic"], "covariance": {"matrix": [[1, 0.5, 0], [0, 1, 0], [0, 0, 1]]}}}, "symmetric"),
    ({"x": {**ELASTIC["elastic"], "covariance": {"sigma": 0.1}}}, "covariance.sigma: Key 'sigma' not in 'CovarianceConfig'"),
    ({"x": {**ELASTIC["elastic"], "colour": "red"}}, "x.colour: Key 'colour' not in 'ElasticConstantsConfig'"),
    ({"x": {"type": "lattice_constant", "species": "Si"}}, "x.lattice: Structured config of type `CubicPropertyConfig` has missing mandatory value"),
    ({}, "at least one property"),
    ({"x": {**ELASTIC["elastic"], "backend": "gulp"}}, r"backend: expected one of \['kimpy', 'lammps'\]"),
    ({"x": {**ELASTIC["elastic"], "full": True}}, "three independent elastic constants"),
], ids=["type", "shape", "not-psd", "asymmetric", "how", "key", "missing", "none", "backend", "full"])
def test_bad_targets(targets, match):
    with pytest.raises(ConfigError, match=match):
        fim(targets)


def lammps_or_skip():
    import shutil
    import subprocess

    path = shutil.which("lmp")
    if path is None:
        pytest.skip("LAMMPS (lmp) not installed: apt-get install lammps (make setup does)")
    if "KIM" not in subprocess.run([path, "-h"], capture_output=True, text=True).stdout:
        pytest.skip("this LAMMPS has no KIM package")


def test_lammps_cross_check_agrees():
    lammps_or_skip()
    from pipeline.models.lammps import cubic_properties
    from pipeline.models.potential import make_potential
    from pipeline.models.properties import crystal, elastic_constants, lattice_constant

    pot = make_potential(SW_SPEC)
    si = crystal("diamond", "Si", 5.43)
    for b in (None, 0.61):  # the model's B, and B set through kim param set
        if b is not None:
            pot.set([("B", 0, b)])
        ours = np.concatenate([lattice_constant(pot, si), elastic_constants(pot, si)])
        r = cubic_properties(SW, "Si", "diamond", 5.43, {k: pot.get(*k) for k in pot.defaults})
        np.testing.assert_allclose([r["a0"], r["C11"], r["C12"], r["C44"]], ours, rtol=1e-6)
    lammps_targets = {"elastic": {**ELASTIC["elastic"], "backend": "lammps"}}
    np.testing.assert_allclose(fim(lammps_targets).fim, fim().fim, rtol=1e-3)


def test_lammps_executable_is_the_one_named_and_checked(tmp_path):
    """target.lammps.executable: a copy of lmp elsewhere, by path, gives LAMMPS's numbers;
    a file that is not LAMMPS, or not there, is one line naming it."""
    import os
    import shutil

    lammps_or_skip()
    from pipeline.core.errors import ConfigError
    from pipeline.models.lammps import cubic_properties
    from stages.models import targets_of

    mine = tmp_path / "bin/my-lammps"
    mine.parent.mkdir()
    os.symlink(shutil.which("lmp"), mine)
    targets = targets_of({"elastic": {**ELASTIC["elastic"], "backend": "lammps"}}, str(mine))
    assert targets[0].executable == str(mine)
    params = {("A", 0): 15.2848479197914, ("B", 0): 0.6022245584}
    np.testing.assert_allclose(list(cubic_properties(SW, "Si", "diamond", 5.43, params, str(mine)).values()),
                               list(cubic_properties(SW, "Si", "diamond", 5.43, params).values()), rtol=1e-12)
    (tmp_path / "bin/not-lammps").write_text("#!/bin/sh\necho hello\n")
    (tmp_path / "bin/not-lammps").chmod(0o755)
    for exe, message in ((str(tmp_path / "bin/not-lammps"), "whose -h does not say it is LAMMPS"),
                         (str(tmp_path / "bin/absent"), "not one")):
        with pytest.raises(ConfigError, match=f"target.lammps.executable: .*{message}"):
            targets_of({"elastic": {**ELASTIC["elastic"], "backend": "lammps"}}, exe)
