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
    """Eigenvalues of each FIM (n, P, P), one column of points per candidate, log scale;
    one scatter for all, so the cost grows as n with a small constant."""
    floor = 1e-30
    with _axes(path, title) as ax:
        if len(fims):
            eig = np.clip(np.linalg.eigvalsh(np.asarray(fims)), floor, None)  # (n, P)
            x = np.repeat(np.arange(len(eig)), eig.shape[1])
            ax.scatter(x, eig.reshape(-1), s=10 if len(eig) < 500 else 1, marker="_", color="C0",
                       rasterized=True)
        ax.set_yscale("log")
        ax.set_xlabel("candidate (order of fims.npz)")
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
