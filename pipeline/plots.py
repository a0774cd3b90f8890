"""PNG plots for DVC (matplotlib, Agg backend: no display, no CDN)."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def _axes(path: Path, title: str) -> Iterator:
    """Axes of a 7×4 in figure, titled and written to ``path`` as PNG on exit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    try:
        yield ax
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def eigenvalue_spectra(fims: np.ndarray, path: Path, title: str) -> None:
    """Eigenvalues of each FIM (n, P, P), one column of points per image, log scale."""
    floor = 1e-30
    with _axes(path, title) as ax:
        for i, fim in enumerate(fims):
            eig = np.clip(np.linalg.eigvalsh(fim), floor, None)
            ax.scatter(np.full(eig.size, i), eig, s=10, marker="_", color="C0")
        ax.set_yscale("log")
        ax.set_xlabel("image (order of images.extxyz)")
        ax.set_ylabel(f"FIM eigenvalue (clipped at {floor:g})")


def weights(values: np.ndarray, path: Path, title: str) -> None:
    """Bar chart of the selected images' weights (log scale), in image order."""
    with _axes(path, title) as ax:
        ax.bar(np.arange(len(values)), values, color="C1")
        ax.set_yscale("log")
        ax.set_xlabel("selected image (order of weights.json)")
        ax.set_ylabel("weight")


def histogram(values: np.ndarray, path: Path, xlabel: str, title: str) -> None:
    """Histogram of finite ``values`` (a count of infinite ones in the title)."""
    finite = values[np.isfinite(values)]
    extra = f" ({len(values) - len(finite)} infinite, not shown)" if len(finite) < len(values) else ""
    with _axes(path, title + extra) as ax:
        ax.hist(finite, bins=60, color="C2")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("atoms")
