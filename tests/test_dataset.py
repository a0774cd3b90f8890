"""Reading, de-duplication, conflicts, required labels and the split."""

import ase.io
import numpy as np
import pytest
from conftest import labelled_si

from pipeline.atoms import dataset
from pipeline.atoms.dataset import Source, manifest, request
from pipeline.atoms.hashing import image_hash
from pipeline.core.errors import ConfigError, InputError, LabelConflictError


def write(path, frames, fmt="extxyz"):
    ase.io.write(path, frames, format=fmt)
    return str(path)


def test_duplicates_are_removed_with_their_sources(tmp_path):
    a, b, c = labelled_si(1), labelled_si(2), labelled_si(3, (2, 1, 1))
    p1 = write(tmp_path / "one.extxyz", [a, b, a])
    p2 = write(tmp_path / "two.traj", [c, b], fmt="traj")
    frames, sources = read_all([p1, p2])
    ds = dataset.deduplicate(frames, sources, "error")
    assert len(frames) == 5 and len(ds.images) == 3
    assert ds.hashes == tuple(image_hash(x) for x in (a, b, c))
    assert [[str(s) for s in g] for g in ds.sources] == [
        [f"{p1}@0", f"{p1}@2"], [f"{p1}@1", f"{p2}@1"], [f"{p2}@0"]]
    manifest = dataset.manifest(ds, ["train"] * 3)
    assert [d["removed"] for d in manifest["duplicates"]] == [[f"{p1}@2"], [f"{p2}@1"]]


def test_equal_structure_with_other_labels_is_a_conflict_naming_both(tmp_path):
    a, a2 = labelled_si(1), labelled_si(1, energy=0.5)
    path = write(tmp_path / "d.extxyz", [labelled_si(9), a, a2])
    frames, sources = read_all([path])
    with pytest.raises(LabelConflictError, match=rf"{path}@1 and {path}@2"):
        dataset.deduplicate(frames, sources, "error")
    ds = dataset.deduplicate(frames, sources, "drop")
    assert len(ds.images) == 1 and [str(s) for s in ds.conflicts[0][1]] == [f"{path}@1", f"{path}@2"]
    with pytest.raises(ConfigError, match=r"\['drop', 'error'\]"):
        dataset.deduplicate(frames, sources, "merge")


def test_labels_equal_within_extxyz_precision_are_duplicates(tmp_path):
    a = labelled_si(4)
    back = ase.io.read(write(tmp_path / "a.extxyz", a))
    ds = dataset.deduplicate([a, back], [dataset.Source("x", 0), dataset.Source("y", 0)], "error")
    assert len(ds.images) == 1


def test_missing_required_label_names_file_and_frame(tmp_path):
    frames = [labelled_si(1), labelled_si(2)]
    frames[1].calc = None
    path = write(tmp_path / "d.extxyz", frames)
    with pytest.raises(InputError, match=rf"{path}: frame 1: missing required label 'forces'"):
        read_all([path], require=["forces"])
    with pytest.raises(ConfigError, match="dataset.require"):
        read_all([path], require=["charge"])


def test_ase_db_and_globs(tmp_path):
    write(tmp_path / "a.db", [labelled_si(1), labelled_si(2)], fmt="db")
    write(tmp_path / "b.extxyz", [labelled_si(3)])
    frames, sources = read_all([str(tmp_path / "*")], require=["energy", "forces"])
    assert [s.path.rsplit("/", 1)[1] for s in sources] == ["a.db", "a.db", "b.extxyz"]
    with pytest.raises(InputError, match="matches no file"):
        read_all([str(tmp_path / "*.traj")])


@pytest.mark.parametrize("content,match", [
    (None, "no such file"),
    ("2\nProperties=species:S:1:pos:R:3\nSi 0 0 0\n", r"frame 0: cannot read"),
])
def test_missing_or_malformed_file(tmp_path, content, match):
    path = tmp_path / "bad.extxyz"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=rf"{path}: {match}"):
        read_all([str(path)])


def test_malformed_frame_is_named(tmp_path):
    path = tmp_path / "d.extxyz"
    write(path, [labelled_si(1), labelled_si(2), labelled_si(3)])
    lines = path.read_text().splitlines()
    lines[2 * 10 + 5] = "Si 1.0 not-a-number 2.0 0 0 0"  # an atom line of frame 2
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=rf"{path}: frame 2: cannot read as extxyz"):
        read_all([str(path)])


def test_unknown_suffix_and_empty_dataset(tmp_path):
    (tmp_path / "x.cif").write_text("")
    with pytest.raises(InputError, match=r"x.cif: expected a file ending in one of"):
        read_all([str(tmp_path / "x.cif")])
    (tmp_path / "empty.extxyz").write_text("")
    with pytest.raises(InputError, match="empty.extxyz: no frames"):
        read_all([str(tmp_path / "empty.extxyz")])


def test_split_is_deterministic_sized_and_stable_when_images_are_added():
    hashes = [f"v1-{i:040x}" for i in range(200)]
    test = dataset.split(hashes, 0.25, seed=7)
    assert sum(test) == 50 and test == dataset.split(list(hashes), 0.25, seed=7)
    assert test != dataset.split(hashes, 0.25, seed=8)
    grown = dataset.split(hashes + [f"v1-{i:040x}" for i in range(200, 204)], 0.25, seed=7)
    moved = sum(a != b for a, b in zip(test, grown[:200]))
    assert moved <= 4  # only as many as were added can take a test slot from an old image
    with pytest.raises(InputError, match=r"expected a value in \[0, 1\), got 1.0"):
        dataset.split(hashes, 1.0, seed=0)


def test_with_labels_copies_and_carries_labels():
    atoms = labelled_si(3)
    out = dataset.with_labels(atoms, {"image_hash": "v1-x"})
    assert out.info == {"image_hash": "v1-x"} and atoms.info == {}
    np.testing.assert_array_equal(out.get_forces(), atoms.get_forces())


def test_with_labels_keeps_other_info_and_per_atom_arrays(tmp_path):
    atoms = labelled_si(5)
    atoms.info["fim_quantity"] = "energy"
    atoms.arrays["mask"] = np.arange(8.0)
    back = ase.io.read(write(tmp_path / "m.extxyz", dataset.with_labels(atoms, {"image_hash": "v1-y"})))
    assert back.info["fim_quantity"] == "energy" and back.info["image_hash"] == "v1-y"
    np.testing.assert_array_equal(back.arrays["mask"], np.arange(8.0))
    np.testing.assert_allclose(back.get_forces(), atoms.get_forces(), atol=1e-8)


def test_copies_asking_for_other_candidates_are_rows_not_duplicates():
    base = labelled_si(5)
    copies = []
    for quantity, keep in [("energy", None), ("forces", None), ("forces", 3), ("forces", 3), ("energy", None)]:
        atoms = base.copy()
        atoms.calc = base.calc
        atoms.info["fim_quantity"] = quantity
        if keep is not None:
            atoms.arrays["keep"] = (np.arange(len(atoms)) < keep).astype(float)
        copies.append(atoms)
    sources = [Source("f.extxyz", i) for i in range(len(copies))]
    requests = [request(a, "fim_quantity", "keep") for a in copies]
    ds = dataset.deduplicate(copies, sources, "error", requests)
    assert len(ds.images) == 3 and ds.unique == 1 and len(set(ds.hashes)) == 1
    assert [[s.frame for s in group] for group in ds.sources] == [[0, 4], [1], [2, 3]]
    assert len(dataset.deduplicate(copies, sources, "error").images) == 1  # without requests: plain duplicates
    assert manifest(ds, ["train"] * 3)["images"][ds.hashes[0]]["rows"] == 3


def read_all(patterns, require=()):
    """Read with no root and no distance check: the checks these tests are about."""
    return dataset.read_all(patterns, require, None, 0.0)
