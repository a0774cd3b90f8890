"""PNG plots for DVC (matplotlib, Agg backend: no display, no CDN)."""

from pathlib import Path

import numpy as np


def eigenvalue_spectra(fims: np.ndarray, path: Path, title: str) -> None:
    """Eigenvalues of each FIM (n, P, P), one column of points per image, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    floor = 1e-30
    for i, fim in enumerate(fims):
        eig = np.clip(np.linalg.eigvalsh(fim), floor, None)
        ax.scatter(np.full(eig.size, i), eig, s=10, marker="_", color="C0")
    ax.set_yscale("log")
    ax.set_xlabel("image (order of images.extxyz)")
    ax.set_ylabel(f"FIM eigenvalue (clipped at {floor:g})")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def weights(values: np.ndarray, path: Path, title: str) -> None:
    """Bar chart of the selected images' weights (log scale), in image order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.bar(np.arange(len(values)), values, color="C1")
    ax.set_yscale("log")
    ax.set_xlabel("selected image (order of weights.json)")
    ax.set_ylabel("weight")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def histogram(values: np.ndarray, path: Path, xlabel: str, title: str) -> None:
    """Histogram of finite ``values`` (a count of infinite ones in the title)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = values[np.isfinite(values)]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.hist(finite, bins=60, color="C2")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("atoms")
    extra = f" ({len(values) - len(finite)} infinite, not shown)" if len(finite) < len(values) else ""
    ax.set_title(title + extra)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
