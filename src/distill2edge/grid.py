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
report.md (setup, cell means, Table 3 and the findings for RQ1-RQ3 stated from the numbers, written by
`report.grid`), metrics.json (the pipeline's metrics plus `grid`), and pipeline_report.md (the per-model
report).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distill2edge.atomic import write_json_atomic, write_text_atomic
from distill2edge.config import CACHEABLE_ALGORITHMS, DistillConfig, Recipe, RecipeError
from distill2edge.report.grid import grid_report
from distill2edge.stats.hypotheses import grid_cells

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

        s_tok, s_cfg = _tokenizer_and_config(base.student.path or base.student_source_ref() or "")
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
                      references: bool = False, judge: str | None = None) -> Recipe:
    """The base recipe with the 16 grid cells as its distillations (and only those, plus with
    `references` the teachers and students, evaluated); `judge` (a judge spec) replaces the base
    recipe's `evaluate.judge` when given."""
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
                evaluate={**data["evaluate"], "models": roles, "metrics": resolve_metrics(metrics),
                          **({"judge": judge} if judge else {})})
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
    """Run the grid into `out_dir` (an existing one is resumed) and write its tables, figures and report.

    `judge` (a judge spec) grades the Oracle-LLM metrics, if `metrics` has any; default the base recipe's
    `evaluate.judge`, else the default judge. It reaches the evaluation as the grid recipe's `evaluate.judge`."""
    from distill2edge.evaluate.registry import PAPER_METRICS, metric_group, resolve_metrics
    from distill2edge.pipeline import run_recipe
    from distill2edge.stats import load_grid_scores, run_tests, write_table3
    from distill2edge.stats.plots import cell_means, group_bars, group_means, heatmap

    t0 = time.perf_counter()
    same, different = assign_teachers(base, same_teacher, different_teacher)
    names = resolve_metrics(list(metrics or (QUICK_METRICS if quick else FULL_METRICS)))
    judge_name = None
    if any(metric_group(m) == "llm" for m in names):
        from distill2edge.evaluate.judge_spec import DEFAULT_JUDGE

        judge_name = judge or base.evaluate.judge or DEFAULT_JUDGE
    _check_judge(out_dir, judge_name)
    # The judge reaches the evaluation stages as the recipe's `evaluate.judge` (the default one as empty,
    # so grids judged by it keep their stage keys).
    recipe = build_grid_recipe(base, same, different, names, references, judge=judge_name)
    log(f"grid: same vocabulary `{same}`, different `{different}`; metrics: {', '.join(names)}"
        + (f"; judge {judge_name}" if judge_name else ""))
    pipeline = run_recipe(recipe, out_dir, progress=progress, log=log)
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
    """Refuse to resume under another judge. Evaluation stages are keyed by the recipe, which names the
    judge only when it is not the default one, and grids made before `evaluate.judge` existed did not
    name it at all: their stages would be reused with another judge's scores."""
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
