"""Stage hash: outputs on the example, and bad input through the real command line."""

import json
import subprocess
import sys

import ase.io
import pytest
from conftest import ROOT, example_config, labelled_si

from pipeline.atoms.hashing import image_hash
from stages import hash as hash_stage
from stages.common import load_config


def config(tmp_path, paths, **dataset):
    overrides = [f"dataset.paths={json.dumps([str(p) for p in paths])}", f"dataset.root={tmp_path}"]
    overrides += [f"dataset.{k}={json.dumps(v)}" for k, v in dataset.items()]
    return load_config(ROOT / "params.yaml", overrides)


def test_example_outputs(tmp_path):
    cfg = example_config()
    result = hash_stage.run(cfg, tmp_path / "out")
    frames = ase.io.read(ROOT / "data/example/si_candidates.extxyz", ":")
    unique = {image_hash(a) for a in frames}
    # data/example/make_example.py: 33 distinct frames, then 3 exact copies
    assert result["counts"]["frames_read"] == len(frames) == 36
    assert result["counts"]["unique_images"] == len(unique) == 33
    assert result["counts"]["duplicates_removed"] == 3
    assert result["counts"]["train"] + result["counts"]["test"] == 33 and result["counts"]["test"] == round(0.2 * 33)
    images = ase.io.read(tmp_path / "out/images.extxyz", ":")
    assert [a.info["image_hash"] for a in images] == list(dict.fromkeys(image_hash(a) for a in frames))
    assert all(image_hash(a) == a.info["image_hash"] for a in images)  # the written file keeps identity
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert len(manifest["duplicates"]) == 3 and set(manifest["images"]) == unique
    assert {"read", "hash", "write", "total"} <= set(result["timings"])
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    assert metrics == {k: result["counts"][k] for k in hash_stage.HEADLINE}


def run_cli(tmp_path, paths, *extra):
    params = tmp_path / "params.yaml"
    cfg = config(tmp_path, paths)
    from omegaconf import OmegaConf

    OmegaConf.save(OmegaConf.structured(cfg), params)
    for e in extra:
        key, value = e.split("=", 1)
        data = OmegaConf.load(params)
        OmegaConf.update(data, key, json.loads(value))
        OmegaConf.save(data, params)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "stages.hash", "--params", str(params), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    return proc, out


def bad_extxyz(tmp_path):
    path = tmp_path / "bad.extxyz"
    ase.io.write(path, [labelled_si(1), labelled_si(2)])
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:13]) + "\nSi 0 0\n")  # frame 1 cut short
    return path, "frame 1: cannot read as extxyz"


def unlabelled(tmp_path):
    path = tmp_path / "nolabel.extxyz"
    frames = [labelled_si(1), labelled_si(2)]
    frames[1].calc = None
    ase.io.write(path, frames)
    return path, "frame 1: missing required label 'energy'"


def garbage_traj(tmp_path):
    path = tmp_path / "junk.traj"
    path.write_bytes(b"\x00\x01not a trajectory" * 10)
    return path, "frame 0: cannot read as traj"


@pytest.mark.parametrize("make", [
    lambda t: (t / "absent.extxyz", "no such file"),
    garbage_traj, bad_extxyz, unlabelled,
    lambda t: ((t / "empty.extxyz").write_text("") and None or t / "empty.extxyz", "empty.extxyz: no frames (an empty file)"),
    lambda t: (ROOT / "data/example/si_candidates.extxyz", "outside dataset.root"),
], ids=["missing", "unreadable", "malformed", "missing-label", "empty", "outside-root"])
def test_bad_input_exits_non_zero_naming_the_file_and_writes_nothing(tmp_path, make):
    path, message = make(tmp_path)
    proc, out = run_cli(tmp_path, [path], 'dataset.require=["energy", "forces"]')
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    assert str(path) in proc.stderr or "dataset.paths" in proc.stderr
    assert not out.exists()


def test_conflict_names_both_sources(tmp_path):
    a, b = labelled_si(3), labelled_si(3, energy=1.0)
    ase.io.write(tmp_path / "a.extxyz", a)
    ase.io.write(tmp_path / "b.extxyz", b)
    proc, out = run_cli(tmp_path, [tmp_path / "a.extxyz", tmp_path / "b.extxyz"])
    assert proc.returncode == 1 and f"{tmp_path}/a.extxyz@0 and {tmp_path}/b.extxyz@0" in proc.stderr
    assert not out.exists()
