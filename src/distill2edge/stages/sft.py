"""Stages `sft_teacher.NAME` and `sft_student`: supervised fine-tuning (LoRA or full) on the answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill2edge.config import SFTStageConfig
from distill2edge.runs import StageResult
from distill2edge.stages.context import Context
from distill2edge.train.trainers import run_sft


def sft_stage_name(role: str) -> str:
    """`teacher_sft.NAME` -> `sft_teacher.NAME`; `student_sft` -> `sft_student`."""
    return "sft_" + role.replace("_sft", "")


def sft_stage(
    ctx: Context, role: str, sft_cfg: SFTStageConfig, base_ref: str, dtype: str, upstream: StageResult | None,
) -> StageResult:
    """The SFT stage of `role` (`teacher_sft.NAME` or `student_sft`) from `base_ref`, produced by `upstream`
    (the student_init stage) or, when None, a model outside the run folder; `sft.student.extra_data` adds
    the examples of those `teacher_data` stages to its training split. Records the model under `role`."""
    splits = ctx.with_extra(ctx.splits, sft_cfg.extra_data)

    def sft_fn(out: Path, work: Path) -> dict[str, Any]:
        ctx.warn_answers_cut(sft_stage_name(role), base_ref, splits["train"], ctx.recipe.data)
        result = run_sft(
            base_ref, splits, ctx.recipe.data, sft_cfg, out / "model", work, device=ctx.device, dtype=dtype,
            progress=ctx.progress, desc=f"sft {role}", probe=ctx.answer_probe(sft_cfg.train, splits, ctx.recipe.data),
        )
        return result.metrics()

    inputs = {"data": ctx.data, **({"student_init": upstream} if upstream else {}),
              **{ref: ctx.extra[ref][0] for ref in sft_cfg.extra_data}}
    config = {"model": base_ref if upstream is None else "student_init", "sft": sft_cfg.model_dump(mode="json")}
    stage = ctx.run.stage(sft_stage_name(role), config, sft_fn, inputs=inputs, log=ctx.log, ranks="all",
                          content=ctx.run.content(model=base_ref if upstream is None else None))
    ctx.add_model(role, stage)
    return stage
