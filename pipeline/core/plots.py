"""PNG plots for DVC (matplotlib, Agg backend: no display, no CDN)."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def _axes(path: Path, title: str, size: tuple[float, float] = (7, 4)) -> Iterator:
    """Axes of a figure of ``size`` inches (7×4), titled and written to ``path`` as PNG on exit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=120)
    try:
        yield ax
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


FLOOR = 1e-30  # eigenvalues are drawn clipped here, so that zeros show on a log axis


def _eigenvalue_points(fims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (the FIM's index) and y (its eigenvalues, clipped at FLOOR) of every eigenvalue of
    ``fims`` (n, P, P), P points per FIM."""
    eig = np.clip(np.linalg.eigvalsh(np.asarray(fims)), FLOOR, None)  # (n, P)
    return np.repeat(np.arange(len(eig)), eig.shape[1]), eig.reshape(-1)


def eigenvalue_spectra(fims: np.ndarray, path: Path, title: str) -> None:
    """Eigenvalues of each FIM (n, P, P), one column of points per candidate, log scale;
    one scatter for all, so the cost grows as n with a small constant."""
    with _axes(path, title) as ax:
        if len(fims):
            x, y = _eigenvalue_points(fims)
            ax.scatter(x, y, s=10 if len(fims) < 500 else 1, marker="_", color="C0", rasterized=True)
        ax.set_yscale("log")
        ax.set_xlabel("candidate (order of fims.npz)")
        ax.set_ylabel(f"FIM eigenvalue (clipped at {FLOOR:g})")


def weights(labels: list[str], values: np.ndarray, path: Path, title: str, bound: float | None = None) -> None:
    """Horizontal bars of the selected candidates' weights (log scale if they span over
    two decades), each labelled
    (e.g. ``file@frame quantity``), largest on top, with the weight bound if one is set."""
    order = np.argsort(values)
    height = min(max(4.0, 0.25 * len(values) + 1.5), 40.0)
    with _axes(path, title, (8, height)) as ax:
        ax.barh(np.arange(len(values)), values[order], color="C1")
        ax.set_yticks(np.arange(len(values)), [labels[i] for i in order], fontsize=8 if len(values) < 60 else 5)
        if len(values) and values.max() > 100 * values.min():
            ax.set_xscale("log")
        if bound is not None:
            ax.axvline(bound, color="k", linestyle="--", label=f"matching.weight_upper_bound = {bound:g}")
            ax.legend(loc="lower right")
        ax.set_xlabel("weight (how much of this candidate's data the target needs)")


def spectra(candidates: np.ndarray, selected: np.ndarray, target: np.ndarray, path: Path, title: str,
            source: str = "fims.extxyz") -> None:
    """Eigenvalues of every candidate FIM (grey; selected ones orange) beside those of the
    target FIM (red lines): a candidate informs the target where its eigenvalues reach
    the target's. ``source``: the file whose order the x axis follows."""
    x, y = _eigenvalue_points(candidates)
    chosen = np.repeat(selected, candidates.shape[1])
    with _axes(path, title) as ax:
        ax.scatter(x[~chosen], y[~chosen], s=8, marker="_", color="0.6", label="candidate", rasterized=True)
        ax.scatter(x[chosen], y[chosen], s=30, marker="_", color="C1", label="selected")
        for i, value in enumerate(np.clip(np.linalg.eigvalsh(target), FLOOR, None)):
            ax.axhline(value, color="C3", linewidth=1, label="target FIM" if i == 0 else None)
        ax.set_yscale("log")
        ax.set_xlabel(f"candidate (order of {source})")
        ax.set_ylabel(f"FIM eigenvalue (clipped at {FLOOR:g})")
        ax.legend(loc="lower right", fontsize=8)


def histogram(groups: dict[str, np.ndarray], path: Path, xlabel: str, title: str, csv: Path | None = None) -> None:
    """Histograms of finite values, one per group (e.g. train and test atoms) on common
    bins; a count of infinite values in the title. With ``csv``, the counts too (bin
    centre, then a column per group), for DVC plots."""
    finite = {k: v[np.isfinite(v)] for k, v in groups.items() if len(v)}
    dropped = sum(len(v) for v in groups.values()) - sum(len(v) for v in finite.values())
    extra = f" ({dropped} infinite, not shown)" if dropped else ""
    every = np.concatenate(list(finite.values())) if finite else np.zeros(0)
    bins = np.histogram_bin_edges(every, bins=60) if len(every) else 60
    with _axes(path, title + extra) as ax:
        for i, (name, values) in enumerate(finite.items()):
            ax.hist(values, bins=bins, color=f"C{i}", alpha=0.6, label=f"{name} ({len(values)} atoms)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("atoms")
        if finite:
            ax.legend()
    if csv is not None:
        edges = bins if len(every) else np.linspace(0, 1, 61)
        counts = [np.histogram(finite.get(k, np.zeros(0)), edges)[0] for k in groups]
        rows = [",".join(["bin", *groups])]
        rows += [",".join([f"{(lo + hi) / 2:.6g}", *(str(c[i]) for c in counts)])
                 for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))]
        csv.write_text("\n".join(rows) + "\n")


def by_split(frames, values: np.ndarray, split_key: str) -> dict[str, np.ndarray]:
    """Per-atom ``values`` grouped by their image's ``split_key`` info (train, test)."""
    splits = np.concatenate([[a.info.get(split_key, "train")] * len(a) for a in frames])
    return {name: values[splits == name] for name in ("train", "test") if np.any(splits == name)}


def learning(iterations: np.ndarray, weights: np.ndarray, candidate_labels: list[str], rel_sigma: np.ndarray,
             target_labels: list[str], predicted: np.ndarray, sigma: np.ndarray, truth: np.ndarray | None,
             reference_name: str, path: Path, iter_csv: Path, targets_csv: Path) -> None:
    """The active-learning loop in three panels: the accumulated weight of every selected
    candidate (n_iter, n_cand) and each target's relative uncertainty σ/|value|
    (n_iter, m) against iteration, and the final predicted target values with ±σ bars
    beside the reference model's (``truth``), as relative deviations from it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), dpi=110)
    try:
        for ax in axes[:2]:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax = axes[0]
        for j in range(weights.shape[1]):
            ax.plot(iterations, np.maximum(weights[:, j], FLOOR), marker="o", lw=1, label=candidate_labels[j])
        ax.legend(fontsize=6)
        ax.set_yscale("log")
        ax.set_ylim(bottom=max(weights[weights > 0].min() / 3, FLOOR) if np.any(weights > 0) else None)
        ax.set(xlabel="iteration", ylabel="accumulated weight", title=f"Weights of the {weights.shape[1]} selected candidates")
        ax = axes[1]
        for j, lab in enumerate(target_labels):
            ax.plot(iterations, rel_sigma[:, j], marker="o", lw=1, label=lab)
        ax.set_yscale("log")
        ax.set(xlabel="iteration", ylabel="σ / |value|", title="Propagated target uncertainty")
        ax.legend(fontsize=7, ncol=2)
        ax = axes[2]
        scale = np.abs(truth) if truth is not None else np.abs(predicted)
        base = truth if truth is not None else predicted
        y = np.arange(len(target_labels))
        ax.errorbar((predicted - base) / scale, y, xerr=sigma / scale, fmt="o", capsize=3, label="learned ± σ")
        ax.axvline(0, color="k", lw=1, label=reference_name if truth is not None else "learned")
        ax.set_yticks(y, target_labels, fontsize=7)
        ax.set(xlabel="(learned − reference) / |reference|", title="Targets at the final fit")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    rows = ["iteration,selected,sum_weights,max_relative_sigma"]
    rows += [f"{k},{int(np.sum(w > 0))},{w.sum():.8g},{s.max():.8g}" for k, w, s in zip(iterations, weights, rel_sigma)]
    iter_csv.write_text("\n".join(rows) + "\n")
    rows = ["target,predicted,sigma,reference"]
    rows += [f"{lab},{p:.10g},{s:.6g},{'' if truth is None else f'{truth[i]:.10g}'}"
             for i, (lab, p, s) in enumerate(zip(target_labels, predicted, sigma))]
    targets_csv.write_text("\n".join(rows) + "\n")


def annealing(trace: np.ndarray, baselines: dict[str, float], sign: float, ylabel: str, path: Path, csv: Path) -> None:
    """The objective (``sign`` × energy) of the current and best subset against annealing
    step (``trace`` rows: step, temperature, energy, best, acceptance), the baselines'
    objectives as horizontal lines; the trace in ``csv`` for DVC plots."""
    with _axes(path, "Budgeted selection: simulated annealing against the baselines", (8, 4.5)) as ax:
        if len(trace):
            ax.plot(trace[:, 0], sign * trace[:, 2], lw=1, color="0.6", label="annealing: current subset")
            ax.plot(trace[:, 0], sign * trace[:, 3], lw=2, color="C0", label="annealing: best subset")
        for i, (name, value) in enumerate(sorted(baselines.items())):
            ax.axhline(value, color=f"C{i + 1}", ls="--", lw=1.5, label=f"{name}: {value:.6g}")
        ax.set_xlabel("annealing step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    rows = ["step,temperature,current,best,acceptance"]
    rows += [f"{int(r[0])},{r[1]:.6g},{sign * r[2]:.10g},{sign * r[3]:.10g},{r[4]:.4g}" for r in trace]
    csv.write_text("\n".join(rows) + "\n")


def sweep(keys: list[str], settings: list[dict], values: list, metric: str, path: Path) -> None:
    """One metric of a sweep's experiments against the first swept key, a line per
    setting of the other swept keys; a categorical key's values as labelled ticks, its
    points unjoined."""
    first, others = (keys[0], keys[1:]) if keys else ("experiment", [])
    xs = [s.get(first) for s in settings] if keys else list(range(len(settings)))
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    ticks = sorted({str(x) for x in xs}) if not numeric else None
    groups: dict[tuple, list] = {}
    for s, x, v in zip(settings, xs, values):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            groups.setdefault(tuple((k, s.get(k)) for k in others), []).append((x if numeric else ticks.index(str(x)), v))
    with _axes(path, f"{metric} against {first}") as ax:
        for i, (group, points) in enumerate(sorted(groups.items(), key=lambda g: str(g[0]))):
            points.sort()
            label = ", ".join(f"{k}={v}" for k, v in group) or None
            dodge = 0.0 if numeric else 0.08 * (i - (len(groups) - 1) / 2)  # equal values side by side, not hidden
            ax.plot([p[0] + dodge for p in points], [p[1] for p in points], marker="o", color=f"C{i % 10}",
                    label=label, linestyle="-" if numeric else "none")  # no line between categories
        if numeric and len({x for x in xs if x}) > 2 and min(xs) > 0 and max(xs) / min(xs) >= 50:
            ax.set_xscale("log")
        if ticks is not None:
            ax.set_xticks(range(len(ticks)), ticks, rotation=30, ha="right", fontsize=8)
        elif all(isinstance(x, int) and not isinstance(x, bool) for x in xs):  # seeds, counts: integer ticks only
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(first)
        ax.set_ylabel(metric)
        if others:
            ax.legend(fontsize=7)


def note(path: Path, title: str, text: str) -> None:
    """A figure that only says ``text``: what a plot output holds when its stage was not asked to run."""
    with _axes(path, title, (7, 2.5)) as ax:
        ax.axis("off")
        ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=11)


KIND_COLOURS = {"compute": "C1", "check label": "C3", "consider": "C2", "test set": "C9", "not needed": "0.65",
                "no information": "0.3"}


def recommendation(counts: dict[str, dict[str, int]], gains: np.ndarray, novelty: np.ndarray, kinds: list[str],
                   types: list[str], labels: list[str], path: Path, title: str) -> None:
    """Left: per configuration type, its candidates stacked by recommendation. Right:
    every candidate's information about the target (nats) against how new its
    environments are (largest dH, nats), coloured by recommendation, marked by type,
    the ones to compute labelled with ``labels``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(counts)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, max(4.0, 0.45 * len(names) + 2)), dpi=120,
                                      gridspec_kw={"width_ratios": [1, 1.2]})
    try:
        start = np.zeros(len(names))
        for kind, colour in KIND_COLOURS.items():
            values = np.array([counts[n].get(kind, 0) for n in names], dtype=float)
            if values.any():
                left.barh(names, values, left=start, color=colour, label=kind)
                start += values
        left.invert_yaxis()
        left.set_xlabel("candidates")
        left.set_title("By configuration type")
        left.legend(fontsize=8, loc="lower right")
        markers = dict(zip(sorted(set(types)), "osD^vP*Xhp<>"))
        y = np.where(np.isfinite(novelty), novelty, np.nan)
        for kind, colour in KIND_COLOURS.items():
            for t, m in markers.items():
                pick = [i for i, (k, tt) in enumerate(zip(kinds, types)) if k == kind and tt == t]
                if pick:
                    right.scatter(gains[pick], y[pick], c=colour, marker=m, s=60 if kind == "compute" else 25,
                                  edgecolors="k" if kind == "compute" else "none", linewidths=0.8)
        for i, kind in enumerate(kinds):
            if kind == "compute" and np.isfinite(y[i]):
                right.annotate(labels[i], (gains[i], y[i]), xytext=(5, 5), textcoords="offset points", fontsize=7)
        for t, m in markers.items():
            right.scatter([], [], marker=m, c="0.5", label=t)
        right.set_xscale("symlog", linthresh=1e-3)
        right.set_xlabel("information about the target at weight 1 (nats)")
        right.set_ylabel("newest environment: largest dH (nats)")
        right.set_title("Every candidate (compute: outlined)")
        right.legend(fontsize=8, title="config_type", title_fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
