"""FIMs of training configurations against independent references (real KIM model)."""

import numpy as np
import pytest
from ase.build import bulk
from ase.neighborlist import neighbor_list
from conftest import kim_model_or_skip

from pipeline.core.errors import ConfigError, InputError
from pipeline.models.derivatives import jacobian, resolve
from pipeline.models.parameters import parse
from pipeline.models.potential import make_potential
from pipeline.scores.fim import FimTask, as_row_weights, fim_of
from stages.fim_train import derivative_of
from stages.models import potential_of, transform_of
from stages.schema import DerivativeConfig, PotentialConfig, TransformConfig

SW = "SW_StillingerWeber_1985_Si__MO_405512056662_005"


def Derivative(method="central", **kw):  # noqa: N802 - the schema's defaults, as the stage makes them
    return derivative_of(DerivativeConfig(method=method, **kw))


def Transform(type="identity", **kw):  # noqa: N802, A002
    return transform_of(TransformConfig(type=type, **{k: list(v) for k, v in kw.items()}))


def Potential(**kw):  # noqa: N802
    return potential_of(PotentialConfig(**kw))


SW_SPEC = Potential(type="kim", kim_id=SW, species=["Si"])
ALL9 = ["A", "B", "p", "q", "sigma", "gamma", "cutoff", "lambda", "costheta0"]


@pytest.fixture(scope="module")
def sw():
    kim_model_or_skip(SW)
    return make_potential(SW_SPEC)


def si8(seed=11):
    atoms = bulk("Si", "diamond", a=5.431, cubic=True)
    atoms.rattle(0.08, seed=seed)
    return atoms


def task(pot, names_or_spec, atoms, quantity="forces", derivative=Derivative(), transform=Transform(),
         mask=None, potential=SW_SPEC):
    spec = names_or_spec if isinstance(names_or_spec, dict) else {n: [["default"]] for n in names_or_spec}
    spec = parse(spec)
    return FimTask(potential, resolve(spec, pot), len(spec.tunable), transform, derivative, quantity, mask, atoms)


def reference_jacobian(pot, names, atoms, rel):
    """Fourth-order differences written out here, parameter by parameter."""
    base = np.array([pot.get(n, 0) for n in names])
    cols = []
    for i, name in enumerate(names):
        h = rel * abs(base[i]) if base[i] else rel

        def forces_at(v):
            pot.set([(name, 0, v)])
            return pot.compute(atoms, "forces")

        cols.append((-forces_at(base[i] + 2 * h) + 8 * forces_at(base[i] + h)
                     - 8 * forces_at(base[i] - h) + forces_at(base[i] - 2 * h)) / (12 * h))
        pot.set([(name, 0, base[i])])
    return np.stack(cols, axis=1)


def column_errors(j, ref):
    return np.linalg.norm(j - ref, axis=0) / np.linalg.norm(ref, axis=0)


@pytest.mark.parametrize("names", [ALL9, ["A", "B"]])
def test_jacobian_agrees_with_fourth_order_differences_at_two_steps(sw, names):
    atoms = si8()
    ref1, ref2 = reference_jacobian(sw, names, atoms, 4e-4), reference_jacobian(sw, names, atoms, 2e-4)
    assert column_errors(ref1, ref2).max() < 1e-8  # the reference itself is converged
    out = fim_of(sw, task(sw, names, atoms))
    assert column_errors(out["jacobian"], ref2).max() < 1e-6
    assert [sw.get(n, 0) for n in names] == [resolve(parse({n: [["default"]]}), sw)[0][2] for n in names]


def test_forces_are_exactly_linear_in_a_and_lambda(sw):
    atoms = si8(5)
    a0, l0 = sw.get("A", 0), sw.get("lambda", 0)
    sw.set([("A", 0, 1.0), ("lambda", 0, 0.0)])
    two_body = sw.compute(atoms, "forces")
    sw.set([("A", 0, 0.0), ("lambda", 0, 1.0)])
    three_body = sw.compute(atoms, "forces")
    sw.set([("A", 0, a0), ("lambda", 0, l0)])
    jac = fim_of(sw, task(sw, ["A", "lambda"], atoms))["jacobian"]
    assert column_errors(jac, np.stack([two_body, three_body], axis=1)).max() < 1e-6
    assert sw.get("A", 0) == a0 and sw.get("lambda", 0) == l0  # the model is left as it was


@pytest.mark.parametrize("quantity", ["forces", "energy", "stress"])
def test_fim_is_symmetric_positive_semidefinite(sw, quantity):
    fim = fim_of(sw, task(sw, ALL9, si8(7), quantity))["fim"]
    np.testing.assert_array_equal(fim, fim.T)
    eig = np.linalg.eigvalsh(fim)
    assert eig.min() >= -1e-12 * eig.max() and eig.max() > 0


def test_perfect_lattice_has_no_force_information(sw):
    atoms = bulk("Si", "diamond", a=5.431, cubic=True)
    assert np.abs(fim_of(sw, task(sw, ALL9, atoms))["fim"]).max() < 1e-20


def sw_two_body_forces(atoms, a, b, p, q, sigma, cutoff):
    """SW pair forces (lambda = 0) from the closed form, with ASE's neighbour list."""
    i, j, d, vec = neighbor_list("ijdD", atoms, cutoff)
    phi = a * (b * (sigma / d) ** p - (sigma / d) ** q) * np.exp(sigma / (d - cutoff))
    dphi = (a * (-p * b * (sigma / d) ** p + q * (sigma / d) ** q) / d * np.exp(sigma / (d - cutoff))
            - phi * sigma / (d - cutoff) ** 2)
    forces = np.zeros((len(atoms), 3))
    np.add.at(forces, i, (dphi / d)[:, None] * vec)
    return forces.reshape(-1)


def test_orchestrator_parity_ten_percent_central_differences(sw):
    atoms = si8(3)
    spec = {"A": [[15.2848479197914]], "B": [["default"]], "lambda": [[0.0, "fix"]]}
    fim = fim_of(sw, task(sw, spec, atoms, derivative=Derivative("central", rel_step=0.1)))["fim"]
    const = dict(p=4.0, q=0.0, sigma=2.0951, cutoff=3.77118)
    a, b = 15.2848479197914, 0.6022245584
    ja = (sw_two_body_forces(atoms, 1.1 * a, b, **const) - sw_two_body_forces(atoms, 0.9 * a, b, **const)) / (0.2 * a)
    jb = (sw_two_body_forces(atoms, a, 1.1 * b, **const) - sw_two_body_forces(atoms, a, 0.9 * b, **const)) / (0.2 * b)
    jac = np.stack([ja, jb], axis=1)
    np.testing.assert_allclose(fim, jac.T @ jac, rtol=1e-10)
    assert sw.get("lambda", 0) == 0.0  # held at the fixed value
    fim_of(sw, task(sw, ["A", "B"], atoms))  # a later spec starts from the model's defaults
    assert sw.get("lambda", 0) == 45.5322
    assert sw.compute(atoms, "energy")[0] == make_potential(SW_SPEC).compute(atoms, "energy")[0]


def test_stress_equals_strain_derivative_of_energy(sw):
    atoms = si8(9)
    stress = sw.compute(atoms, "stress")
    h, volume = 1e-5, atoms.get_volume()
    pairs = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    for k, (a, b) in enumerate(pairs):
        energies = []
        for s in (h, -h):
            strained = atoms.copy()
            eps = np.eye(3)
            eps[a, b] += s / (2 if a != b else 1)
            eps[b, a] += s / 2 if a != b else 0
            strained.set_cell(atoms.cell.array @ eps, scale_atoms=True)
            energies.append(sw.compute(strained, "energy")[0])
        assert abs((energies[0] - energies[1]) / (2 * h) / volume - stress[k]) < 1e-7


def test_log_and_affine_transforms_follow_the_chain_rule(sw):
    atoms = si8(4)
    names = ["A", "B", "sigma"]
    values = np.array([sw.get(n, 0) for n in names])
    plain = fim_of(sw, task(sw, names, atoms))["jacobian"]
    logged = fim_of(sw, task(sw, names, atoms, transform=Transform("log")))["jacobian"]
    assert column_errors(logged, plain * values).max() < 1e-6  # dq/dlog(x) = x dq/dx
    scale = (2.0, 0.5, 4.0)
    affine = fim_of(sw, task(sw, names, atoms, transform=Transform("affine", a=scale, b=(1.0,))))["jacobian"]
    assert column_errors(affine, plain / np.array(scale)).max() < 1e-6  # y = a x + b


def test_numdifftools_and_central4_agree_with_central(sw):
    atoms = si8(8)
    central = fim_of(sw, task(sw, ["A", "B"], atoms))["jacobian"]
    for d in (Derivative("central4"), Derivative("numdifftools", numdifftools={"step": 1e-4})):
        assert column_errors(fim_of(sw, task(sw, ["A", "B"], atoms, derivative=d))["jacobian"], central).max() < 1e-6


def test_masks_weight_rows(sw):
    atoms = si8(2)
    per_atom = np.zeros(8)
    per_atom[[1, 4]] = 1.0
    weights = as_row_weights(per_atom, atoms, "forces", "image x")
    full = fim_of(sw, task(sw, ["A", "B"], atoms))["jacobian"]
    masked = fim_of(sw, task(sw, ["A", "B"], atoms, mask=weights))
    np.testing.assert_array_equal(masked["jacobian"], weights[:, None] * full)
    kept = full.reshape(8, 3, 2)[[1, 4]].reshape(6, 2)
    np.testing.assert_allclose(masked["fim"], kept.T @ kept, rtol=1e-12)
    with pytest.raises(InputError, match=r"image x: mask has 5 values; expected 24"):
        as_row_weights(np.ones(5), atoms, "forces", "image x")
    with pytest.raises(InputError, match=r"expected 6 \(one per row of stress"):
        as_row_weights(np.ones(8), atoms, "stress", "image x")


def test_lennard_jones_through_ase():
    lj = Potential(type="ase", calculator="ase.calculators.lj.LennardJones",
                   calculator_kwargs={"epsilon": 0.01, "sigma": 3.4, "rc": 9.0})
    pot = make_potential(lj)
    assert {"epsilon", "sigma"} <= set(pot.parameter_extents())
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True)
    atoms.rattle(0.1, seed=1)
    out = fim_of(pot, task(pot, ["epsilon", "sigma"], atoms, potential=lj))
    forces = pot.compute(atoms, "forces")
    np.testing.assert_allclose(out["jacobian"][:, 0], forces / 0.01, rtol=1e-6, atol=1e-12)  # linear in epsilon

    def f(theta):
        pot.set([("epsilon", 0, theta[0]), ("sigma", 0, theta[1])])
        return pot.compute(atoms, "forces")

    ref = jacobian(f, np.array([0.01, 3.4]), Derivative("central4", rel_step=1e-3))
    assert column_errors(out["jacobian"], ref).max() < 1e-6


def test_unknown_model_species_and_calculator(sw):
    with pytest.raises(ConfigError, match="no KIM portable model 'No_Such_Model'"):
        make_potential(Potential(type="kim", kim_id="No_Such_Model", species=["Si"]))
    with pytest.raises(ConfigError, match="does not support 'Xx'"):
        make_potential(Potential(type="kim", kim_id=SW, species=["Xx"]))
    with pytest.raises(ConfigError, match="cannot import 'ase.calculators.nope.Calc'"):
        make_potential(Potential(type="ase", calculator="ase.calculators.nope.Calc"))
    with pytest.raises(ConfigError, match=r"potential.type: expected one of \['ase', 'kim'\]"):
        make_potential(Potential(type="lammps"))
    with pytest.raises(ConfigError, match=r"derivative.method: expected one of \['central', 'central4', 'forward'"):
        fim_of(sw, task(sw, ["A"], si8(), derivative=Derivative("backward")))


def test_transforms_equal_information_matching_on_the_same_input():
    from pipeline.models.transforms import import_information_matching, resolve_transform

    im = import_information_matching()
    import information_matching.transform as imt  # noqa: F401 - already imported, side effects undone

    x = np.array([15.28, -0.6, 2.0951])
    a, b, x0 = np.array([[2.0, 0.3, 0.0], [0.0, 0.5, 0.1], [0.2, 0.0, 4.0]]), np.array([1.0, -2.0, 0.5]), x * 0.9
    ours = resolve_transform(Transform("affine", a=a.ravel(), b=b, x0=x0), x)
    ref = im.transform.AffineTransform(a=a, x0=x0, b=b)
    np.testing.assert_allclose(ours.forward(x), ref.transform(x), rtol=1e-14)
    np.testing.assert_allclose(ours.inverse(ref.transform(x)), ref.inverse_transform(ref.transform(x)), rtol=1e-12)
    ours, ref = resolve_transform(Transform("log"), x), im.transform.LogTransform(sign=np.sign(x))
    np.testing.assert_allclose(ours.forward(x), ref.transform(x), rtol=1e-14)
    np.testing.assert_allclose(ours.inverse(ours.forward(x)), ref.inverse_transform(ref.transform(x)), rtol=1e-14)
    import multiprocessing

    assert multiprocessing.get_context().reducer.__name__ == "multiprocessing.reduction"


@pytest.mark.parametrize("method,degree", [("forward", 1), ("forward2", 2), ("central", 2), ("central4", 4)])
def test_each_stencil_is_exact_for_polynomials_of_its_order(method, degree):
    from pipeline.models.derivatives import jacobian

    coeffs = np.arange(1.0, degree + 2)  # f(θ) = Σ_k c_k θ^k on each component, to the stencil's exact degree
    f = lambda t: np.array([sum(c * x**k for k, c in enumerate(coeffs)) for x in t])  # noqa: E731
    theta = np.array([0.7, -1.3])
    exact = np.diag([sum(k * c * x ** (k - 1) for k, c in enumerate(coeffs) if k) for x in theta])
    np.testing.assert_allclose(jacobian(f, theta, Derivative(method, rel_step=1e-2)), exact, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("skin", [0.0, 0.5])
def test_neighbour_list_kept_or_rebuilt_as_the_cutoff_moves(sw, skin):
    """A model kept across parameter changes gives the forces of a model made afresh at
    those parameters: within the skin the list is kept, past it rebuilt (else atoms
    between the old and the new cutoff would be missed)."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.1, seed=4)
    kept = make_potential(Potential(type="kim", kim_id=SW, species=["Si"], skin=skin))
    cutoff = kept.defaults["cutoff", 0]
    for value in [cutoff, cutoff * (1 + 1e-4), cutoff + 0.8, cutoff * (1 - 1e-4), cutoff]:
        kept.set([("cutoff", 0, value)])
        fresh = make_potential(Potential(type="kim", kim_id=SW, species=["Si"], skin=skin))
        fresh.set([("cutoff", 0, value)])
        np.testing.assert_allclose(kept.compute(atoms, "forces"), fresh.compute(atoms, "forces"), rtol=1e-12,
                                   atol=1e-12, err_msg=f"cutoff {value}")
    assert not np.allclose(fresh.compute(atoms, "forces"), (fresh.set([("cutoff", 0, cutoff + 0.8)]),
                                                            fresh.compute(atoms, "forces"))[1])  # it matters
