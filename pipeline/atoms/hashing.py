"""Content identity of an atomic configuration.

An image's identity is its structure: atomic numbers, positions, cell and periodic
boundary conditions, in that atom order. Labels (energy, forces, stress) are not part
of it. Positions and cell are quantised to :data:`QUANTUM` (1e-8 Å, the grid extxyz
writes positions on) by exact round-half-even of their binary values, which is what
Python's ``'%.8f'`` formatting does; so an extxyz write/read round trip, a copy, or a
``-0.0`` leaves the identity unchanged, while moving any atom by 1e-6 Å changes it.

The hashed bytes are canonical: a version tag, then for each field its name, dtype and
shape, then its little-endian int64 values.
"""

import hashlib
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np
from ase import Atoms

from pipeline.core.errors import InputError

HASH_VERSION = "v1"
QUANTUM = 1e-8  # Å
_SCALE = 1e8  # 1 / QUANTUM
_LIMIT = 1e9  # Å; keeps the quantised values far inside int64


def _exact(v: float) -> int:
    return int(Decimal(v).scaleb(8).to_integral_value(rounding=ROUND_HALF_EVEN))


def quantize(x: np.ndarray) -> np.ndarray:
    """Exact round-half-even of ``x / QUANTUM`` as int64, shaped like ``x``.

    This is the integer that ``'%.8f' % v`` prints. The float product ``v * 1e8`` is
    within half a unit in the last place of the exact one, so ``rint`` of it is exact
    unless its fractional part lies within one ulp of 1/2; those few values are
    rounded from their exact decimal expansion instead.
    """
    x = np.asarray(x, dtype=np.float64)
    y = x * _SCALE
    out = np.rint(y).astype(np.int64)
    near_tie = np.abs((y - np.floor(y)) - 0.5) <= np.spacing(np.abs(y))
    for i in np.flatnonzero(near_tie):
        out.flat[i] = _exact(float(x.flat[i]))
    return out


def _field_header(name: str, shape: tuple) -> bytes:
    return f"{name}:<i8:{','.join(map(str, shape))};".encode()


def _headers(n_atoms: int) -> tuple[bytes, bytes, bytes, bytes]:
    return (
        f"atomsieve.image/{HASH_VERSION};".encode() + _field_header("numbers", (n_atoms,)),
        _field_header("positions", (n_atoms, 3)),
        _field_header("cell", (3, 3)),
        _field_header("pbc", (3,)),
    )


def _check_finite(arrays: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(arrays) | (np.abs(arrays) >= _LIMIT)
    if bad.any():
        raise InputError(
            f"{what}: expected finite values below {_LIMIT:g} Å in magnitude, "
            f"got {arrays[bad][0]!r}"
        )


def image_hashes(images: Sequence[Atoms]) -> list[str]:
    """Identity of each image, as ``'v1-'`` followed by 40 hex digits.

    All images are quantised in one vectorised pass; only the digest is per image.
    """
    if not images:
        return []
    counts = np.array([len(a) for a in images])
    positions = np.concatenate([a.positions for a in images]).reshape(-1)
    cells = np.stack([a.cell.array for a in images]).reshape(-1)
    _check_finite(positions, "positions")
    _check_finite(cells, "cell")
    numbers = np.concatenate([a.numbers for a in images]).astype("<i8").tobytes()
    qpos = quantize(positions).astype("<i8", copy=False).tobytes()
    qcell = quantize(cells).astype("<i8", copy=False).tobytes()
    pbc = np.stack([a.pbc for a in images]).astype("<i8").tobytes()
    starts = np.concatenate([[0], np.cumsum(counts)]) * 8
    headers: dict[int, tuple] = {}
    out = []
    for i, n in enumerate(counts.tolist()):
        h0, h1, h2, h3 = headers.get(n) or headers.setdefault(n, _headers(n))
        s, e = int(starts[i]), int(starts[i + 1])
        digest = hashlib.blake2b(h0, digest_size=20)
        digest.update(numbers[s:e])
        digest.update(h1)
        digest.update(qpos[3 * s:3 * e])
        digest.update(h2)
        digest.update(qcell[72 * i:72 * (i + 1)])
        digest.update(h3)
        digest.update(pbc[24 * i:24 * (i + 1)])
        out.append(f"{HASH_VERSION}-{digest.hexdigest()}")
    return out


def image_hash(atoms: Atoms) -> str:
    """Identity of one image; see :func:`image_hashes`."""
    return image_hashes([atoms])[0]
