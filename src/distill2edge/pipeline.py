"""The recipe pipeline: data -> student_init -> SFT (teachers, student) -> teacher_data -> distillations ->
vocabulary -> evaluate -> export -> bench -> report. Each stage is a module of `distill2edge.stages`.

After training, `student.vocabulary` trims each trained student's vocabulary to its domain
(`stages.vocabulary`). `plan` decides from the recipe which stages run; `run_recipe` runs them in order
through `Run.stage`, so completed stages are reused and a killed one resumes. The run is complete (exit 0) only when
`metrics.json` and `report.md` are written. Under `accelerate launch` the SFT and distillation stages train
on every process; the other stages run on the main process.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from distill2edge.atomic import write_json_atomic
from distill2edge.config import DistillConfig, Recipe
from distill2edge.models.placement import resolve_device
from distill2edge.preflight import preflight_recipe
from distill2edge.report.markdown import write_report
from distill2edge.runs import Run, StageResult, ending_status
from distill2edge.stages.bench import bench_stage
from distill2edge.stages.context import Context, Log
from distill2edge.stages.data import data_stage, distill_data
from distill2edge.stages.distill import distill_stage, student_role, with_upstream
from distill2edge.stages.evaluate import evaluate_stages
from distill2edge.stages.export import export_stages
from distill2edge.stages.sft import sft_stage
from distill2edge.stages.student import student_init_stage
from distill2edge.stages.teacher_data import teacher_data_stages
from distill2edge.stages.text import text_stages
from distill2edge.stages.vocabulary import own_data_by_role, vocabulary_stages
from distill2edge.train import distributed as dist


def run_recipe(
    recipe: Recipe, out_dir: Path, *, progress: bool = True, log: Log = print,
    until: Literal["report", "distill"] = "report", distill: Collection[str] | None = None,
) -> dict[str, Any]:
    """Run every stage of `recipe` in `out_dir`; returns the metrics written to metrics.json.

    `until="distill"` stops after the distillations (no evaluation, export, bench or report) and returns
    {"models": {role: model folder}, "training": {stage: metrics}}; `distill` then names the
    distillations to run (plus those they start from; default all). Processes other than the main one
    return {} (under `accelerate launch`; the main process writes every file).
    """
    t_start = time.perf_counter()
    device = resolve_device(recipe.device, dist.local_rank() if dist.is_distributed() else None)
    if dist.is_distributed():
        dist.state(device)
    if not dist.is_main():
        progress, log = False, lambda _msg: None
    config = recipe.model_dump(mode="json")
    distills = with_upstream(recipe, distill)
    preflight_recipe(recipe)
    run = Run(out_dir, recipe.name, config, recipe.seed, str(device))
    try:
        metrics = _run_stages(recipe, run, device, progress, log, until == "distill", distills)
        if until == "distill" or not dist.is_main():
            run.finish("distilled" if until == "distill" else "complete")
            return metrics
        metrics["wall_time_s"] = round(time.perf_counter() - t_start, 1)
        write_json_atomic(out_dir / "metrics.json", metrics)
        write_report(out_dir, recipe, metrics, run.manifest)
        run.finish("complete")
    except BaseException as e:
        run.finish(ending_status(e), f"{type(e).__name__}: {e}")
        raise
    finally:
        run.close()
    return metrics


@dataclass(frozen=True)
class Plan:
    """Which training stages a run makes, decided from the recipe before any of them runs."""

    distills: dict[str, DistillConfig]
    teacher_sft: list[str]  # teacher names whose SFT stage runs
    teacher_data: set[str]  # `teacher_data.NAME` and `text.NAME` stages some training stage names in `extra_data`
    student_sft: bool
    cut_after_teacher_sft: bool  # the student is cut from a fine-tuned teacher


def plan(recipe: Recipe, distills: dict[str, DistillConfig], train_only: bool) -> Plan:
    """The SFT of every teacher that a distillation, the student's initialisation, a `teacher_data` stage or
    the evaluation asks for; the student's SFT when evaluated or distilled from."""
    wanted = set() if train_only else set(recipe.roles()) if "all" in recipe.evaluate.models else set(recipe.evaluate.models)
    student_sft = recipe.sft.student.enabled and ("student_sft" in wanted or any(d.student == "sft" for d in distills.values()))
    extra_data = {ref for d in distills.values() for ref in d.extra_data} | set(recipe.sft.student.extra_data if student_sft else [])
    source = recipe.student.source_teacher()
    teacher_sft = [t for t in recipe.teachers if recipe.sft.teacher.enabled and (
        t == source or f"teacher_data.{t}" in extra_data or f"teacher_sft.{t}" in wanted
        or any(t in d.teacher_names() and d.teacher_state == "sft" for d in distills.values()))]
    return Plan(distills, teacher_sft, extra_data, student_sft, bool(source))


def _run_stages(
    recipe: Recipe, run: Run, device: torch.device, progress: bool, log: Log, train_only: bool,
    distills: dict[str, DistillConfig],
) -> dict[str, Any]:
    data, splits = data_stage(recipe, run, log)
    ctx = Context(recipe, run, device, progress, log, data, splits,
                  models={f"teacher.{t}": cfg.path for t, cfg in recipe.teachers.items()})
    ctx.producers.update(dict.fromkeys(ctx.models))
    steps = plan(recipe, distills, train_only)
    d_data = distill_data(ctx, distills)
    trained: dict[str, tuple[StageResult, str]] = {}  # training stage -> (stage, role of the model it starts from)

    # Layers cut from a same-family model (or, from a fine-tuned teacher, right after that SFT).
    student_init = None if steps.cut_after_teacher_sft else student_init_stage(ctx)
    for t in steps.teacher_sft:
        cfg = recipe.teachers[t]
        stage = sft_stage(ctx, f"teacher_sft.{t}", recipe.sft.teacher, cfg.path, cfg.dtype, None)
        trained[stage.name] = (stage, f"teacher.{t}")
    text_stages(ctx, steps.teacher_data)
    teacher_data_stages(ctx, steps.teacher_data)
    if steps.cut_after_teacher_sft:
        student_init = student_init_stage(ctx)
    if steps.student_sft:
        stage = sft_stage(ctx, "student_sft", recipe.sft.student, ctx.models["student_base"], recipe.student.dtype,
                          student_init)
        trained[stage.name] = (stage, "student_base")
    for name, dcfg in distills.items():  # in recipe order: a later one may start from an earlier one's student
        stage = distill_stage(ctx, name, dcfg, d_data[name])
        trained[stage.name] = (stage, student_role(dcfg))
    # After all training: a distillation may start from an earlier one's (untrimmed) student.
    trims = vocabulary_stages(ctx, ["student_sft"] * steps.student_sft + [f"distilled.{n}" for n in distills],
                              own_data_by_role(ctx, distills, d_data))

    if train_only:
        made = {s.name for s, _ in trained.values()} | {s.name for s in trims.values()}
        models = {r: m for r, m in ctx.models.items() if (p := ctx.producers[r]) is not None and p.name in made}
        return {"models": models, "training": {name: s.metrics for name, (s, _) in trained.items()}}
    if not run.main_only_from_here():
        return {}  # training is over; the main process evaluates, exports and benchmarks alone
    results = evaluate_stages(ctx)
    exports = export_stages(ctx, results)
    return {
        "recipe": recipe.name,
        "models": results,
        "exports": {name: st.metrics for name, st in exports.items()},
        "bench": bench_stage(ctx, exports),
        "training": {name: {**s.metrics, "starts_from": start} for name, (s, start) in trained.items()},
        "student_init": student_init.metrics if student_init is not None else None,
        **({"vocabulary": {role: st.metrics for role, st in trims.items()}} if trims else {}),
        "data": data.metrics,
        "stage_seconds": {
            name: rec.get("seconds") for name, rec in run.manifest["stages"].items() if rec.get("status") == "complete"
        },
    }
