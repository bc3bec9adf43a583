"""Statistics of the telecom-qa study: paired Wilcoxon tests, the paper's hypotheses (H-Train, H-SFT,
H-Algo), its Table 3 (metrics rejecting H0 per test) and its figures (heatmap, group-mean bars)."""

from distill2edge.stats.hypotheses import PAPER_TABLE3, Cell, Hypothesis, grid_cells, paper_hypotheses
from distill2edge.stats.table3 import TestResult, load_grid_scores, run_tests, table3, write_table3
from distill2edge.stats.wilcoxon import WilcoxonResult, holm, paired_wilcoxon, rank_biserial

__all__ = [
    "PAPER_TABLE3",
    "Cell",
    "Hypothesis",
    "TestResult",
    "WilcoxonResult",
    "grid_cells",
    "holm",
    "load_grid_scores",
    "paired_wilcoxon",
    "paper_hypotheses",
    "rank_biserial",
    "run_tests",
    "table3",
    "write_table3",
]
