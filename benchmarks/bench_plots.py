"""The fim_train eigenvalue plot for 2,000 and 10,000 images, side by side with the
baseline it replaced (one matplotlib scatter call per image).

Run: .venv/bin/python benchmarks/bench_plots.py
"""

import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.core.plots import _axes, eigenvalue_spectra


def per_image_scatter(fims: np.ndarray, path: Path) -> None:
    """The baseline: what the plot did before, one scatter per image."""
    with _axes(path, "baseline") as ax:
        for i, fim in enumerate(fims):
            eig = np.clip(np.linalg.eigvalsh(fim), 1e-30, None)
            ax.scatter(np.full(eig.size, i), eig, s=10, marker="_", color="C0")
        ax.set_yscale("log")


def seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"{'images':>8} {'baseline s':>11} {'atomsieve s':>12} {'speed-up':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (2_000, 10_000):
            x = rng.normal(size=(n, 9, 3))
            fims = x @ x.transpose(0, 2, 1)
            base = seconds(per_image_scatter, fims, Path(tmp) / "b.png")
            ours = seconds(eigenvalue_spectra, fims, Path(tmp) / "a.png", "FIM eigenvalues")
            print(f"{n:>8} {base:>11.2f} {ours:>12.2f} {base / ours:>8.0f}x")


if __name__ == "__main__":
    main()
