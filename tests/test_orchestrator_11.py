"""The elastic-constant property FIM against an independent computation, and why
Orchestrator's FIMPropertyScore test 11 reference differs from it.

Orchestrator's ElasticConstants relaxes the box with LAMMPS's fix box/relax (default
vmax 1e-4 per iteration) for at most maxiter = 100 iterations, so the lattice constant
can move at most 1 % from its 5.43 Å start; its forward difference B + 0.1 needs
a0 = 5.557 Å (+2.3 %), so that point is computed at 5.4843 Å under +4.2 GPa.
The independent computation here: ASE's KIM calculator, Brent's method for a0, central
stress differences in strain, the internal (sublattice) shift solved by Newton -- none
of atomsieve's code.
"""

import numpy as np
import pytest
from ase.build import bulk
from ase.units import GPa
from conftest import kim_model_or_skip
from scipy.optimize import brentq

SW = "SW_StillingerWeber_1985_Si__MO_405512056662_005"
A0, B0 = 15.2848479197914, 0.6022245584
# orchestrator/test/reference_output/score/FIMPropertyScore/11_fim_property/00000/score_results.json
ORCHESTRATOR_11 = np.array([[0.015531910928451874, 0.2208764443326237],
                            [0.2208764443326237, 6.006371022760652]])


@pytest.fixture(scope="module")
def calc():
    kim_model_or_skip(SW)
    from ase.calculators.kim import KIM

    return KIM(SW)


def c11_c12_c44(calc, a_par, b_par, clip=None, e=1e-5):
    """Relaxed-ion C11, C12, C44 (eV/Å³) at the zero-pressure lattice constant
    (clipped to ``clip`` = (lo, hi) if given)."""
    calc.set_parameters(A=[[0], [a_par]], B=[[0], [b_par]])

    def cell(a):
        atoms = bulk("Si", "diamond", a=a, cubic=True)
        atoms.calc = calc
        return atoms

    a = brentq(lambda x: cell(x).get_stress()[:3].mean(), 5.0, 6.2, xtol=1e-14)
    if clip is not None:
        a = float(np.clip(a, *clip))

    def relaxed_stress(strain):
        atoms = cell(a)
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
        base, sub, u = atoms.positions.copy(), [1, 3, 5, 7], np.zeros(3)

        def force(u):
            atoms.positions[:] = base
            atoms.positions[sub] += u
            return atoms.get_forces()[sub].sum(axis=0)

        for _ in range(20):  # Newton on the rigid shift of the second sublattice
            f = force(u)
            if np.abs(f).max() < 1e-12:
                break
            k = np.stack([(force(u + d) - force(u - d)) / 2e-5 for d in np.eye(3) * 1e-5], axis=1)
            u = u - np.linalg.solve(k, f)
        force(u)
        return atoms.get_stress()

    xx, yz = np.zeros((3, 3)), np.zeros((3, 3))
    xx[0, 0], yz[1, 2], yz[2, 1] = 1, 0.5, 0.5  # unit normal strain, unit engineering shear
    s_xx = (relaxed_stress(e * xx) - relaxed_stress(-e * xx)) / (2 * e)
    s_yz = (relaxed_stress(e * yz) - relaxed_stress(-e * yz)) / (2 * e)
    return np.array([s_xx[0], s_xx[1], s_yz[3]])


def independent_jacobian(calc, forward_step=None, clip=None):
    """d(C11, C12, C44)/d(A, B) in eV/Å³: central (rel. 1e-4) or forward (absolute step)."""
    base, cols = np.array([A0, B0]), []
    for i in range(2):
        if forward_step is None:
            h = 1e-4 * base[i] * np.eye(2)[i]
            cols.append((c11_c12_c44(calc, *(base + h), clip) - c11_c12_c44(calc, *(base - h), clip)) / (2 * h[i]))
        else:
            h = forward_step * np.eye(2)[i]
            cols.append((c11_c12_c44(calc, *(base + h), clip) - c11_c12_c44(calc, *base, clip)) / forward_step)
    return np.stack(cols, axis=1)


def orchestrator_fim(j3):
    """FIM of Orchestrator's 36 outputs (the 6×6 Voigt tensor, eV/Å³, its C44 not doubled)
    with its covariance (the 36×36 identity): C11 occurs 3 times, C12 6 times, C44 3 times."""
    return 3 * np.outer(j3[0], j3[0]) + 6 * np.outer(j3[1], j3[1]) + 3 * np.outer(j3[2], j3[2])


def atomsieve_jacobian(**derivative):
    from pipeline.models.parameters import parse
    from pipeline.scores.property_fim import property_fim
    from stages.models import derivative_of, potential_of, targets_of, transform_of
    from stages.schema import DerivativeConfig, PotentialConfig, TransformConfig

    out = property_fim(potential_of(PotentialConfig(type="kim", kim_id=SW, species=["Si"])),
                       parse({"A": [["default"]], "B": [["default"]]}),
                       transform_of(TransformConfig(type="identity")), derivative_of(DerivativeConfig(**derivative)),
                       targets_of({"e": {"type": "elastic_constants", "lattice": "diamond", "species": "Si",
                                         "a_guess": 5.43, "covariance": {"diagonal": [1.0, 1.0, 1.0]}}}))
    return out.jacobian * GPa  # GPa -> eV/Å³


def test_elastic_jacobian_matches_an_independent_computation(calc):
    ours, theirs = atomsieve_jacobian(), independent_jacobian(calc)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    np.testing.assert_allclose(orchestrator_fim(ours), [[0.0155334, -0.0672583], [-0.0672583, 3.44252]], rtol=1e-4)


def test_orchestrator_11_is_forward_differences_with_a_box_relaxation_stopped_at_1_percent(calc):
    # Orchestrator's reference, to its cfac (6.2414e-7 eV/Å³ per bar, 1.7e-5 low)
    stopped = independent_jacobian(calc, forward_step=0.1, clip=(5.43 * 0.99, 5.43 * 1.01))
    np.testing.assert_allclose(orchestrator_fim(stopped), ORCHESTRATOR_11, rtol=1e-4)
    # the same forward step with the lattice relaxed: atomsieve's forward/abs_step 0.1
    forward = atomsieve_jacobian(method="forward", abs_step=0.1)
    np.testing.assert_allclose(forward, independent_jacobian(calc, forward_step=0.1), rtol=1e-5)
    fim = orchestrator_fim(forward)
    assert fim[0, 0] == pytest.approx(ORCHESTRATOR_11[0, 0], rel=1e-3)  # A: a0 does not depend on A
    assert fim[1, 1] < 0.5 * ORCHESTRATOR_11[1, 1] and fim[0, 1] < 0 < ORCHESTRATOR_11[0, 1]
