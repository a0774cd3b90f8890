"""Writing extxyz without losing digits.

ASE writes every float column of an extxyz with ``'%16.8f'``: eight decimals, fixed.
That is the grid image identities live on (:mod:`pipeline.atoms.hashing`), so
positions stay on it; but for any other per-atom array it throws digits away: a
descriptor of 1.2e-7 is written as 0.00000012, a force uncertainty of 3e-10 as 0.
:func:`write` writes positions as ASE does and every other float column with
``'%.17g'``, which a float64 survives exactly. The per-frame info is unaffected (ASE
writes its floats with ``repr``).
"""

import re
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

ASE_FLOAT = "%16.8f"
EXACT_FLOAT = "%.17g"
GRID_COLUMNS = ("positions",)  # kept on ASE's 1e-8 grid: the image identity's grid
_LOCK = threading.Lock()


def _exact_format(original):
    def column_format(atoms, columns, arrays, write_info=True):
        comment, ncols, dtype, fmt = original(atoms, columns, arrays, write_info)
        parts = fmt.rstrip("\n").split(" ")
        if len(parts) != sum(ncols) or any(p != ASE_FLOAT for p, name in _column_of(columns, ncols, parts)
                                           if arrays[name].dtype.kind in "fd"):
            raise RuntimeError(f"ASE's extxyz writer changed its column formats ({fmt!r}); "
                               "pipeline/core/extxyz.py must follow it")
        exact = [EXACT_FLOAT if arrays[name].dtype.kind in "fd" and name not in GRID_COLUMNS else p
                 for p, name in _column_of(columns, ncols, parts)]
        return comment, ncols, dtype, " ".join(exact) + "\n"

    return column_format


def _column_of(columns, ncols, parts):
    names = [name for name, n in zip(columns, ncols) for _ in range(n)]
    return list(zip(parts, names))


def write(path: Path | str, frames: Sequence[Atoms]) -> None:
    """Write ``frames`` to ``path`` as extxyz, float columns other than positions exact."""
    import ase.io
    import ase.io.extxyz as extxyz

    with _LOCK:
        original = extxyz.output_column_format
        extxyz.output_column_format = _exact_format(original)
        try:
            ase.io.write(path, list(frames), format="extxyz")
        finally:
            extxyz.output_column_format = original


def frame_texts(path: Path | str) -> list[str]:
    """The text of every frame of an extxyz file, as it is written: the atom-count line,
    the comment line and the atom lines. ``InputError`` where a frame is not whole."""
    from pipeline.core.errors import InputError

    lines = Path(path).read_text().splitlines(keepends=True)
    out, i = [], 0
    while i < len(lines):
        if not lines[i].strip():  # blank lines between or after frames
            i += 1
            continue
        try:
            n = int(lines[i])
        except ValueError:
            raise InputError(f"{path}: line {i + 1}: expected the atom count of frame {len(out)}, "
                             f"got {lines[i].strip()[:60]!r}") from None
        if n < 0 or i + 2 + n > len(lines):
            raise InputError(f"{path}: frame {len(out)} (line {i + 1}): expected {n} atom lines after its comment, "
                             f"got {max(len(lines) - i - 2, 0)}")
        out.append("".join(lines[i:i + 2 + n]))
        i += 2 + n
    return out


def with_info(text: str, info: dict) -> str:
    """One frame's text (from :func:`frame_texts`) with ``info`` added to its comment
    line, each value written as ASE writes it; a key the line has already is replaced.
    The atom lines are kept as they are: nothing is parsed or re-formatted."""
    from ase.io.extxyz import key_val_dict_to_str, key_val_str_to_dict

    count, comment, rest = text.split("\n", 2)
    if any(re.search(rf'(^|\s)"?{re.escape(key)}"?=', comment) for key in info):  # there already: replace it
        parsed = key_val_str_to_dict(comment)
        if isinstance(parsed.get("pbc"), list):  # as ASE writes a cell's pbc: "T T T"
            parsed["pbc"] = np.array(parsed["pbc"], dtype=bool)
        comment = key_val_dict_to_str({**{k: v for k, v in parsed.items() if k not in info}, **info})
    else:
        comment = f"{comment} {key_val_dict_to_str(info)}"
    return f"{count}\n{comment}\n{rest}"
