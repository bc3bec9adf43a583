"""The telecom-qa paper's 16-cell study as one recipe: teacher vocabulary (same/different as the
student's) x teacher base/SFT x student base/SFT x vanilla KD/DSKD, then its statistics and figures.

`build_grid_recipe` turns a base recipe (teachers, student, data, SFT and KD settings) into a recipe
whose `distill` section holds the 16 cells (named by `stats.Cell.key`, e.g. `same-T1-S0-V`). The
pipeline runs it, so each SFT (one per teacher, one for the student) runs once and is shared by the
cells that start from it, and a killed grid resumes: completed stages are reused, an interrupted one
resumes from its checkpoint.

Vanilla KD compares logits id by id and cannot cross vocabularies. The paper's different-vocabulary
pair had vocabularies of equal size; the embedded pair (SmolLM2 49,152 vs Gemma-3 262,144 entries)
does not, so the different-vocabulary "vanilla" cells run ULD (`train.uld`: logit-level KD on sorted
probabilities, no learned projection). Reports say so wherever those cells appear.

A teacher cache in the base recipe's distillations (`cache.enabled`) goes to every cell whose algorithm
it serves; cells with the same teacher state and data then read one entry (the student and its state
are not in the key), so the 12 cached cells build 6 entries. ULD cells need the full teacher
distribution and run the teacher online.

`run_grid` then writes into the run folder: table3.md/.json (paired one-sided Wilcoxon tests of
H-Train, H-SFT, H-Algo), heatmap.png (cells x metrics, the paper's Fig. 3), group_means.png (Fig. 4),
report.md (setup, cell means, Table 3 and the findings for RQ1-RQ3 stated from the numbers),
metrics.json (the pipeline's metrics plus `grid`), and pipeline_report.md (the per-model report).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distill2edge.config import CACHEABLE_ALGORITHMS, DistillConfig, Recipe, RecipeError
from distill2edge.runs import write_json_atomic, write_text_atomic
from distill2edge.stats.hypotheses import Cell, grid_cells

Log = Callable[[str], None]
ALGORITHM_FOR = {("same", "vanilla"): "vanilla", ("different", "vanilla"): "uld",
                 ("same", "dskd"): "dskd", ("different", "dskd"): "dskd"}
"""(teacher vocabulary, paper algorithm) -> registered algorithm run for that cell."""
QUICK_METRICS = ["qa", "ngram", "embedding"]
FULL_METRICS = ["qa", "paper"]


def _tokenizer_and_config(ref: str) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoTokenizer

    from distill2edge.models.loading import resolve_model

    path = resolve_model(ref)
    return AutoTokenizer.from_pretrained(path), AutoConfig.from_pretrained(path)


def assign_teachers(base: Recipe, same: str | None = None, different: str | None = None) -> tuple[str, str]:
    """(same-vocabulary teacher, different-vocabulary teacher) among `base.teachers`: the names given,
    else detected by comparing each teacher's tokenizer with the student's. RecipeError otherwise."""
    for flag, name in (("--same-teacher", same), ("--different-teacher", different)):
        if name is not None and name not in base.teachers:
            raise RecipeError(f"{flag} {name!r}: not among the recipe's teachers ({', '.join(base.teachers)})")
    if same is None or different is None:
        from distill2edge.models import VocabularyMismatchError, check_same_vocabulary

        s_tok, s_cfg = _tokenizer_and_config(base.student.path or base.student.init_from or "")
        found: dict[str, list[str]] = {"same": [], "different": []}
        for name, t in base.teachers.items():
            t_tok, t_cfg = _tokenizer_and_config(t.path)
            try:
                check_same_vocabulary(t_tok, s_tok, t_cfg, s_cfg)
                found["same"].append(name)
            except VocabularyMismatchError:
                found["different"].append(name)
        for kind in ("same", "different"):
            picked = same if kind == "same" else different
            if picked is None and len(found[kind]) != 1:
                raise RecipeError(
                    f"the grid needs one teacher with the student's vocabulary and one with another; found "
                    f"same: {found['same'] or 'none'}, different: {found['different'] or 'none'}; "
                    "name them with --same-teacher / --different-teacher")
        same = same or found["same"][0]
        different = different or found["different"][0]
    if same == different:
        raise RecipeError(f"--same-teacher and --different-teacher are both {same!r}")
    return same, different


def _template(base: Recipe, algo: str) -> DistillConfig:
    """KD settings (loss, LoRA, training, DSKD options) of the base recipe's first distillation that uses
    `algo` (any DSKD variant for dskd), else of its first distillation."""
    wanted = ("dskd", "dskd_cma") if algo == "dskd" else ("vanilla",)
    return next((d for d in base.distill.values() if d.algorithm in wanted), next(iter(base.distill.values())))


# The paper's cells distil on the answer tokens; a base recipe's full-sequence KD (`positions: all`) is its
# own method, so its other settings (loss, training) are kept and the positions are not.
_NOT_FROM_TEMPLATE = {"teacher", "teacher_state", "student", "algorithm", "positions"}


def build_grid_recipe(base: Recipe, same: str, different: str, metrics: Sequence[str],
                      references: bool = False) -> Recipe:
    """The base recipe with the 16 grid cells as its distillations (and only those, plus with
    `references` the teachers and students, evaluated)."""
    from distill2edge.evaluate.registry import resolve_metrics

    teacher_of = {"same": same, "different": different}
    distill: dict[str, Any] = {}
    for cell in grid_cells():
        t = _template(base, cell.algo).model_dump(mode="json", exclude=_NOT_FROM_TEMPLATE)
        algorithm = ALGORITHM_FOR[cell.vocab, cell.algo]
        if algorithm not in CACHEABLE_ALGORITHMS and "cache" in t:
            t["cache"] = {**t["cache"], "enabled": False}
        distill[cell.key] = {**t, "teacher": teacher_of[cell.vocab], "algorithm": algorithm,
                             "teacher_state": "sft" if cell.teacher_sft else "base",
                             "student": "sft" if cell.student_sft else "base"}
    data = base.model_dump(mode="json")
    roles = [f"distilled.{k}" for k in distill]
    if references:
        roles = [*(f"{kind}.{t}" for kind in ("teacher", "teacher_sft") for t in (same, different)),
                 "student_base", "student_sft", *roles]
    data.update(name=f"{base.name}-grid", distill=distill,
                teachers={n: data["teachers"][n] for n in (same, different)},
                description=f"16-cell grid of {base.name}: same vocabulary teacher `{same}`, different `{different}`.",
                evaluate={**data["evaluate"], "models": roles, "metrics": resolve_metrics(metrics)})
    data["sft"]["teacher"]["enabled"] = data["sft"]["student"]["enabled"] = True
    if "export" in data:  # the base recipe's named distillations are gone; `best_distilled` still applies
        data["export"]["models"] = [m for m in data["export"]["models"] if m == "best_distilled" or m in roles]
    return Recipe.model_validate(data)


def _group_names(metrics: Sequence[str]) -> dict[str, list[str]]:
    from distill2edge.evaluate.registry import metric_groups

    g = metric_groups()
    named = {"n-gram": g["ngram"], "embedding": g["embedding"], "Oracle-LLM": g["llm"]}
    return {k: [m for m in v if m in metrics] for k, v in named.items() if any(m in metrics for m in v)}


def run_grid(
    base: Recipe, out_dir: Path, *, same_teacher: str | None = None, different_teacher: str | None = None,
    metrics: Sequence[str] | None = None, judge: str | None = None, quick: bool = False,
    correction: str = "none", alpha: float = 0.05, references: bool = False, progress: bool = True,
    log: Log = print,
) -> dict[str, Any]:
    """Run the grid into `out_dir` (an existing one is resumed) and write its tables, figures and report."""
    from distill2edge.evaluate.registry import PAPER_METRICS, metric_group, resolve_metrics
    from distill2edge.pipeline import run_recipe
    from distill2edge.stats import load_grid_scores, run_tests, write_table3
    from distill2edge.stats.plots import cell_means, group_bars, group_means, heatmap

    t0 = time.perf_counter()
    same, different = assign_teachers(base, same_teacher, different_teacher)
    names = resolve_metrics(list(metrics or (QUICK_METRICS if quick else FULL_METRICS)))
    judge_name = None
    if any(metric_group(m) == "llm" for m in names):
        from distill2edge.evaluate.judge import DEFAULT_JUDGE

        judge_name = judge or os.environ.get("DISTILL2EDGE_JUDGE") or DEFAULT_JUDGE
    _check_judge(out_dir, judge_name)
    recipe = build_grid_recipe(base, same, different, names, references)
    log(f"grid: same vocabulary `{same}`, different `{different}`; metrics: {', '.join(names)}"
        + (f"; judge {judge_name}" if judge_name else ""))
    saved = os.environ.get("DISTILL2EDGE_JUDGE")
    if judge_name:
        os.environ["DISTILL2EDGE_JUDGE"] = judge_name  # the pipeline's evaluation builds the default judge
    try:
        pipeline = run_recipe(recipe, out_dir, progress=progress, log=log)
    finally:
        if saved is None:
            os.environ.pop("DISTILL2EDGE_JUDGE", None)
        else:
            os.environ["DISTILL2EDGE_JUDGE"] = saved
    os.replace(out_dir / "report.md", out_dir / "pipeline_report.md")

    cells = [c.key for c in grid_cells()]
    scores = load_grid_scores({k: out_dir / "stages" / f"evaluate_distilled.{k}" / "scores.csv" for k in cells})
    tested = [m for m in PAPER_METRICS if m in names] or list(names)
    results = run_tests(scores, tested, alpha=alpha, correction=correction)  # type: ignore[arg-type]
    labels = {"same-V": f"{same} vanilla", "same-D": f"{same} DSKD", "different-V": f"{different} ULD",
              "different-D": f"{different} DSKD-CMA", "same": f"same ({same})", "different": f"different ({different})"}
    table = write_table3(results, out_dir, alpha=alpha, correction=correction, column_labels=labels)
    means = cell_means(scores)
    groups = _group_names(tested)
    what = f"V = vanilla KD ({same}) / ULD ({different}); D = DSKD"
    heatmap(means, out_dir / "heatmap.png", title=f"Mean score per cell and metric ({what})")
    group_bars(means, out_dir / "group_means.png", groups=groups, title=f"Mean of the metrics per cell ({what})")
    gmeans = group_means(means, groups)
    stage_s = sum(v or 0 for k, v in pipeline["stage_seconds"].items())
    grid = {
        "same_teacher": same, "different_teacher": different, "quick": quick, "metrics": names, "tested_metrics": tested,
        "judge": judge_name, "correction": correction, "alpha": alpha, "n_questions": table["n_questions"],
        "cells": {k: {"teacher": recipe.distill[k].teacher, "teacher_state": recipe.distill[k].teacher_state,
                      "student": recipe.distill[k].student, "algorithm": recipe.distill[k].algorithm,
                      "means": means[k], "group_means": gmeans[k]} for k in cells},
        "table3": {r["row"]: {c: (v["rejected"] if v else None) for c, v in r["columns"].items()} for r in table["rows"]},
        "wall_time_s": round(time.perf_counter() - t0, 1), "stage_seconds_total": round(stage_s, 1),
    }
    write_json_atomic(out_dir / "metrics.json", {**pipeline, "grid": grid})
    write_text_atomic(out_dir / "report.md", grid_report(recipe, base.name, grid, table, pipeline))
    log(f"grid: wrote {out_dir / 'report.md'}, table3.md, heatmap.png, group_means.png")
    return grid


def _check_judge(out_dir: Path, judge_name: str | None) -> None:
    """Evaluation stages are keyed by the recipe, not the judge: refuse to resume under another judge."""
    path = out_dir / "grid.json"
    if path.exists():
        before = json.loads(path.read_text()).get("judge")
        if judge_name and before and before != judge_name:
            raise RecipeError(f"{out_dir} was judged by {before!r}; resuming with {judge_name!r} would mix judges "
                              "(use another --out)")
        judge_name = judge_name or before
    from distill2edge.run_folder import check_owned

    check_owned(out_dir)  # grid.json must not be what makes a user's folder look like a run folder
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps({"judge": judge_name}) + "\n")


# ------------------------------------------------------------------------------------ report
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
