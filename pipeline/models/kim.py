"""An OpenKIM portable model through kimpy, created once and re-parameterised in place.

Units: Å, eV; forces in eV/Å, stress in eV/Å³ (Voigt order xx, yy, zz, yz, xz, xy,
``stress = virial / volume`` as in ASE). Parameters are changed with
``set_parameter`` and ``clear_then_refresh``; the model is never re-created. The
neighbour list of a configuration is built once with a skin and rebuilt only for a
new configuration or when the model's influence distance grows past it.

The KIM API writes its log to ``kim.log`` in the working directory; that file name is
compiled into the library and cannot be changed from here.
"""

import re
from functools import lru_cache

import numpy as np
from ase import Atoms

from pipeline.core.errors import BackendMissing, ConfigError, InputError

INSTALL_HINT = "apt-get install libkim-api-dev openkim-models pkg-config && pip install kimpy"


def _kimpy():
    try:
        import kimpy
    except ImportError as err:
        raise BackendMissing(f"potential.type=kim needs kimpy and the KIM API: {INSTALL_HINT}") from err
    return kimpy


@lru_cache(maxsize=None)
def model_identity(kim_id: str) -> dict[str, str]:
    """What a KIM model's numbers depend on outside this project: the KIM API and kimpy
    versions, and digests of the model's library and of its driver's (a parameterised
    model's parameter files are compiled into its library)."""
    from pipeline.core.code_identity import file_digest, versions

    kimpy = _kimpy()
    col = kimpy.collections.create()
    kinds = kimpy.collection_item_type
    library, _ = col.get_item_library_file_name_and_collection(kinds.portableModel, kim_id)
    out = {"kim_api": col.get_project_name_and_sem_ver()[1], **versions("kimpy"), "model": file_digest(library)}
    for i in range(col.cache_list_of_item_metadata_files(kinds.portableModel, kim_id)):
        name, *_, text = col.get_item_metadata_file(i)
        driver = re.search(r'"model-driver"\s+"([^"]+)"', str(text)) if name == "kimspec.edn" else None
        if driver:
            path, _ = col.get_item_library_file_name_and_collection(kinds.modelDriver, driver.group(1))
            out["driver"] = f"{driver.group(1)}:{file_digest(path)}"
    return out


class KIMPotential:
    """A KIM portable model for the given species, with a neighbour-list ``skin`` (Å)."""

    def __init__(self, kim_id: str, species: tuple[str, ...], skin: float):
        if not skin >= 0 or not np.isfinite(skin):
            raise ConfigError(f"potential.skin: expected a finite length >= 0 Å, got {skin} (a negative skin "
                              "would leave neighbours inside the model's cutoff out of the neighbour list)")
        kimpy = self._kimpy = _kimpy()
        self.kim_id, self.skin = kim_id, skin
        try:
            accepted, self.model = kimpy.model.create(
                kimpy.numbering.zeroBased, kimpy.length_unit.A, kimpy.energy_unit.eV,
                kimpy.charge_unit.e, kimpy.temperature_unit.K, kimpy.time_unit.ps, kim_id)
        except RuntimeError as err:
            raise ConfigError(
                f"potential.kim_id: no KIM portable model {kim_id!r} is installed "
                f"(list them with `kim-api-collections-management list`)") from err
        if not accepted:
            raise ConfigError(f"potential.kim_id: {kim_id} does not accept Å and eV")
        self.codes = self._species_codes(species)
        self.params: dict[str, tuple[int, int]] = {}
        for i in range(self.model.get_number_of_parameters()):
            dtype, extent, name, _ = self.model.get_parameter_metadata(i)
            if str(dtype) == "Double":
                self.params[name] = (i, extent)
        self.defaults = {(n, k): self.get(n, k) for n, (_, extent) in self.params.items() for k in range(extent)}
        self._values = dict(self.defaults)  # what the model holds now
        self.args = self.model.compute_arguments_create()
        self._energy = np.zeros(1)
        self._virial = np.zeros(6)
        self._virial_on = None
        self._key = None
        self._reach_now()  # _key None: nothing built yet

    def _species_codes(self, species: tuple[str, ...]) -> dict[int, int]:
        from ase.data import atomic_numbers

        codes = {}
        for symbol in species:
            try:
                supported, code = self.model.get_species_support_and_code(
                    self._kimpy.species_name.SpeciesName(symbol))
            except RuntimeError:
                supported = False
            if not supported or symbol not in atomic_numbers:
                raise ConfigError(f"potential.species: {self.kim_id} does not support {symbol!r}")
            codes[atomic_numbers[symbol]] = code
        return codes

    def identity(self) -> dict[str, str]:
        """The model's outside identity (:func:`model_identity`), for store keys."""
        return model_identity(self.kim_id)

    def parameter_extents(self) -> dict[str, int]:
        """``{name: extent}`` of the model's floating-point parameters."""
        return {name: extent for name, (_, extent) in self.params.items()}

    def get(self, name: str, extent: int) -> float:
        return self.model.get_parameter_double(self.params[name][0], extent)

    def set(self, assignments) -> None:
        """Set ``(name, extent, value)`` triples, then refresh the model once. Values the
        model already holds are not set again, and nothing changed means no refresh (a
        finite-difference step changes one parameter of many)."""
        changed = False
        for name, extent, value in assignments:
            value = float(value)
            if self._values[name, extent] != value:
                self.model.set_parameter(self.params[name][0], extent, value)
                self._values[name, extent] = value
                changed = True
        if changed:
            self.model.clear_then_refresh()
            self._reach_now()

    def _reach_now(self) -> None:
        """The influence distance and neighbour-list cutoffs of the current parameters,
        and whether the neighbour list built last still holds every neighbour they need."""
        self._influence = self.model.get_influence_distance()
        self._cutoffs = np.asarray(self.model.get_neighbor_list_cutoffs_and_hints()[0], dtype=np.double)
        self._fits = self._key is not None and self._influence <= self._reach and bool(
            np.all(self._cutoffs <= self._cutoffs_built))

    def _prepare(self, atoms: Atoms) -> None:
        """Padding atoms and neighbour list, rebuilt only for other atoms (compared byte
        for byte) or when the model now reaches past what they were built for: its
        influence distance or a neighbour-list cutoff beyond the built one plus the skin
        (a cutoff parameter's finite-difference step stays inside the skin)."""
        key = (atoms.positions.tobytes(), atoms.cell.array.tobytes(), atoms.pbc.tobytes(), atoms.numbers.tobytes())
        if self._fits and key == self._key:
            return
        kimpy = self._kimpy
        try:
            codes = np.array([self.codes[z] for z in atoms.numbers], dtype=np.intc)
        except KeyError as err:
            from ase.data import chemical_symbols

            allowed = sorted(chemical_symbols[z] for z in self.codes)
            raise InputError(f"atoms contain {chemical_symbols[err.args[0]]}, not in potential.species {allowed}") from None
        reach = self._influence + self.skin
        coords = np.ascontiguousarray(atoms.positions, dtype=np.double)
        n = len(atoms)
        if atoms.pbc.any():
            pad_coords, pad_codes, self._image_of = kimpy.neighlist.create_paddings(
                reach, np.asarray(atoms.cell, dtype=np.double), atoms.pbc.astype(np.intc), coords, codes)
            coords = np.concatenate([coords, pad_coords])
            codes = np.concatenate([codes, pad_codes]).astype(np.intc)
        else:
            self._image_of = np.zeros(0, dtype=np.intc)
        total = len(codes)
        self._n, self._coords, self._codes = np.array([total], dtype=np.intc), coords, codes
        self._contributing = (np.arange(total) < n).astype(np.intc)
        self._forces = np.zeros((total, 3))
        # padding atom i's force components go to row 3 * image_of[i] + c of the flat forces
        self._fold = (3 * np.asarray(self._image_of, dtype=np.intp)[:, None] + np.arange(3)).reshape(-1)
        self._neigh = kimpy.neighlist.NeighList()
        self._neigh.build(coords, reach, self._cutoffs + self.skin, self._contributing)
        name = kimpy.compute_argument_name
        for arg, array in [(name.numberOfParticles, self._n), (name.particleSpeciesCodes, self._codes),
                           (name.particleContributing, self._contributing), (name.coordinates, self._coords),
                           (name.partialEnergy, self._energy), (name.partialForces, self._forces)]:
            self.args.set_argument_pointer(arg, array)
        self.args.set_callback_pointer(kimpy.compute_callback_name.GetNeighborList,
                                       kimpy.neighlist.get_neigh_kim(), self._neigh)
        self._key, self._atoms_n = key, n
        self._reach, self._cutoffs_built, self._fits = reach, self._cutoffs + self.skin, True

    def compute(self, atoms: Atoms, quantity: str) -> np.ndarray:
        """``energy`` (1,), ``forces`` (3N,) or ``stress`` (6,) of ``atoms``, flattened."""
        self._prepare(atoms)
        want_virial = quantity == "stress"
        if want_virial and not atoms.pbc.all():
            raise InputError("stress needs a cell periodic in all three directions")
        if want_virial != self._virial_on:
            name = self._kimpy.compute_argument_name.partialVirial
            if want_virial:
                self.args.set_argument_pointer(name, self._virial)
            else:
                self.args.set_argument_null_pointer(name)
            self._virial_on = want_virial
        self.model.compute(self.args)
        if quantity == "energy":
            return self._energy.copy()
        if want_virial:
            return self._virial / atoms.get_volume()
        n = self._atoms_n
        forces = self._forces[:n].reshape(-1).copy()
        if len(self._fold):  # fold padding atoms' forces back onto their originals
            forces += np.bincount(self._fold, weights=self._forces[n:].reshape(-1), minlength=3 * n)
        return forces
