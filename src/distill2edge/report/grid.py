"""The grid's report.md: setup, per-cell means, Table 3 and the findings for RQ1-RQ3.

Every statement in the findings is computed from the cell means and the Table 3 counts that
`grid.run_grid` collects (see `distill2edge.grid` for the study itself).
"""

from __future__ import annotations

import math
from typing import Any

from distill2edge.config import Recipe
from distill2edge.stats.hypotheses import Cell

_SFT_ROWS = (("train-teacher", (True, False), "teacher SFT"), ("train-student", (False, True), "student SFT"),
             ("train-both", (True, True), "both"))


def _fmt(v: float | None, sign: bool = True) -> str:
    if v is None or math.isnan(v):
        return "n/a"
    return f"{v:+.3f}" if sign else f"{v:.3f}"


class _Grid:
    """Look-ups into the grid summary and Table 3 for the findings."""

    def __init__(self, grid: dict[str, Any], table: dict[str, Any]):
        self.grid, self.rows = grid, {r["row"]: r for r in table["rows"]}
        self.teacher = {"same": grid["same_teacher"], "different": grid["different_teacher"]}

    def mean(self, vocab: str, t: bool, s: bool, algo: str, stat: str = "all") -> float:
        return self.grid["cells"][Cell(vocab, t, s, algo).key]["group_means"].get(stat, float("nan"))

    def rejected(self, row: str, col: str) -> tuple[int, int]:
        v = self.rows[row]["columns"].get(col)
        return (v["rejected"], v["of"]) if v else (0, 0)

    def paper(self, row: str, col: str) -> int | None:
        return (self.rows[row].get("paper") or {}).get(col)

    def test(self, row: str, col: str, delta: float) -> str:
        r, n = self.rejected(row, col)
        p = self.paper(row, col)
        return f"{_fmt(delta)} ({r}/{n} metrics significant" + (f"; paper {p}/14)" if p is not None else ")")

    def majority(self, row: str, col: str) -> bool:
        r, n = self.rejected(row, col)
        return n > 0 and r > n / 2

    @staticmethod
    def algo_name(vocab: str, algo: str) -> str:
        return "DSKD" if algo == "dskd" else ("vanilla KD" if vocab == "same" else "ULD")


def findings(grid: dict[str, Any], table: dict[str, Any]) -> list[str]:
    """RQ1-RQ3 in the paper's terms, every statement computed from the cell means and Table 3 counts.
    Deltas are in the mean of all tested metrics; "significant" = H0 rejected for most metrics."""
    g = _Grid(grid, table)
    out = ["### RQ1: does SFT of teacher and/or student before KD help?", ""]
    up = sig = 0
    for vocab in ("same", "different"):
        parts = []
        for algo, code in (("vanilla", "V"), ("dskd", "D")):
            base = g.mean(vocab, False, False, algo)
            items = []
            for row, (t, s), what in _SFT_ROWS:
                delta = g.mean(vocab, t, s, algo) - base
                up, sig = up + (delta > 0), sig + g.majority(row, f"{vocab}-{code}")
                items.append(f"{what} {g.test(row, f'{vocab}-{code}', delta)}")
            parts.append(f"{g.algo_name(vocab, algo)}: " + ", ".join(items))
        out.append(f"- {vocab.capitalize()} vocabulary (`{g.teacher[vocab]}`), change of the mean score over no "
                   "SFT (T0,S0): " + "; ".join(parts) + ".")
    out.append(f"- SFT before KD raised the mean score in {up} of 12 comparisons and improved most metrics "
               f"significantly in {sig} of 12 (paper: in 4 of 12, the same-vocabulary pair's teacher-only and "
               "both-SFT comparisons; never with student SFT alone or with the different-vocabulary pair).")
    for vocab in ("same", "different"):
        items = []
        for algo, code in (("vanilla", "V"), ("dskd", "D")):
            both = g.mean(vocab, True, True, algo)
            items.append(f"{g.algo_name(vocab, algo)}: vs student SFT only "
                         f"{g.test('sft-vs-student', f'{vocab}-{code}', both - g.mean(vocab, False, True, algo))}, "
                         f"vs teacher SFT only {g.test('sft-vs-teacher', f'{vocab}-{code}', both - g.mean(vocab, True, False, algo))}")
        verdict = ("training the student as well adds no significant gain over teacher SFT alone"
                   if not any(g.majority("sft-vs-teacher", f"{vocab}-{c}") for c in ("V", "D")) else "training the student as well adds a significant gain")
        out.append(f"- SFT of both vs of one (H-SFT), {vocab} vocabulary: " + "; ".join(items) + f". So {verdict}.")

    out += ["", "### RQ2: does the teacher's vocabulary or the KD algorithm matter?", ""]
    for row, (t, s), when in (("algo-sft-both", (True, True), "both fine-tuned (T1,S1)"),
                              ("algo-untrained", (False, False), "no SFT (T0,S0)")):
        items = [f"{v} vocabulary DSKD vs {g.algo_name(v, 'vanilla')} "
                 f"{g.test(row, v, g.mean(v, t, s, 'dskd') - g.mean(v, t, s, 'vanilla'))}" for v in ("same", "different")]
        wins = [v for v in ("same", "different") if g.majority(row, v)]
        out.append(f"- With {when}: " + "; ".join(items) + ". DSKD is significantly better "
                   + (f"for the {' and '.join(wins)} vocabulary." if wins else "for neither vocabulary."))
    best = {v: max((g.mean(v, True, True, a), a) for a in ("vanilla", "dskd")) for v in ("same", "different")}
    gap = best["same"][0] - best["different"][0]
    out.append(f"- Vocabulary, both fine-tuned: best same-vocabulary cell {_fmt(best['same'][0], False)} "
               f"({g.algo_name('same', best['same'][1])}), best different-vocabulary cell "
               f"{_fmt(best['different'][0], False)} ({g.algo_name('different', best['different'][1])}); "
               + ("the teacher's vocabulary changes the mean by less than 0.01." if abs(gap) < 0.01 else
                  f"the {'same' if gap > 0 else 'different'}-vocabulary teacher is ahead by {abs(gap):.3f}."))
    untrained = max((g.mean(v, False, False, a), v, a) for v in ("same", "different") for a in ("vanilla", "dskd"))
    out.append(f"- Without SFT the best cell is {untrained[1]} vocabulary with {g.algo_name(untrained[1], untrained[2])} "
               f"({_fmt(untrained[0], False)}; the paper found different vocabulary + DSKD best).")

    out += ["", "### RQ3: do the metric groups agree?", ""]
    out += _rq3(grid)
    n = grid["n_questions"]
    out += ["", f"_Power: {n} paired questions; an exact one-sided Wilcoxon test cannot go below p = "
            f"{0.5 ** n:.2g}, and questions on which two cells answer alike drop out."
            + (" A --quick grid trains each cell for a few steps on a sliver of the data: its differences are "
               "mostly noise, and it exists to exercise the study end to end." if grid["quick"] else "") + "_"]
    return out


def _rq3(grid: dict[str, Any]) -> list[str]:
    from scipy.stats import spearmanr

    keys = list(grid["cells"])
    groups = [k for k in ("n-gram", "embedding", "Oracle-LLM") if k in grid["cells"][keys[0]]["group_means"]]
    if len(groups) < 2:
        return [f"- Only one metric group was scored ({', '.join(groups) or 'none'}); nothing to compare."]
    best = {k: max(keys, key=lambda c: grid["cells"][c]["group_means"][k]) for k in groups}
    out = ["- Best cell per group: " + ", ".join(f"{k} `{c}`" for k, c in best.items()) + "."]
    rhos = []
    for i, a in enumerate(groups):
        for b in groups[i + 1:]:
            x = [grid["cells"][c]["group_means"][a] for c in keys]
            y = [grid["cells"][c]["group_means"][b] for c in keys]
            rho = float(spearmanr(x, y).statistic) if len(set(x)) > 1 and len(set(y)) > 1 else float("nan")
            rhos.append(rho)
            out.append(f"- Rank correlation of the 16 cells, {a} vs {b}: Spearman rho = {_fmt(rho)}.")
    agree = all(r >= 0.5 for r in rhos)
    out.append("- The groups " + ("rank the cells alike (every rho >= 0.5), as in the paper (similar trends "
                                  "across metric groups)." if agree else
                                  "rank the cells differently (some rho < 0.5), unlike the paper, which saw "
                                  "similar trends across metric groups."))
    return out


def means_table(grid: dict[str, Any]) -> list[str]:
    """Markdown: one row per cell with its setting, mean of all tested metrics and per group."""
    stats = list(next(iter(grid["cells"].values()))["group_means"])
    qa = [m for m in ("exact_match", "token_f1") if m in grid["metrics"]]
    out = ["| Cell | Teacher | Student | Algorithm | " + " | ".join(stats + qa) + " |",
           "|---|---|---|---|" + "---|" * (len(stats) + len(qa))]
    for key, c in grid["cells"].items():
        vals = [_fmt(c["group_means"].get(s), False) for s in stats] + [_fmt(c["means"].get(m), False) for m in qa]
        out.append(f"| {key} | {c['teacher']} ({c['teacher_state']}) | {c['student']} | {c['algorithm']} | "
                   + " | ".join(vals) + " |")
    return out


def grid_report(recipe: Recipe, base_name: str, grid: dict[str, Any], table: dict[str, Any],
                pipeline: dict[str, Any]) -> str:
    """report.md of a grid: setup, per-cell means, Table 3 and the findings for RQ1-RQ3."""
    same, diff = grid["same_teacher"], grid["different_teacher"]
    kd = recipe.distill["same-T0-S0-V"].loss
    d = pipeline["data"]
    judge = (f"Oracle-LLM metrics judged by `{grid['judge']}`." if grid["judge"] else
             "Oracle-LLM metrics were not scored (on CPU a small judge costs seconds per question and metric; ask "
             "for them with `--metrics qa,paper`), so Table 3 counts are out of "
             f"{len(grid['tested_metrics'])} metrics, not the paper's 14.")
    student = recipe.student
    return "\n".join([
        f"# {base_name}: the 16-cell KD grid{' (--quick)' if grid['quick'] else ''}", "",
        f"Teachers: `{same}` = `{recipe.teachers[same].path}` shares the student's vocabulary; `{diff}` = "
        f"`{recipe.teachers[diff].path}` has another. Student: `{student.path or student.init_from}`"
        + (f" cut to {student.layer_count()} layers." if student.layer_count() else "."), "",
        (f"**Algorithms.** `V` cells with `{same}` run vanilla KD ({kd.name}, alpha {kd.alpha}, T {kd.temperature}). "
        f"Vanilla KD cannot cross vocabularies (the paper's Mistral/TinyLlama pair had vocabularies of equal size; "
        f"`{diff}`'s differs from the student's in size and ids), so **the different-vocabulary `V` cells run ULD** "
        "(Universal Logit Distillation: L1 distance between sorted next-token probabilities at aligned answer "
        "tokens, no learned projection) in place of vanilla KD. `D` cells run DSKD: dual space with the "
        "same-vocabulary teacher, cross-model attention with the other. Each SFT ran once and is shared by the "
        "cells that start from it."), "",
        (f"Data: `{recipe.data.source}`: {d.get('train_questions')} training / {d.get('validation_questions')} "
        f"validation / {grid['n_questions']} test questions. Metrics: {', '.join(grid['metrics'])}. {judge}"), "",
        (f"Wall time of this invocation: {grid['wall_time_s']:.0f} s; sum of stage times: "
        f"{grid['stage_seconds_total']:.0f} s (stages reused from an earlier invocation count with their "
        "original time)."), "",
        "## Mean scores per cell", "", *means_table(grid), "",
        "![heatmap](heatmap.png)", "", "![group means](group_means.png)", "",
        "## Hypothesis tests (Table 3)", "",
        f"Metrics (of {len(grid['tested_metrics'])}) rejecting H0 at p < {grid['alpha']}"
        + (", Holm-corrected per table cell" if grid["correction"] == "holm" else "")
        + ", paired one-sided Wilcoxon; p-values and rank-biserial effect sizes per test are in `table3.json`.", "",
        *_table3_lines(table, same, diff), "",
        "## Findings", "", *findings(grid, table), "",
        "Per-model details (training losses, latency): [pipeline_report.md](pipeline_report.md).", "",
    ])


def _table3_lines(table: dict[str, Any], same: str, diff: str) -> list[str]:
    head = [f"{same} vanilla", f"{same} DSKD", f"{diff} ULD", f"{diff} DSKD-CMA"]
    out = ["| Row | H1 | " + " | ".join(head) + " |", "|---|---|---|---|---|---|"]
    for row in table["rows"]:
        keys = ["same", "different"] if row["family"] == "H-Algo" else ["same-V", "same-D", "different-V", "different-D"]
        cells = []
        for c in keys:
            v, p = row["columns"].get(c), (row.get("paper") or {}).get(c)
            cells.append(("n/a" if v is None else f"{v['rejected']}/{v['of']}") + (f" (paper {p}/14)" if p is not None else ""))
        if len(keys) == 2:  # H-Algo has one column per vocabulary
            cells = [cells[0], "", cells[1], ""]
        out.append(f"| {row['row']} | {row['description']} | " + " | ".join(cells) + " |")
    return out
