"""Target properties of SW silicon against published values and independent routes."""

import numpy as np
import pytest
from ase.build import bulk
from ase.units import GPa
from conftest import kim_model_or_skip
from scipy.optimize import brentq
from test_fim import SW, SW_SPEC

from pipeline.core.errors import ConfigError
from pipeline.models import properties
from pipeline.models.potential import make_potential

SI = properties.crystal("diamond", "Si", 5.43)


@pytest.fixture(scope="module")
def sw():
    kim_model_or_skip(SW)
    return make_potential(SW_SPEC)


def test_published_stillinger_weber_values(sw):
    # OpenKIM's cubic elastic constants and lattice constant of this model
    a0, = properties.lattice_constant(sw, SI)
    c11, c12, c44 = properties.elastic_constants(sw, SI)
    assert a0 == pytest.approx(5.43095, rel=1e-4)
    assert c11 == pytest.approx(151.42, rel=1e-4)
    assert c12 == pytest.approx(76.42, rel=1e-4)
    assert c44 == pytest.approx(56.45, rel=1e-4)
    assert properties.cohesive_energy(sw, SI)[0] == pytest.approx(-4.3364, rel=1e-4)


def test_relaxed_c44_equals_an_explicit_relaxation_with_ase():
    kim_model_or_skip(SW)
    from ase.calculators.kim import KIM
    from ase.optimize import BFGS

    calc = KIM(SW)

    def pressure(a):
        atoms = bulk("Si", "diamond", a=a, cubic=True)
        atoms.calc = calc
        return -atoms.get_stress()[:3].mean()

    a0 = brentq(pressure, 5.3, 5.6, xtol=1e-13)
    sigma4 = []
    for h in (1e-3, -1e-3):
        atoms = bulk("Si", "diamond", a=a0, cubic=True)
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + np.array([[0, 0, 0], [0, 0, h / 2], [0, h / 2, 0]])),
                       scale_atoms=True)
        atoms.calc = calc
        BFGS(atoms, logfile=None).run(fmax=1e-9, steps=500)
        sigma4.append(atoms.get_stress()[3])
    c44_relaxed = (sigma4[0] - sigma4[1]) / 2e-3 / GPa
    ours = properties.elastic_constants(make_potential(SW_SPEC), SI)[2]
    assert ours == pytest.approx(c44_relaxed, rel=1e-5)


def test_full_tensor_has_cubic_symmetry(sw):
    full = properties.elastic_constants(sw, SI, full=True)
    tensor = np.zeros((6, 6))
    tensor[np.triu_indices(6)] = full
    tensor = tensor + np.triu(tensor, 1).T
    c11, c12, c44 = properties.elastic_constants(sw, SI)
    expected = np.zeros((6, 6))
    expected[:3, :3] = c12
    expected[np.arange(3), np.arange(3)] = c11
    expected[np.arange(3, 6), np.arange(3, 6)] = c44
    np.testing.assert_allclose(tensor, expected, atol=1e-6 * c11)
    assert properties.names("elastic_constants", full=True)[:3] == ["C11", "C12", "C13"]


def test_unrelaxed_shear_is_stiffer(sw):
    atoms = properties.cell(SI, properties.lattice_constant(sw, SI)[0])
    h = properties.STRAIN_STEP
    c44_unrelaxed = (sw.compute(properties.strained(atoms, 3, h), "stress")[3]
                     - sw.compute(properties.strained(atoms, 3, -h), "stress")[3]) / (2 * h) / GPa
    assert c44_unrelaxed > 1.5 * properties.elastic_constants(sw, SI)[2]


def test_bad_crystal():
    with pytest.raises(ConfigError, match=r"lattice: expected one of \['bcc', 'diamond', 'fcc'\]"):
        properties.crystal("hcp", "Si", 5.43)
    with pytest.raises(ConfigError, match="species: expected an element symbol"):
        properties.crystal("fcc", "Xx", None)
    with pytest.raises(ConfigError, match="a_guess: needed for 'Og'"):  # no reference lattice in ASE
        properties.crystal("fcc", "Og", None)
    with pytest.raises(ConfigError, match="a_guess: expected a lattice constant"):
        properties.crystal("fcc", "Si", -1.0)
