"""Figures of the telecom-qa study from a per-cell, per-metric mean table.

- `heatmap`: cells x metrics, the value in each square (the paper's Fig. 3).
- `group_bars`: for each cell, the mean of all metrics and of each metric group (n-gram, embedding,
  Oracle-LLM), cells grouped by teacher vocabulary and algorithm (the paper's Fig. 4).

`cell_means` turns per-question scores into that table. matplotlib runs on the Agg backend (no display).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

MeanTable = Mapping[str, Mapping[str, float]]
"""{cell key: {metric: mean score}}."""


def cell_means(scores: Mapping[str, Mapping[str, Sequence[float]]]) -> dict[str, dict[str, float]]:
    """Mean of each cell's per-question scores, per metric."""
    return {cell: {m: math.fsum(v) / len(v) for m, v in per.items() if len(v)} for cell, per in scores.items()}


def _order(means: MeanTable, cells: Sequence[str] | None, metrics: Sequence[str] | None) -> tuple[list[str], list[str]]:
    from distill2edge.evaluate.registry import PAPER_METRICS
    from distill2edge.stats.hypotheses import grid_cells

    if cells is None:
        grid = [c.key for c in grid_cells()]
        cells = [c for c in grid if c in means] + sorted(c for c in means if c not in grid)
    if metrics is None:
        present = set().union(*(set(v) for v in means.values())) if means else set()
        metrics = [m for m in PAPER_METRICS if m in present] + sorted(present - set(PAPER_METRICS))
    return list(cells), list(metrics)


def heatmap(means: MeanTable, path: Path, *, cells: Sequence[str] | None = None,
            metrics: Sequence[str] | None = None, title: str = "Mean score per cell and metric") -> Path:
    """Cells (rows) x metrics (columns) heatmap with the values printed; missing values are blank."""
    cells, metrics = _order(means, cells, metrics)
    grid = np.array([[means.get(c, {}).get(m, np.nan) for m in metrics] for c in cells], dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(metrics), 1.2 + 0.42 * len(cells)))
    lo, hi = (float(np.nanmin(grid)), float(np.nanmax(grid))) if np.isfinite(grid).any() else (0.0, 1.0)
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto", vmin=lo, vmax=hi)
    ax.set_xticks(range(len(metrics)), metrics, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(cells)), cells, fontsize=8)
    for i in range(len(cells)):
        for j in range(len(metrics)):
            if np.isfinite(grid[i, j]):
                light = grid[i, j] < lo + 0.5 * (hi - lo)
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if light else "black")
    fig.colorbar(im, ax=ax, fraction=0.03)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def group_means(means: MeanTable, groups: Mapping[str, Sequence[str]] | None = None) -> dict[str, dict[str, float]]:
    """{cell: {"all": mean of every metric in the groups, group: mean of its metrics}} (present metrics only)."""
    if groups is None:
        from distill2edge.evaluate.registry import metric_groups

        g = metric_groups()
        groups = {"n-gram": g["ngram"], "embedding": g["embedding"], "Oracle-LLM": g["llm"]}
    out: dict[str, dict[str, float]] = {}
    for cell, per in means.items():
        row: dict[str, float] = {}
        every = [per[m] for names in groups.values() for m in names if m in per]
        if every:
            row["all"] = math.fsum(every) / len(every)
        for name, names in groups.items():
            vals = [per[m] for m in names if m in per]
            if vals:
                row[name] = math.fsum(vals) / len(vals)
        out[cell] = row
    return out


def group_bars(means: MeanTable, path: Path, *, groups: Mapping[str, Sequence[str]] | None = None,
               cells: Sequence[str] | None = None, title: str = "Mean of all metrics and per group") -> Path:
    """Bar chart: one panel per statistic (all metrics, then each group); bars are cells, coloured by the
    SFT setting and grouped by vocabulary/algorithm (the paper's Fig. 4)."""
    table = group_means(means, groups)
    cells, _ = _order(means, cells, [])
    stats_names = list(dict.fromkeys(k for c in cells for k in table.get(c, {})))
    colours = {"T0-S0": "#bbbbbb", "T1-S0": "#6baed6", "T0-S1": "#fd8d3c", "T1-S1": "#31a354"}
    fig, axes = plt.subplots(1, max(len(stats_names), 1), figsize=(3.2 * max(len(stats_names), 1), 3.4),
                             squeeze=False, sharey=True)
    for ax, stat in zip(axes[0], stats_names):
        for x, cell in enumerate(cells):
            parts = cell.split("-")
            sft = "-".join(parts[1:3]) if len(parts) == 4 else ""
            value = table.get(cell, {}).get(stat)
            if value is not None:
                ax.bar(x, value, color=colours.get(sft, "#888888"))
        ax.set_xticks(range(len(cells)), cells, rotation=90, fontsize=6)
        ax.set_title(stat, fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    fig.legend(handles, list(colours), loc="upper right", fontsize=7, ncol=4)
    fig.suptitle(title, fontsize=10, x=0.3)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
