"""The bundled example: its shape, and labels equal to SW recomputed through kimpy."""

import ase.io
import numpy as np
from conftest import ROOT, kim_model_or_skip

from pipeline.atoms.hashing import image_hashes

MODEL = "SW_StillingerWeber_1985_Si__MO_405512056662_005"
FRAMES = ase.io.read(ROOT / "data/example/si_candidates.extxyz", ":")


def test_shape_of_the_example():
    assert 30 <= len(set(image_hashes(FRAMES))) <= 60
    assert len(FRAMES) - len(set(image_hashes(FRAMES))) >= 2  # exact duplicates to remove
    assert all(8 <= len(a) <= 64 and set(a.get_chemical_symbols()) == {"Si"} for a in FRAMES)


def test_labels_are_stillinger_weber():
    kim_model_or_skip(MODEL)
    from ase.calculators.kim import KIM

    calc = KIM(MODEL)
    for atoms in FRAMES[::5]:
        fresh = atoms.copy()
        fresh.calc = calc
        assert abs(fresh.get_potential_energy() - atoms.get_potential_energy()) < 1e-8 * len(atoms)
        # positions are stored to 5e-9 Å; force constants of tens of eV/Å² make that ~1e-7 eV/Å
        np.testing.assert_allclose(fresh.get_forces(), atoms.get_forces(), atol=1e-6)
