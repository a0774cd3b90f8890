"""FIMs of information-matching's weather example, written as `atomsieve match` reads them.

NIST's ENSO model (StRD, nonlinear regression, 9 parameters) of monthly pressure
differences y(t) = θ1 + θ2 cos(2πt/12) + θ3 sin(2πt/12) + θ5 cos(2πt/θ4)
+ θ6 sin(2πt/θ4) + θ8 cos(2πt/θ7) + θ9 sin(2πt/θ7), t in months. Each of 14 years of
monthly data (σ = 1) is a candidate; the target is the 15th year's 12 months predicted to
σ = 2. The Jacobian is written by hand, at NIST's certified parameters.

    python docs/tutorials/enso_fims.py enso/
    atomsieve match --fims enso/years.npz --target enso/year_15.npy --out enso/match

gives the published weights (year_1 0.2090, year_3 0.0238, year_8 0.0861, year_10 0.0696,
year_11 0.4445, year_13 0.1195, year_14 0.3407).
"""

import sys
from pathlib import Path

import numpy as np

NIST_ENSO = np.array([1.0510749193e01, 3.0762128085e00, 5.3280138227e-01, 4.4311088700e01, -1.6231428586e00,
                      5.2554493756e-01, 2.6887614440e01, 2.1232288488e-01, 1.4966870418e00])  # certified b1..b9


def jacobian(theta: np.ndarray, t: np.ndarray) -> np.ndarray:
    """∂y/∂θ, (len(t), 9), at months ``t``."""
    t = np.asarray(t, dtype=float)
    a, b, c = 2 * np.pi * t / 12, 2 * np.pi * t / theta[3], 2 * np.pi * t / theta[6]
    d4 = 2 * np.pi * t / theta[3] ** 2 * (theta[4] * np.sin(b) - theta[5] * np.cos(b))
    d7 = 2 * np.pi * t / theta[6] ** 2 * (theta[7] * np.sin(c) - theta[8] * np.cos(c))
    return np.stack([np.ones_like(t), np.cos(a), np.sin(a), d4, np.cos(b), np.sin(b), d7, np.cos(c), np.sin(c)], 1)


def write(folder: Path) -> tuple[Path, Path]:
    """years.npz (ids, fims, labels) and year_15.npy in ``folder``; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    j = jacobian(NIST_ENSO, np.arange(1, 12 * 15 + 1))
    years = [j[12 * y:12 * y + 12] for y in range(14)]
    np.savez(folder / "years.npz", ids=np.array([f"year_{y + 1}" for y in range(14)]),
             fims=np.stack([block.T @ block for block in years]), labels=np.array([f"b{i + 1}" for i in range(9)]))
    np.save(folder / "year_15.npy", j[168:].T @ j[168:] / 2.0**2)
    return folder / "years.npz", folder / "year_15.npy"


if __name__ == "__main__":
    for path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "enso")):
        print(path)
