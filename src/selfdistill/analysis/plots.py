"""PNG plots with matplotlib's Agg backend (no display needed). Each function writes one file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def grouped_bars(series: Mapping[str, Sequence[float]], labels: Sequence[str], path: str | Path,
                 *, title: str, ylabel: str) -> Path:
    """One group of bars per label, one bar colour per series (e.g. one per input file)."""
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(labels) * max(1, len(series))), 4.0))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, values, width=width, label=name)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return _save(fig, path)


def scatter_highlight(x: Sequence[float], y: Sequence[float], names: Sequence[str],
                      highlight: set[str], path: str | Path, *, title: str, xlabel: str,
                      ylabel: str) -> Path:
    """All points in grey; points whose name is in ``highlight`` in red and labelled."""
    fig, ax = plt.subplots(figsize=(7.0, 4.5))
    plain = [i for i, n in enumerate(names) if n not in highlight]
    marked = [i for i, n in enumerate(names) if n in highlight]
    ax.scatter([x[i] for i in plain], [y[i] for i in plain], s=6, c="0.6", alpha=0.5, label="other words")
    ax.scatter([x[i] for i in marked], [y[i] for i in marked], s=30, c="tab:red", label="markers")
    for i in marked:
        ax.annotate(names[i], (x[i], y[i]), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def histograms(samples: Mapping[str, Sequence[float]], path: str | Path, *, title: str,
               xlabel: str, bins: int = 40, log_y: bool = False) -> Path:
    """Overlaid step histograms, one per named sample."""
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    for name, values in samples.items():
        if len(values):
            ax.hist(list(values), bins=bins, histtype="step", label=f"{name} (n={len(values)})")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def curves(xs: Mapping[str, Sequence[float]], ys: Mapping[str, Sequence[float]], path: str | Path,
           *, title: str, xlabel: str) -> Path:
    """One subplot per named curve (shared x label), stacked in a grid."""
    names = list(ys)
    cols = min(3, len(names)) or 1
    rows = (len(names) + cols - 1) // cols or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        ax.plot(xs[name], ys[name], marker="." if len(ys[name]) < 50 else None, lw=1.2)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def metric_overlays(series: Mapping[str, Sequence[Mapping]], metrics: Sequence[tuple[str, str]],
                    path: str | Path, *, title: str, reference_lines: Mapping[str, float] | None = None
                    ) -> Path | None:
    """Training curves of several runs overlaid: one subplot per metric present, one line per run.

    ``series``: run name -> metrics.jsonl rows (dicts with "step"); ``metrics``: (key, subplot
    title) pairs; ``reference_lines``: key -> y value drawn dashed (e.g. a ratio of 1). Returns
    None when no run has any of the metrics. A run keeps one colour in every subplot, also in
    those where other runs have no points.
    """
    import math

    def points(rows, key):
        return [(r["step"], r[key]) for r in rows
                if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]

    present = [(k, t) for k, t in metrics if any(points(rows, k) for rows in series.values())]
    if not present:
        return None
    cols = min(4, len(present))
    nrows = (len(present) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.0 * cols, 2.9 * nrows), squeeze=False)
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {name: cycle[i % len(cycle)] for i, name in enumerate(series)}
    for ax, (key, sub) in zip(axes.flat, present):
        for name, rows in series.items():
            pts = points(rows, key)
            if pts:
                ax.plot(*zip(*pts), marker=".", lw=1.2, label=name, color=colour[name])
        if reference_lines and key in reference_lines:
            ax.axhline(reference_lines[key], color="0.5", lw=0.6, ls="--")
        ax.set_title(sub, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(present):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def panels(items: Sequence[tuple[str, str, Sequence[float], Sequence[float]]], path: str | Path, *,
           title: str, note: str = "", vlines: Sequence[tuple[float, str]] = ()) -> Path:
    """One titled subplot per ``(title, unit, steps, values)``: the unit on the y axis, integer
    step ticks, and a dashed vertical line with a label per ``vlines`` entry (e.g. a resume)."""
    from matplotlib.ticker import MaxNLocator

    cols = min(3, len(items)) or 1
    rows = (len(items) + cols - 1) // cols or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.0 * rows + (0.4 if note else 0)),
                             squeeze=False)
    for ax, (name, unit, xs, ys) in zip(axes.flat, items):
        ax.plot(xs, ys, marker="." if len(ys) < 50 else None, lw=1.2)
        for x, label in vlines:
            ax.axvline(x, color="0.4", lw=0.8, ls="--")
            ax.annotate(label, (x, 1.0), xycoords=("data", "axes fraction"), fontsize=7, color="0.3",
                        xytext=(2, -9), textcoords="offset points")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel(unit, fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(items):]:
        ax.axis("off")
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=10)
    return _save(fig, path)
