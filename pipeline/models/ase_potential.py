"""Any ASE calculator as a potential, its parameters read and written by name.

Parameters are the calculator's numeric ``parameters`` (scalars have extent 1, arrays
their length); they are changed with ``calc.set(name=value)`` followed by
``calc.reset()``, since ``set`` alone keeps cached results. Units as ASE's: eV, Å; stress in eV/Å³, Voigt order.

No command from config: a file-based calculator (MOPAC, VASP, Gaussian, ...) runs the
command of ASE's own configuration (``~/.config/ase/config.ini`` or
``ASE_<NAME>_COMMAND``), never one from ``calculator_kwargs``: a key naming a command,
an executable, a profile or a script, at any depth, is refused, and so are the keys
that choose where it reads and writes files (``directory``, ``label``, ``restart``).
Every calculator runs in a temporary folder of its own, removed with it, never in the
project.
"""

import importlib
import shutil
import tempfile
import weakref

import numpy as np
from ase import Atoms

from pipeline.core.errors import ConfigError, InputError


def load_class(path: str):
    """The ASE calculator class named by ``module.Class``: importing the module runs it
    (as Hydra's ``_target_`` does), but nothing that is not an ASE calculator class is
    ever called."""
    from ase.calculators.calculator import BaseCalculator

    module, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"potential.calculator: cannot import {path!r}: {err}") from err
    if not (isinstance(found, type) and issubclass(found, BaseCalculator)):
        raise ConfigError(f"potential.calculator: expected an ASE calculator class (a subclass of "
                          f"ase.calculators.calculator.BaseCalculator), got {path!r}, a {type(found).__name__}")
    return found


COMMAND_WORDS = ("command", "cmd", "executable", "exe", "binary", "profile", "launcher", "script", "shell", "argv")
PLACES = ("directory", "label", "restart", "txt", "logfile")  # where a calculator reads or writes files


def check_kwargs(kwargs, where: str = "potential.calculator_kwargs") -> None:
    """Refuse every key of ``kwargs`` (at any depth) that would choose a command, an
    executable or the files a calculator reads and writes, naming it."""
    items = kwargs.items() if isinstance(kwargs, dict) else enumerate(kwargs) if isinstance(kwargs, list) else ()
    for key, value in items:
        name = str(key).lower()
        words = name.replace("-", "_").split("_")
        if any(w in COMMAND_WORDS for w in words) or "command" in name:
            raise ConfigError(f"{where}.{key}: refused: a calculator's command comes only from ASE's own "
                              "configuration (~/.config/ase/config.ini, or the ASE_<NAME>_COMMAND environment "
                              "variable), never from atomsieve's config, which experiments and sweeps share")
        if where == "potential.calculator_kwargs" and name in PLACES:
            raise ConfigError(f"{where}.{key}: refused: atomsieve runs the calculator in a temporary folder of its "
                              "own, and reads or writes no file a config names")
        check_kwargs(value, f"{where}.{key}")


class ASEPotential:
    """An ASE calculator class given by import path, created once with ``kwargs``, in a
    temporary folder of its own (removed when the potential is)."""

    def __init__(self, calculator: str, kwargs: dict):
        check_kwargs(kwargs)
        cls = load_class(calculator)
        self.scratch = tempfile.mkdtemp(prefix="atomsieve-calculator-")
        weakref.finalize(self, shutil.rmtree, self.scratch, True)
        try:
            try:
                self.calc = cls(**kwargs, directory=self.scratch)
            except TypeError as err:
                if "directory" not in str(err):
                    raise
                self.calc = cls(**kwargs)  # not a file-based calculator: nothing to put in a folder
        except TypeError as err:
            raise ConfigError(f"potential.calculator_kwargs: {calculator} refused {kwargs}: {err}") from err
        self.name = calculator
        self._class = type(self.calc)
        self.defaults = {(n, k): self.get(n, k) for n, extent in self.parameter_extents().items() for k in range(extent)}

    def identity(self) -> dict[str, str]:
        """The calculator's outside identity, for store keys: ASE's version and a digest
        of the source file that defines the class."""
        import inspect

        from pipeline.core.code_identity import file_digest, versions

        try:
            source = file_digest(inspect.getfile(self._class))
        except (TypeError, OSError):  # a class without a source file (a compiled extension)
            source = "unknown"
        return {**versions("ase"), "calculator_source": source}

    def parameter_extents(self) -> dict[str, int]:
        out = {}
        for name, value in self.calc.parameters.items():
            arr = np.asarray(value) if value is not None else np.array("")
            if arr.dtype.kind in "if" and arr.ndim <= 1 and (arr.ndim == 0 or arr.size):
                out[name] = max(arr.size, 1) if arr.ndim else 1
        return out

    def get(self, name: str, extent: int) -> float:
        value = np.asarray(self.calc.parameters[name], dtype=float)
        return float(value if value.ndim == 0 else value[extent])

    def set(self, assignments) -> None:
        changes: dict = {}
        for name, extent, value in assignments:
            current = changes.get(name, self.calc.parameters[name])
            if np.ndim(current) == 0:
                changes[name] = float(value)
            else:
                arr = np.array(current, dtype=float)
                arr[extent] = value
                changes[name] = arr
        if self.calc.set(**changes):
            self.calc.reset()  # Calculator.set keeps cached results unless told otherwise

    def compute(self, atoms: Atoms, quantity: str) -> np.ndarray:
        """``energy`` (1,), ``forces`` (3N,) or ``stress`` (6,) of ``atoms``, flattened."""
        work = atoms.copy()
        work.calc = self.calc
        if quantity == "energy":
            return np.array([work.get_potential_energy()])
        if quantity == "forces":
            return work.get_forces().reshape(-1)
        if not atoms.pbc.all():
            raise InputError("stress needs a cell periodic in all three directions")
        return np.asarray(work.get_stress(voigt=True))
