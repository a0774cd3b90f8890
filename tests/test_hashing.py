"""Identity rules of pipeline.atoms.hashing (README, 'Image identity')."""

import hashlib
from decimal import ROUND_HALF_EVEN, Decimal

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.atoms.hashing import image_hash, image_hashes, quantize
from pipeline.core.errors import InputError


def si(seed=0, repeat=(1, 1, 1)):
    atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=seed)
    return atoms


def round_trip(atoms, tmp_path, fmt="extxyz", suffix=".extxyz"):
    path = tmp_path / f"rt{suffix}"
    ase.io.write(path, atoms, format=fmt)
    return ase.io.read(path, format=fmt)


def test_quantize_equals_decimal_rounding_of_exact_binary_values():
    rng = np.random.default_rng(1)
    x = np.concatenate([
        rng.uniform(-100, 100, 2000),
        rng.uniform(-1e-6, 1e-6, 500),
        np.arange(-4096, 4096) / 512.0,  # exact ties of x * 1e8: j / 512 with j odd
        [0.0, -0.0, 5e-9, -5e-9, 1.5e-8, 2.5e-8, 999.999999995],
    ])
    expected = [int(Decimal(v).scaleb(8).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)) for v in x]
    assert quantize(x).tolist() == expected


def test_quantize_agrees_with_python_formatting():
    rng = np.random.default_rng(2)
    x = rng.uniform(-30, 30, 3000)
    printed = [int(("%.8f" % v).replace(".", "")) for v in x]
    assert quantize(x).tolist() == printed


def test_known_answer_from_the_documented_canonical_bytes():
    atoms = Atoms("SiC", positions=[[0.0, 0.1, 0.2], [1.0, -0.000000004, 2.123456789]],
                  cell=[[3.0, 0, 0], [0, 4.0, 0], [0.5, 0, 5.0]], pbc=[True, False, True])
    le = lambda values: np.array(values, dtype="<i8").tobytes()  # noqa: E731
    data = (b"atomsieve.image/v1;numbers:<i8:2;" + le([14, 6])
            + b"positions:<i8:2,3;" + le([0, 10000000, 20000000, 100000000, 0, 212345679])
            + b"cell:<i8:3,3;" + le([300000000, 0, 0, 0, 400000000, 0, 50000000, 0, 500000000])
            + b"pbc:<i8:3;" + le([1, 0, 1]))
    assert image_hash(atoms) == "v1-" + hashlib.blake2b(data, digest_size=20).hexdigest()


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-3, 1.0, 30.0, 1000.0]),
    pbc=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    ties=st.booleans(),
)
def test_extxyz_round_trip_keeps_identity(tmp_path_factory, n, seed, scale, pbc, ties):
    rng = np.random.default_rng(seed)
    positions = rng.uniform(-scale, scale, (n, 3))
    if ties:  # dyadic values whose decimal expansion ends in a 5 at the 9th place
        positions = np.round(positions * 512) / 512
    cell = np.diag(rng.uniform(2, 20, 3)) + rng.uniform(-1, 1, (3, 3))
    atoms = Atoms(numbers=rng.integers(1, 95, n), positions=positions, cell=cell, pbc=pbc)
    back = round_trip(atoms, tmp_path_factory.mktemp("rt"))
    assert image_hash(back) == image_hash(atoms)


@pytest.mark.parametrize("fmt,suffix", [("traj", ".traj"), ("db", ".db")])
def test_ase_formats_keep_identity(tmp_path, fmt, suffix):
    atoms = si(3, (2, 1, 1))
    assert image_hash(round_trip(atoms, tmp_path, fmt, suffix)) == image_hash(atoms)


def test_copy_and_negative_zero_keep_identity():
    atoms = Atoms("Si2", positions=[[0.0, 0.0, 0.0], [1.3, 1.3, 1.3]], cell=np.eye(3) * 5, pbc=True)
    flipped = atoms.copy()
    flipped.positions[0] = [-0.0, -0.0, -0.0]
    flipped.cell[0, 1] = -0.0
    assert image_hash(atoms.copy()) == image_hash(flipped) == image_hash(atoms)


@settings(max_examples=40, deadline=None)
@given(atom=st.integers(0, 7), axis=st.integers(0, 2), sign=st.sampled_from([-1, 1]),
       factor=st.sampled_from([1.0, 1.5, 10.0, 1e3]), seed=st.integers(0, 1000))
def test_any_move_of_a_micro_angstrom_changes_identity(atom, axis, sign, factor, seed):
    atoms = si(seed)
    moved = atoms.copy()
    moved.positions[atom, axis] += sign * 1e-6 * factor
    assert image_hash(moved) != image_hash(atoms)


@pytest.mark.parametrize("change", ["cell", "pbc", "species", "order"])
def test_structure_changes_change_identity(change):
    atoms = si(4)
    other = atoms.copy()
    if change == "cell":
        other.cell[2, 2] += 1e-6
    elif change == "pbc":
        other.pbc = [True, True, False]
    elif change == "species":
        other.numbers[5] = 6
    else:
        other = other[[1, 0] + list(range(2, len(other)))]
    assert image_hash(other) != image_hash(atoms)


def test_labels_are_not_identity():
    a, b = si(5), si(5)
    a.calc = SinglePointCalculator(a, energy=-1.0, forces=np.zeros((8, 3)))
    b.calc = SinglePointCalculator(b, energy=-2.0, forces=np.ones((8, 3)))
    assert image_hash(a) == image_hash(b)


def test_batched_equals_one_by_one():
    images = [si(s, r) for s, r in enumerate([(1, 1, 1), (2, 1, 1), (1, 1, 1), (2, 2, 1)])]
    assert image_hashes(images) == [image_hash(a) for a in images]
    assert len(set(image_hashes(images))) == 4


def test_hash_survives_extxyz_as_a_string(tmp_path):
    atoms = si(6)
    h = image_hash(atoms)
    atoms.info["image_hash"] = h
    assert round_trip(atoms, tmp_path).info["image_hash"] == h


@pytest.mark.parametrize("bad", [np.nan, np.inf, 2e9])
def test_non_finite_or_huge_positions_are_an_error(bad):
    atoms = si(7)
    atoms.positions[3, 1] = bad
    with pytest.raises(InputError, match="positions"):
        image_hash(atoms)
