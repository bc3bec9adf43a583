"""Stages `evaluate_ROLE`: each model scored on the test split as its task scores it (QA: greedy answers,
token F1, ROUGE-L and the rest of `evaluate.metrics`, plus the answer cross-entropy; classification:
accuracy and macro F1). Runs on the main process only, after training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from distill2edge.config import Recipe
from distill2edge.models import DTYPES, load_model
from distill2edge.stages.context import Context
from distill2edge.tasks import get_task


def evaluate_stages(ctx: Context) -> dict[str, dict[str, Any]]:
    """One evaluation stage per model role on the test split; returns role -> {role label, model, metrics}."""
    recipe, models, producers, run, log = ctx.recipe, ctx.models, ctx.producers, ctx.run, ctx.log
    ecfg = recipe.evaluate
    roles = [r for r in recipe.roles() if r in models] if "all" in ecfg.models else list(ecfg.models)
    results: dict[str, dict[str, Any]] = {}
    for role in roles:
        if role not in models:
            log(f"[evaluate] skipping {role}: not produced by this recipe")
            continue
        ref = models[role]
        dtype = recipe.teachers[role.split(".", 1)[1]].dtype if role.startswith("teacher") else recipe.student.dtype

        def eval_fn(out: Path, _work: Path, _ref=ref, _role=role, _dtype=dtype) -> dict[str, Any]:
            return _evaluate(recipe, _ref, _role, _dtype, ctx.splits["test"], out, ctx.device, ctx.progress)

        producer = producers[role]
        e_inputs = {"data": ctx.data, **({producer.name: producer} if producer is not None else {})}
        e_config = {
            "model": ref if producer is None else role, "dtype": dtype, "evaluate": ecfg.model_dump(mode="json"),
            "answer_ce": True,
        }
        stage = run.stage(f"evaluate_{role}", e_config, eval_fn, inputs=e_inputs, log=log,
                          content=run.content(model=ref if producer is None else None))
        results[role] = {"role": role_label(role), "model": ref, **stage.metrics}
    return results


def _evaluate(
    recipe: Recipe, ref: str, role: str, dtype: str, test: list, out: Path, device: torch.device, progress: bool,
) -> dict[str, Any]:
    """One model's evaluation, as `data.task` scores it (`tasks.Task.evaluate`): classification accuracy, or
    generated answers plus the answer cross-entropy."""
    model, tok = load_model(ref, dtype=DTYPES[dtype], device=device)
    return get_task(recipe.data.task).evaluate(
        model, tok, test, out, recipe.data, recipe.evaluate, device=device, progress=progress, desc=f"evaluate {role}",
    )


def best_distilled(recipe: Recipe, results: dict[str, dict[str, Any]]) -> str:
    """The distilled role with the best test score (token F1 if evaluated, else the first metric)."""
    metrics = recipe.evaluate.metrics
    metric = next((m for m in ("token_f1", "macro_f1") if m in metrics), metrics[0])
    scored = [(r[metric], role) for role, r in results.items() if role.startswith("distilled.") and metric in r]
    if not scored:
        raise ValueError("export.models: best_distilled needs at least one evaluated distilled model")
    return max(scored)[1]


def role_label(role: str) -> str:
    """A readable name for a model role, e.g. `distilled.dskd` -> `student distilled: dskd`."""
    kind, _, name = role.partition(".")
    return {
        "teacher": f"teacher {name} (base)",
        "teacher_sft": f"teacher {name} (SFT)",
        "student_base": "student (base)",
        "student_sft": "student (SFT)",
        "distilled": f"student distilled: {name}",
    }[kind]
