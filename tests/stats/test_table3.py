"""Table 3 from synthetic grid scores whose effects are known: counts, Holm, JSON/Markdown, loading."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distill2edge.evaluate.generate import write_scores_csv
from distill2edge.stats.hypotheses import grid_cells
from distill2edge.stats.table3 import load_grid_scores, run_tests, write_table3

METRICS = ["bleu", "chrf", "meteor"]


def synthetic_grid(n: int = 40, seed: int = 0) -> dict[str, dict[str, list[float]]]:
    """Same-vocabulary cells gain 0.2 from teacher SFT on bleu and chrf only; everything else is noise."""
    rng = np.random.default_rng(seed)
    base = {m: rng.random(n) * 0.5 for m in METRICS}
    grid = {}
    for cell in grid_cells():
        per = {}
        for m in METRICS:
            noise = rng.normal(0, 0.02, n)
            boost = 0.2 if (cell.vocab == "same" and cell.teacher_sft and m != "meteor") else 0.0
            per[m] = (base[m] + boost + noise).tolist()
        grid[cell.key] = per
    return grid


def test_counts_follow_the_planted_effects(tmp_path) -> None:
    results = run_tests(synthetic_grid(), METRICS)
    assert len(results) == 24 * 3
    data = write_table3(results, tmp_path, column_labels={"same-V": "SmolLM2-V"})
    rows = {r["row"]: r["columns"] for r in data["rows"]}
    for col in ("same-V", "same-D"):
        assert rows["train-teacher"][col]["rejected"] == 2  # bleu and chrf, not meteor
        assert rows["train-both"][col]["rejected"] == 2
        assert rows["sft-vs-student"][col]["rejected"] == 2  # (T1,S1) > (T0,S1): teacher SFT added
    for row in ("train-student", "sft-vs-teacher"):
        for col in ("same-V", "same-D", "different-V", "different-D"):
            assert rows[row][col]["rejected"] <= 1  # no effect planted: at most a chance rejection
    cell = rows["train-teacher"]["same-V"]
    assert cell["of"] == 3 and cell["treated"] == "same-T1-S0-V" and cell["baseline"] == "same-T0-S0-V"
    assert cell["tests"]["bleu"]["p_value"] < 1e-6 and cell["tests"]["bleu"]["rank_biserial"] > 0.9
    assert json.loads((tmp_path / "table3.json").read_text())["n_questions"] == 40
    md = (tmp_path / "table3.md").read_text()
    assert "SmolLM2-V" in md and "| H-Train | SFT of the teacher only" in md and "2/3 (paper 13)" in md


def test_holm_is_never_more_lenient() -> None:
    grid = synthetic_grid(n=12, seed=1)
    plain = run_tests(grid, METRICS)
    for family in ("cell", "table"):
        corrected = run_tests(grid, METRICS, correction="holm", family=family)
        assert all(c.p_adjusted >= p.p_adjusted - 1e-12 for c, p in zip(corrected, plain))
        assert sum(c.rejected for c in corrected) <= sum(p.rejected for p in plain)
    table = run_tests(grid, METRICS, correction="holm", family="table")
    cell = run_tests(grid, METRICS, correction="holm", family="cell")
    assert all(t.p_adjusted >= c.p_adjusted - 1e-12 for t, c in zip(table, cell))


def test_missing_cells_are_skipped_and_shown(tmp_path) -> None:
    grid = {k: v for k, v in synthetic_grid().items() if k.startswith("same-")}
    results = run_tests(grid)  # metrics default to those every cell has
    assert {r.metric for r in results} == set(METRICS)
    data = write_table3(results, tmp_path)
    rows = {r["row"]: r["columns"] for r in data["rows"]}
    assert rows["train-teacher"]["different-V"] is None and rows["algo-untrained"]["same"] is not None
    assert "n/a" in (tmp_path / "table3.md").read_text()
    with pytest.raises(ValueError, match="no scores for metric 'rouge_1'"):
        run_tests(grid, ["rouge_1"])


def test_load_grid_scores_aligns_by_question_id(tmp_path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_scores_csv(a, ["q1", "q2", "q3"], {"bleu": [0.1, 0.2, 0.3]})
    write_scores_csv(b, ["q3", "q1", "q2"], {"bleu": [0.6, 0.4, 0.5]})
    grid = load_grid_scores({"same-T0-S0-V": a, "same-T1-S0-V": b})
    assert grid["same-T1-S0-V"]["bleu"] == [0.4, 0.5, 0.6]
    write_scores_csv(b, ["q1", "q2", "q9"], {"bleu": [0.1, 0.2, 0.3]})
    with pytest.raises(ValueError, match="question ids differ"):
        load_grid_scores({"same-T0-S0-V": a, "same-T1-S0-V": b})
