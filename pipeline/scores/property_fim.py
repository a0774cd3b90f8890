"""FIM of target properties (Orchestrator's FIMPropertyScore, computed in-process).

For properties k with values y_k(θ) and covariances C_k, FIM = Σ_k J_kᵀ pinv(C_k) J_k
with J_k = ∂y_k/∂θ by finite differences in the transformed parameter space, using
the same potential and parameter spec as the training FIMs. Parameters are set on one
model, never compiled; the lattice constant is found again at every perturbation.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from pipeline.core.errors import ConfigError
from pipeline.core.executors import worker_resource
from pipeline.models import properties
from pipeline.models.derivatives import Derivative, parameter_jacobian, resolve
from pipeline.models.parameters import ParamSpec
from pipeline.models.potential import PotentialSpec, make_potential
from pipeline.models.transforms import Transform

COVARIANCES = ("relative", "diagonal", "matrix")
ZERO_RELATIVE = 1e-8  # a value this small relative to the largest is zero for a relative covariance
BACKENDS = ("kimpy", "lammps")


@dataclass(frozen=True)
class Target:
    """One target property: its config name, kind, crystal and covariance spec."""

    name: str
    kind: str
    crystal: properties.Crystal
    full: bool
    covariance: tuple  # (how, value): ("relative", 0.1), ("diagonal", [...]), ("matrix", [[...]])
    backend: str = "kimpy"  # kimpy (this process) | lammps (pipeline.models.lammps, a cross-check)
    options: tuple = ()  # ((key, value), ...): the property's own settings (OPTIONS)
    executable: str | None = None  # backend lammps: target.lammps.executable (None: lmp on PATH)

    def evaluate(self, potential) -> np.ndarray:
        if self.backend == "lammps":
            return self._evaluate_lammps(potential)
        if self.kind == "elastic_constants":
            return properties.elastic_constants(potential, self.crystal, self.full)
        return PROPERTIES[self.kind](potential, self.crystal, **dict(self.options))

    def _evaluate_lammps(self, potential) -> np.ndarray:
        from pipeline.models.lammps import cubic_properties

        c = self.crystal
        r = cubic_properties(potential.kim_id, c.species, c.lattice, c.a_guess,
                             {key: potential.get(*key) for key in potential.defaults}, self.executable)
        return np.array({"elastic_constants": [r["C11"], r["C12"], r["C44"]], "lattice_constant": [r["a0"]],
                         "cohesive_energy": [r["e_coh"]]}[self.kind])

    def labels(self) -> list[str]:
        return [f"{self.name}.{v}" for v in properties.names(self.kind, self.full, dict(self.options))]


PROPERTIES = {
    "elastic_constants": properties.elastic_constants,
    "lattice_constant": properties.lattice_constant,
    "cohesive_energy": properties.cohesive_energy,
    "energy_curve": properties.energy_curve,
    "phonon_band": properties.phonon_band,
}
OPTIONS = {"energy_curve": ("delta_range", "points"), "phonon_band": ("path", "points", "supercell", "displacement")}
LAMMPS_KINDS = ("elastic_constants", "lattice_constant", "cohesive_energy")


@dataclass(frozen=True)
class PropertyFim:
    fim: np.ndarray  # (P, P)
    jacobian: np.ndarray  # (m, P), every target's values stacked
    values: np.ndarray  # (m,)
    value_labels: tuple[str, ...]
    covariances: tuple[np.ndarray, ...]
    labels: dict[int, dict]
    model: dict  # the potential's outside identity (versions, file digests)


def covariance(target: Target, values: np.ndarray) -> np.ndarray:
    """The (m, m) covariance of ``target``'s values; symmetric positive semi-definite."""
    how, given = target.covariance
    where = f"target.properties.{target.name}.covariance"
    check = check_how(where, how)
    m = len(values)
    if check == "relative":
        scale = np.max(np.abs(values))
        tiny = np.abs(values) <= ZERO_RELATIVE * scale
        if tiny.any():
            names = [lab for lab, t in zip(target.labels(), tiny) if t]
            raise ConfigError(
                f"{where}: a relative sigma needs values away from zero, but {names} are "
                f"{values[tiny].tolist()} (zero by symmetry or numerically): their variance would be ~0 and "
                "their noise weighted without bound; give an absolute covariance (diagonal or matrix)")
        cov = np.diag((float(given) * values) ** 2)
    elif check == "diagonal":
        cov = np.diag(np.asarray(given, dtype=float))
    else:
        cov = np.asarray(given, dtype=float)
    if cov.shape != (m, m):
        raise ConfigError(f"{where}: expected a {m}x{m} covariance ({target.labels()}), got shape {cov.shape}")
    if not np.allclose(cov, cov.T, rtol=1e-10, atol=0):
        raise ConfigError(f"{where}: expected a symmetric matrix")
    eig = np.linalg.eigvalsh(cov)
    if eig.min() < -1e-10 * max(abs(eig.max()), 1e-300) or eig.max() <= 0:
        raise ConfigError(f"{where}: expected a positive semi-definite matrix, got eigenvalues {eig.tolist()}")
    return cov


def check_covariance_values(where: str, how: str, value) -> None:
    """A relative sigma is a number > 0; diagonal variances are numbers >= 0, not all 0;
    a matrix is a list of lists of numbers; all finite."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: expected numbers, got {value!r}") from err
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{where}: expected finite numbers, got {value!r} (an infinite variance is no measurement: "
                          "leave the property out instead)")
    if how == "relative" and not (arr.ndim == 0 and arr > 0):
        raise ConfigError(f"{where}: expected one relative sigma > 0, got {value!r}")
    if how == "diagonal" and (arr.ndim != 1 or np.any(arr < 0) or not np.any(arr > 0)):
        raise ConfigError(f"{where}: expected a list of variances >= 0, not all zero, got {value!r}")
    if how == "matrix" and arr.ndim != 2:
        raise ConfigError(f"{where}: expected a matrix (a list of rows), got {value!r}")


def check_how(where: str, how: str) -> str:
    if how not in COVARIANCES:
        raise ConfigError(f"{where}: expected one of {list(COVARIANCES)}, got {how!r}")
    return how


def parse_targets(raw: Mapping[str, Mapping]) -> list[Target]:
    """Targets from complete entries ``{name: {type, lattice, species, a_guess, backend,
    covariance: {relative, diagonal, matrix} (exactly one not None), and for
    elastic_constants full}}``, as the schema (stages/schema.py PROPERTY_SCHEMAS) fills
    them in."""
    if not raw:
        raise ConfigError("target.properties: expected at least one property, got none")
    out = []
    for name, entry in raw.items():
        where = f"target.properties.{name}"
        entry = dict(entry)
        kind = entry.pop("type", None)
        if kind not in PROPERTIES:
            raise ConfigError(f"{where}.type: expected one of {sorted(PROPERTIES)}, got {kind!r}")
        cov = {k: v for k, v in dict(entry.pop("covariance", None) or {}).items() if v is not None}
        if len(cov) != 1:
            raise ConfigError(f"{where}.covariance: expected exactly one of {list(COVARIANCES)}, got {sorted(cov)}")
        (how, value), = cov.items()
        check_how(f"{where}.covariance", how)
        check_covariance_values(f"{where}.covariance.{how}", how, value)
        full = bool(entry.pop("full")) if kind == "elastic_constants" else False
        backend = entry.pop("backend")
        if backend not in BACKENDS:
            raise ConfigError(f"{where}.backend: expected one of {list(BACKENDS)}, got {backend!r}")
        if backend == "lammps" and kind not in LAMMPS_KINDS:
            raise ConfigError(f"{where}.backend: lammps computes {list(LAMMPS_KINDS)}, not {kind}; use kimpy")
        options = tuple((k, _frozen(entry.pop(k))) for k in OPTIONS.get(kind, ()))
        if full:
            raise ConfigError(
                f"{where}.full: a cubic crystal has three independent elastic constants, C11, C12 and C44 "
                "(full: false); of the 21 components of the full tensor, C22 = C33 = C11, C13 = C23 = C12 and "
                "C55 = C66 = C44 would count each measurement three times, and the other 12 are zero by "
                "symmetry, so full: true is refused for every lattice here (diamond, fcc, bcc)")
        try:
            c = properties.crystal(entry.pop("lattice"), entry.pop("species"), entry.pop("a_guess"))
        except KeyError as err:
            raise ConfigError(f"{where}: missing {err.args[0]!r}") from None
        if entry:
            raise ConfigError(f"{where}: unknown keys {sorted(entry)}; expected type, lattice, species, "
                              f"a_guess, full, covariance, backend{''.join(', ' + k for k in OPTIONS.get(kind, ()))}")
        target = Target(str(name), kind, c, full, (how, value), backend, options)
        try:
            target.labels()  # checks the grid or path
            if kind == "phonon_band":
                properties.q_path(dict(options)["path"], dict(options)["points"], 1.0)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        out.append(target)
    return out


def _frozen(value):
    return tuple(value) if isinstance(value, list) else value


def check_species(targets: Sequence[Target], potential: PotentialSpec) -> None:
    """Every target's element is one the potential computes (a KIM model's species)."""
    for t in targets:
        if potential.type == "kim" and t.crystal.species not in potential.species:
            raise ConfigError(f"target.properties.{t.name}.species: {t.crystal.species!r} is not among "
                              f"potential.species {list(potential.species)} ({potential.kim_id} computes those only)")


def property_fim(potential: PotentialSpec, spec: ParamSpec, transform: Transform, derivative: Derivative,
                 targets: Sequence[Target]) -> PropertyFim:
    """The FIM of ``targets`` with respect to the tunable parameters of ``spec``."""
    check_species(targets, potential)
    if potential.type != "kim" and any(t.backend == "lammps" for t in targets):
        raise ConfigError("target.properties.*.backend=lammps needs potential.type=kim")
    model = worker_resource(make_potential, potential)
    spec.check(model.parameter_extents(), potential.kim_id or potential.calculator)
    assignments = resolve(spec, model)
    n = len(spec.tunable)

    with tqdm(desc="property FIM (evaluations)", leave=False, disable=None) as bar:  # terminal only
        def evaluate():
            bar.update()
            return np.concatenate([t.evaluate(model) for t in targets])

        jac = parameter_jacobian(model, assignments, n, transform, derivative, evaluate)
        values = evaluate()  # at the spec's values (parameter_jacobian leaves them set)
    covs, fim, row = [], np.zeros((n, n)), 0
    for t in targets:
        m = len(t.labels())
        cov = covariance(t, values[row:row + m])
        j = jac[row:row + m]
        fim += j.T @ np.linalg.pinv(cov, hermitian=True) @ j
        covs.append(cov)
        row += m
    labels = tuple(lab for t in targets for lab in t.labels())
    return PropertyFim((fim + fim.T) / 2, jac, values, labels, tuple(covs), spec.labels(), model.identity())
