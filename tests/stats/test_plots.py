"""Heatmap and group-mean bar chart write PNG files from a mean table; group means by hand."""

from __future__ import annotations

import pytest

from distill2edge.stats.hypotheses import grid_cells
from distill2edge.stats.plots import cell_means, group_bars, group_means, heatmap


def _means() -> dict[str, dict[str, float]]:
    return {c.key: {"bleu": 0.1 * i % 1, "chrf": 0.3, "embedding_cosine": 0.5, "faithfulness": 0.2}
            for i, c in enumerate(grid_cells())}


def test_cell_means_and_group_means_by_hand() -> None:
    assert cell_means({"c": {"bleu": [0.0, 1.0], "chrf": [0.5]}}) == {"c": {"bleu": 0.5, "chrf": 0.5}}
    g = group_means({"c": {"bleu": 0.2, "chrf": 0.4, "embedding_cosine": 0.9}})
    assert g["c"] == pytest.approx({"all": 0.5, "n-gram": 0.3, "embedding": 0.9})


def test_figures_are_written(tmp_path) -> None:
    means = _means()
    means.pop("different-T1-S1-D")  # a missing cell is left out, not an error
    for path in (heatmap(means, tmp_path / "heatmap.png"), group_bars(means, tmp_path / "bars.png")):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
