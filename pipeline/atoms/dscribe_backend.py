"""SOAP and ACSF per-atom descriptors through dscribe, imported lazily.

Each function takes one frame and the descriptor's settings (those of
``descriptors.soap`` / ``descriptors.acsf``, stages/schema.py) and returns dscribe's
dense float64 features, (N, d), in dscribe's units (SOAP: its normalised power
spectrum; ACSF: G1..G5 sums, radii in Å). Every element of a frame must be in
``species``: the feature layout depends on that list.
"""

import json
from functools import lru_cache

import numpy as np
from ase import Atoms

from pipeline.core.errors import BackendMissing, ConfigError, InputError

RBFS = ("gto", "polynomial")


def _dscribe():
    try:
        from dscribe import descriptors
    except ImportError as err:
        raise BackendMissing("descriptors.name=soap|acsf needs dscribe: pip install 'atomsieve[dscribe]'") from err
    return descriptors


@lru_cache(maxsize=8)
def _make(name: str, settings_json: str):
    settings = json.loads(settings_json)
    if not settings["species"]:
        raise ConfigError(f"descriptors.{name}.species: expected the chemical symbols of every element in the data "
                          "(they fix the feature layout), got []")
    if not settings["r_cut"] > 0:
        raise ConfigError(f"descriptors.{name}.r_cut: expected a cutoff > 0 Å, got {settings['r_cut']}")
    cls = {"soap": "SOAP", "acsf": "ACSF"}[name]
    try:
        if name == "soap":
            if settings["rbf"] not in RBFS:
                raise ConfigError(f"descriptors.soap.rbf: expected one of {list(RBFS)}, got {settings['rbf']!r}")
            return getattr(_dscribe(), cls)(dtype="float64", sparse=False, **settings)
        params = {k: (v or None) for k, v in settings.items() if k.startswith("g")}  # dscribe: None, not []
        return getattr(_dscribe(), cls)(species=settings["species"], r_cut=settings["r_cut"],
                                        periodic=settings["periodic"], dtype="float64", sparse=False, **params)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"descriptors.{name}: dscribe refuses the settings {settings}: {err}") from err


def check(name: str, settings: dict) -> None:
    """Raise :class:`ConfigError` if dscribe refuses the settings of ``name`` (soap | acsf)."""
    _make(name, json.dumps(settings, sort_keys=True))


def _create(name: str, settings: dict, atoms: Atoms) -> np.ndarray:
    unknown = sorted(set(atoms.get_chemical_symbols()) - set(settings["species"]))
    if unknown:
        raise InputError(f"descriptors.{name}.species: the frame ({atoms.get_chemical_formula()}) holds {unknown}, "
                         f"not in {settings['species']}")
    descriptor = _make(name, json.dumps(settings, sort_keys=True))
    try:
        out = descriptor.create(atoms)
    except (ValueError, RuntimeError) as err:
        raise InputError(f"descriptors.{name}: dscribe cannot describe {atoms.get_chemical_formula()}: {err}") from err
    return np.asarray(out, dtype=np.float64).reshape(len(atoms), -1)


def soap(atoms: Atoms, species, r_cut, n_max, l_max, sigma, rbf, periodic) -> np.ndarray:
    """dscribe's SOAP of every atom, (N, d)."""
    return _create("soap", {"species": list(species), "r_cut": r_cut, "n_max": n_max, "l_max": l_max,
                            "sigma": sigma, "rbf": rbf, "periodic": periodic}, atoms)


def acsf(atoms: Atoms, species, r_cut, g2_params, g3_params, g4_params, g5_params, periodic) -> np.ndarray:
    """dscribe's ACSF of every atom, (N, d)."""
    return _create("acsf", {"species": list(species), "r_cut": r_cut, "g2_params": g2_params, "g3_params": g3_params,
                            "g4_params": g4_params, "g5_params": g5_params, "periodic": periodic}, atoms)
