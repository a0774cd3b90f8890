"""Make the LTAU example: a real training trajectory's per-atom force errors.

    python data/example/make_ltau_example.py

Fits the Stillinger-Weber parameters A, B and lambda to the forces of 20 frames of
si_candidates.extxyz (every other unique frame), starting 15 % away from the model's
values, with scipy's least_squares; after every evaluation of the residuals the force
error of every atom is recorded. Writes ltau_train.extxyz (the training frames, whose
atoms are the error log's columns, in order) and ltau_errors.npy ((T, N, 3), eV/Å,
float32).
"""

from pathlib import Path

import ase.io
import numpy as np
from scipy.optimize import least_squares

from pipeline.atoms.hashing import image_hashes
from pipeline.models.potential import PotentialSpec, make_potential

HERE = Path(__file__).parent
MODEL = "SW_StillingerWeber_1985_Si__MO_405512056662_005"
NAMES = ("A", "B", "lambda")


def main() -> None:
    frames = ase.io.read(HERE / "si_candidates.extxyz", ":")
    unique = list({h: a for h, a in zip(image_hashes(frames), frames)}.values())[::2]
    pot = make_potential(PotentialSpec("kim", MODEL, ("Si",), None, "{}", 0.5))
    target = np.concatenate([a.get_forces().reshape(-1) for a in unique])
    start = np.array([pot.defaults[n, 0] for n in NAMES]) * np.array([1.15, 0.85, 1.15])
    log = []

    def residuals(theta):
        pot.set(zip(NAMES, (0, 0, 0), theta))
        err = np.concatenate([pot.compute(a, "forces") for a in unique]) - target
        log.append(err.reshape(-1, 3).astype(np.float32))
        return err

    least_squares(residuals, start, x_scale=start, xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=60)
    ase.io.write(HERE / "ltau_train.extxyz", unique, format="extxyz")
    np.save(HERE / "ltau_errors.npy", np.stack(log))


if __name__ == "__main__":
    main()
