"""Stages `distill.NAME`: one distillation each, from its teachers (base or SFT) into its student (the cut
student, the SFT student, or an earlier distillation's), with any registered algorithm."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from distill2edge.config import DistillConfig, Recipe
from distill2edge.runs import StageResult
from distill2edge.schema.algorithms import algorithm_spec
from distill2edge.stage_keys import distill_stage_key, teacher_stage_config
from distill2edge.stages.context import Context
from distill2edge.stages.data import DistillData
from distill2edge.train.trainers import run_distill, run_multi_distill


def with_upstream(recipe: Recipe, names: Collection[str] | None) -> dict[str, DistillConfig]:
    """The distillations `names` (all when None) and those whose student they start from, in recipe order."""
    need = set(recipe.distill if names is None else names)
    if need - set(recipe.distill):
        raise ValueError(f"no distillation named {', '.join(sorted(need - set(recipe.distill)))}; "
                         f"the recipe has: {', '.join(recipe.distill)}")
    for name in reversed(recipe.distill):  # a distillation can only start from an earlier one
        if name in need and recipe.distill[name].student in recipe.distill:
            need.add(recipe.distill[name].student)
    return {n: d for n, d in recipe.distill.items() if n in need}


def student_role(dcfg: DistillConfig) -> str:
    """The role of the model a distillation starts from."""
    return {"base": "student_base", "sft": "student_sft"}.get(dcfg.student, f"distilled.{dcfg.student}")


def distill_stage(ctx: Context, name: str, dcfg: DistillConfig, data: DistillData) -> StageResult:
    """The stage `distill.NAME`, its teachers and student resolved against the models made so far; records
    its model as `distilled.NAME`. The `teacher_data` stages it names (`extra_data`) join its training split."""
    recipe = ctx.recipe
    teacher_roles = {
        t: f"teacher_sft.{t}" if dcfg.teacher_state == "sft" else f"teacher.{t}" for t in dcfg.teacher_names()
    }
    s_role = student_role(dcfg)
    for role, what in [*((r, "teacher_state") for r in teacher_roles.values()), (s_role, "student")]:
        if role not in ctx.models:
            raise ValueError(f"distill.{name}.{what} needs {role}, but sft.{role.split('_')[0]}.enabled is false")
    d_data, d_splits = data
    d_splits = ctx.with_extra(d_splits, dcfg.extra_data)
    d_data_cfg = dcfg.data or recipe.data
    teachers: dict[str, tuple[str, str]] = {t: (ctx.models[r], recipe.teachers[t].dtype) for t, r in teacher_roles.items()}
    student_ref = ctx.models[s_role]

    def distill_fn(out: Path, work: Path) -> dict[str, Any]:
        ctx.warn_answers_cut(f"distill.{name}", student_ref, d_splits["train"], d_data_cfg)
        common: dict[str, Any] = {
            "device": ctx.device, "student_dtype": recipe.student.dtype, "progress": ctx.progress,
            "desc": f"distill {name}", "probe": ctx.answer_probe(dcfg.train, d_splits, d_data_cfg),
        }
        if algorithm_spec(dcfg.algorithm).several_teachers:
            result = run_multi_distill(teachers, student_ref, d_splits, d_data_cfg, dcfg, out / "model", work,
                                       stage=f"distill.{name}", **common)
        else:
            (t_ref, t_dtype), = teachers.values()
            t_cfg = recipe.teachers[dcfg.teacher_names()[0]]
            result = run_distill(
                t_ref, student_ref, d_splits, d_data_cfg, dcfg, out / "model", work, teacher_dtype=t_dtype,
                cache_root=ctx.run.root / "cache" / "teacher", teacher_device=t_cfg.device,
                teacher_offload=t_cfg.offload, **common,
            )
        return result.metrics()

    inputs = {d_data.name: d_data, **{ref: ctx.extra[ref][0] for ref in dcfg.extra_data}}
    for role in (*teacher_roles.values(), s_role):
        if (producer := ctx.producers[role]) is not None:
            inputs[producer.name] = producer
    config = {
        "distill": distill_stage_key(dcfg), "student": s_role,
        **teacher_stage_config(dcfg, teacher_roles, ctx.models, ctx.producers, recipe),
    }
    content = ctx.run.content(**{r: ctx.models[r] for r in (*teacher_roles.values(), s_role) if ctx.producers[r] is None})
    stage = ctx.run.stage(f"distill.{name}", config, distill_fn, inputs=inputs, log=ctx.log, ranks="all", content=content)
    ctx.add_model(f"distilled.{name}", stage)
    return stage
