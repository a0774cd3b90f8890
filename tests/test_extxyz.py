"""pipeline.core.extxyz: frames split as written, info added to a frame's comment line
without re-formatting its atoms; read back by ASE, the same as ASE writing the frame
with that info."""

import ase.io
import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from pipeline.core import extxyz
from pipeline.core.errors import InputError


def labelled_frames():
    rng = np.random.default_rng(3)
    si = bulk("Si", "diamond", a=5.43, cubic=True)
    si.rattle(0.05, seed=1)
    si.info.update(image_hash="v1-abc", split="train", weight=0.5, tags="a b", source="si_candidates.extxyz@0")
    si.arrays["keep"] = rng.random(len(si))
    si.calc = SinglePointCalculator(si, energy=-37.1, forces=rng.normal(size=(len(si), 3)))
    water = molecule("H2O")  # no cell, no pbc, no labels
    water.info["image_hash"] = "v1-def"
    return [si, water]


def assert_same_frames(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.get_chemical_symbols() == b.get_chemical_symbols()
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.cell.array, b.cell.array)
        np.testing.assert_array_equal(a.pbc, b.pbc)
        assert sorted(a.info) == sorted(b.info)
        for key, value in b.info.items():
            np.testing.assert_array_equal(a.info[key], value, err_msg=key)
        assert sorted(a.arrays) == sorted(b.arrays)
        for key, value in b.arrays.items():
            np.testing.assert_array_equal(a.arrays[key], value, err_msg=key)
        assert (a.calc is None) == (b.calc is None)
        if a.calc is not None:
            assert a.calc.results.keys() == b.calc.results.keys()
            for key, value in b.calc.results.items():
                np.testing.assert_array_equal(a.calc.results[key], value, err_msg=key)


@pytest.mark.parametrize("replace", [False, True], ids=["added", "replacing a key the line has"])
def test_info_added_to_the_text_reads_back_as_ase_writes_it(tmp_path, replace):
    frames = labelled_frames()
    if replace:
        for atoms in frames:
            atoms.info["fim_quantity"] = "stale"
    src = tmp_path / "in.extxyz"
    ase.io.write(src, frames, format="extxyz")
    fim = np.array([[1.25, -3e-17], [-3e-17, 7.0e12]])
    added = [{"candidate": f"{a.info['image_hash']}:forces", "fim_quantity": "forces", "fim_parameters": "A:0,B:0",
              "fim_training_set_score": fim * (i + 1)} for i, a in enumerate(frames)]
    texts = extxyz.frame_texts(src)
    (tmp_path / "spliced.extxyz").write_text("".join(extxyz.with_info(t, info) for t, info in zip(texts, added)))

    expected = ase.io.read(src, ":")  # what ASE writes of the same frames with that info
    for atoms, info in zip(expected, added):
        atoms.info.update(info)
    ase.io.write(tmp_path / "ase.extxyz", expected, format="extxyz")
    got = ase.io.read(tmp_path / "spliced.extxyz", ":")
    assert_same_frames(got, ase.io.read(tmp_path / "ase.extxyz", ":"))
    assert got[1].info["fim_training_set_score"].tolist() == (2 * fim).tolist()  # every digit
    for text in extxyz.frame_texts(tmp_path / "spliced.extxyz"):  # each key once (ASE would take either)
        comment = text.split("\n")[1]
        assert [comment.count(f"{key}=") for key in added[0]] == [1, 1, 1, 1], comment
        assert "_JSON [true" not in comment  # pbc as ASE writes it
    # the atom lines are the input's, byte for byte
    assert [t.split("\n", 2)[2] for t in extxyz.frame_texts(tmp_path / "spliced.extxyz")] == \
        [t.split("\n", 2)[2] for t in texts]


def test_frames_that_are_not_whole_are_refused(tmp_path):
    path = tmp_path / "cut.extxyz"
    ase.io.write(path, labelled_frames(), format="extxyz")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))
    with pytest.raises(InputError, match=r"cut.extxyz: frame 1 \(line 11\): expected 3 atom lines after its "
                                         r"comment, got 2"):
        extxyz.frame_texts(path)
    path.write_text("".join(lines[:10]) + "x\n")
    with pytest.raises(InputError, match=r"line 11: expected the atom count of frame 1, got 'x'"):
        extxyz.frame_texts(path)
