"""LAMMPS (with its KIM package) as a second route to cubic-crystal properties.

A cross-check of :mod:`pipeline.models.properties` by other means: the lattice constant from
LAMMPS' box relaxation (``fix box/relax``, repeated until the minimiser stops moving),
the elastic constants from finite strains (``change_box``) with positions relaxed by
``minimize`` and the pressure tensor read back. Parameters are set with ``kim param
set``; no model is compiled. Needs the ``lmp`` command (Debian: ``apt-get install
lammps``); units metal (Å, eV, bar).
"""

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from pipeline.core.errors import BackendMissing, ConfigError, InputError

INSTALL_HINT = "apt-get install lammps (Debian's build has the KIM package)"
BAR_PER_GPA = 1e4
STRAIN = 1e-4

HEADER = """kim init {model} metal
boundary p p p
{structure}
kim interactions {species}
mass 1 1.0
{params}
thermo_style custom step pe lx pxx pyy pzz pyz
thermo_modify format float %.17g
min_modify line quadratic
"""

RELAX = """fix relax all box/relax iso 0.0 vmax 0.0001
label loop
variable i loop 40
minimize 0 1e-10 1000 10000
next i
jump SELF loop
unfix relax
run 0
variable a0 equal lx/{cells}
variable e equal pe/atoms
print "a0 ${{a0}} ${{e}}" append {out} screen no
write_data {data}
clear
"""

STRAINED = """{deform}
minimize 0 1e-10 1000 10000
run 0
variable xx equal pxx
variable yy equal pyy
variable yz equal pyz
print "{name} ${{xx}} ${{yy}} ${{yz}}" append {out} screen no
clear
"""

CASES = {"xx+": "change_box all x scale {p} remap", "xx-": "change_box all x scale {m} remap",
         "yz+": "change_box all yz delta {dp} remap", "yz-": "change_box all yz delta {dm} remap"}


def lmp(executable: str | None = None) -> str:
    """The LAMMPS executable: ``executable`` (``target.lammps.executable``: a path, or a
    command on PATH), checked to be LAMMPS with its KIM package, else ``lmp`` or
    ``lmp_serial`` on PATH."""
    if executable is None:
        path = shutil.which("lmp") or shutil.which("lmp_serial")
        if path is None:
            raise BackendMissing(f"backend lammps needs the lmp command: {INSTALL_HINT}")
        return path
    return check_executable(executable)


def check_executable(executable: str) -> str:
    """The full path of ``executable`` if it is a LAMMPS with the KIM package (its ``-h``
    says so); :class:`ConfigError` naming what it is otherwise."""
    path = shutil.which(executable)
    if path is None:
        raise ConfigError(f"target.lammps.executable: expected an executable file (a path, or a command on PATH), "
                          f"got {executable!r}, which is not one")
    try:
        proc = subprocess.run([path, "-h"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ConfigError(f"target.lammps.executable: {path} does not run as LAMMPS (`{path} -h`: {err})") from None
    text = proc.stdout + proc.stderr
    if "Large-scale Atomic/Molecular Massively Parallel Simulator" not in text:
        raise ConfigError(f"target.lammps.executable: expected LAMMPS, got {path}, whose -h does not say it is LAMMPS")
    packages = text.split("Installed packages:", 1)[1].split("List of", 1)[0].split() if "Installed packages:" in text \
        else []
    if "KIM" not in packages:
        raise ConfigError(f"target.lammps.executable: {path} is LAMMPS without its KIM package (installed: "
                          f"{' '.join(packages) or 'none listed'}); atomsieve runs KIM models in it")
    return path


NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # a KIM model or parameter name: nothing a LAMMPS script could run
LATTICES = ("diamond", "fcc", "bcc")


def _word(value, what: str, allowed=None, expected: str | None = None) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value) or (allowed is not None and value not in allowed):
        expected = expected or (f"one of {list(allowed)}" if allowed is not None else "a name of letters, digits and _")
        raise InputError(f"backend lammps: {what}: expected {expected}, got {value!r}")
    return value


def _number(value, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not np.isfinite(value):
        raise InputError(f"backend lammps: {what}: expected a finite number, got {value!r}")
    return repr(float(value))


def script(model: str, species: str, lattice: str, a: float, params: dict, out: Path, data: Path) -> str:
    """One LAMMPS input: relax the box, then four strained, position-relaxed cells.

    Every value written into it is checked first (names against a strict pattern, the
    species against ASE's element table, numbers as finite floats), so no config value
    can add a command to the script."""
    from ase.data import chemical_symbols

    model, lattice = _word(model, "kim_id"), _word(lattice, "lattice", LATTICES)
    species = _word(species, "species", chemical_symbols[1:], "an element symbol (H ... Og)")
    a = _number(a, "a_guess")
    sets = "\n".join(f"kim param set {_word(name, 'parameter')} {int(k) + 1} {_number(value, name)}"
                     for (name, k), value in params.items())
    fresh = f"lattice {lattice} {a}\nregion box prism 0 1 0 1 0 1 0 0 0 units lattice\n" \
            "create_box 1 box\ncreate_atoms 1 box"
    text = HEADER.format(model=model, structure=fresh, species=species, params=sets)
    text += RELAX.format(cells=1, out=out, data=data)
    for name, deform in CASES.items():
        text += HEADER.format(model=model, structure=f"read_data {data}", species=species, params=sets)
        text += "variable lz0 equal lz\n"
        text += STRAINED.format(name=name, out=out, deform=deform.format(
            p=1 + STRAIN, m=1 - STRAIN, dp=f"$({STRAIN}*v_lz0)", dm=f"$({-STRAIN}*v_lz0)"))
    return text


def cubic_properties(model: str, species: str, lattice: str, a_guess: float, params: dict,
                     executable: str | None = None) -> dict:
    """``{"a0": Å, "e_coh": eV/atom, "C11", "C12", "C44": GPa (relaxed)}`` from LAMMPS
    (``executable``: see :func:`lmp`)."""
    with tempfile.TemporaryDirectory(prefix="atomsieve-lammps-") as tmp:
        tmp = Path(tmp)
        out = tmp / "results.txt"
        (tmp / "in.atomsieve").write_text(script(model, species, lattice, a_guess, params, out, tmp / "eq.data"))
        proc = subprocess.run([lmp(executable), "-in", "in.atomsieve", "-log", "log.lammps", "-screen", "none"],
                              cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            log = (tmp / "log.lammps").read_text() if (tmp / "log.lammps").exists() else proc.stderr
            errors = [line for line in log.splitlines() if "ERROR" in line] or log.splitlines()[-3:]
            raise InputError(f"LAMMPS failed for {model} ({species} {lattice}): {' | '.join(errors)}")
        rows = {line.split()[0]: np.array(line.split()[1:], dtype=float) for line in out.read_text().splitlines()}
    xx = (rows["xx+"] - rows["xx-"]) / (2 * STRAIN * BAR_PER_GPA)
    yz = (rows["yz+"] - rows["yz-"]) / (2 * STRAIN * BAR_PER_GPA)
    return {"a0": rows["a0"][0], "e_coh": rows["a0"][1], "C11": -xx[0], "C12": -xx[1], "C44": -yz[2]}
