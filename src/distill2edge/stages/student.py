"""Stage `student_init`: cut the student from a same-family model and measure where it starts.

The layers kept are `student.layers`' choice (evenly spaced, block influence measured on the recipe's
training prompts, or a list); the untrained student's validation answer cross-entropy is the point every
student learning curve starts from (`report.verdict`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from distill2edge.config import Recipe
from distill2edge.models import init_student_from_teacher, load_model
from distill2edge.preflight import name_layer_error
from distill2edge.runs import StageResult
from distill2edge.schema.algorithms import algorithm_spec
from distill2edge.stages.context import Context, Log
from distill2edge.tasks import get_task
from distill2edge.train.trainers import encode_all


def init_student(
    recipe: Recipe, splits: dict[str, list], out: Path, device: torch.device, *, source: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Prune `source` (default `student.init_from`; the pipeline resolves `teacher_sft.NAME` to that stage's
    model) to the chosen layers (block influence measured on the first
    `selection_samples` training examples) and measure the untrained student's answer cross-entropy on
    the validation split: the starting point every training stage is judged against."""
    s_cfg, data_cfg = recipe.student, recipe.data
    strategy, explicit = ("explicit", s_cfg.layers) if isinstance(s_cfg.layers, list) else (s_cfg.layers, None)
    cut_from = source or s_cfg.init_from
    if cut_from is None:  # the schema allows student.path instead; the pipeline runs this stage only without it
        raise ValueError("student_init: the student has no init_from to cut from (student.path is used as is)")
    path = init_student_from_teacher(
        cut_from, out, num_layers=None if explicit else s_cfg.num_layers, layers=explicit, strategy=strategy,
        encode=lambda tok: encode_all(tok, _selection_examples(splits["train"], s_cfg.selection_samples, strategy), data_cfg),
        mlp_width=s_cfg.mlp_width, progress=progress,
    )
    model, tok = load_model(str(path), device=device)
    record = json.loads((path / "student_init.json").read_text(encoding="utf-8"))
    metrics: dict[str, Any] = {
        "params": sum(p.numel() for p in model.parameters()), "layers": model.config.num_hidden_layers,
        "selection": record["selection"], "layers_kept": record["layers_kept"],
        "teacher_parameters": record["teacher_parameters"],
        **({"mlp_width": record["mlp_width"]} if "mlp_width" in record else {}),
    }
    if splits.get("validation"):
        ce = get_task(data_cfg.task).answer_ce(
            model, tok, splits["validation"], data_cfg, batch_size=recipe.evaluate.batch_size, device=device,
        )
        if ce is not None:  # a task without answer cross-entropy (classification) starts from no such point
            metrics["val_answer_ce"] = round(ce, 4)
    return metrics


def _selection_examples(train: list, count: int, strategy: str) -> list:
    """The training examples a layer choice is measured on: the first `count` (block influence, whose
    stage keys predate this), or `count` spread evenly over the split (answer_ce, which is sensitive to
    which contexts it sees)."""
    if strategy != "answer_ce":
        return train[:count]
    return train[:: max(1, len(train) // count)][:count]


def log_student_init(metrics: dict[str, Any], log: Log) -> None:
    share = metrics["params"] / metrics["teacher_parameters"] if metrics.get("teacher_parameters") else None
    width = f", MLPs narrowed to {metrics['mlp_width']} channels" if "mlp_width" in metrics else ""
    log(f"[student_init] {metrics.get('selection', 'evenly')} layers {metrics.get('layers_kept')}{width}: "
        f"{metrics['params'] / 1e6:.1f}M parameters" + (f" ({share:.0%} of the teacher)" if share else "")
        + (f", validation answer CE before training {metrics['val_answer_ce']:.2f} nats"
           if "val_answer_ce" in metrics else ""))


def student_init_stage(ctx: Context) -> StageResult | None:
    """Cut the student from `student.init_from` (a model, or `teacher_sft.NAME`: that teacher's SFT stage,
    which must have run), record it as `student_base` (a `student.path` is used as is) and check the
    multi-teacher layer maps against it. Returns the stage, or None for a student used as is."""
    recipe, student_cfg = ctx.recipe, ctx.recipe.student
    stage: StageResult | None = None
    if student_cfg.init_from is not None:
        source_teacher = student_cfg.source_teacher()
        source = ctx.models[student_cfg.init_from] if source_teacher else student_cfg.init_from
        upstream = ctx.producers[student_cfg.init_from] if source_teacher else None

        def init_fn(out: Path, _work: Path) -> dict[str, Any]:
            try:
                return init_student(recipe, ctx.splits, out / "model", ctx.device, source=source, progress=ctx.progress)
            except ValueError as e:
                raise name_layer_error(e, recipe) from None

        stage = ctx.run.stage(
            # The vocabulary trim runs after training (stages.vocabulary): it does not change the cut.
            "student_init", student_cfg.model_dump(mode="json", exclude={"vocabulary"}), init_fn, log=ctx.log,
            inputs={"data": ctx.data, **({upstream.name: upstream} if upstream else {})},
            content=ctx.run.content(init_from=None if upstream else student_cfg.init_from),
        )
        if not stage.reused:
            log_student_init(stage.metrics, ctx.log)
        ctx.add_model("student_base", stage)
    else:
        ctx.models["student_base"], ctx.producers["student_base"] = str(student_cfg.path), None
    preflight_layer_maps(recipe, ctx.models["student_base"])
    return stage


def preflight_layer_maps(recipe: Recipe, student_ref: str) -> None:
    """Check every multi-teacher layer map against the models' layer counts (read from their configs)
    before any distillation trains, so a wrong map fails in seconds rather than after the SFT stages."""
    from transformers import AutoConfig

    from distill2edge.models.loading import resolve_model
    from distill2edge.train.multi import check_layer_maps

    def layers(ref: str) -> int:
        config = AutoConfig.from_pretrained(resolve_model(ref))
        return int((config.get_text_config() if hasattr(config, "get_text_config") else config).num_hidden_layers)

    multi = {n: d for n, d in recipe.distill.items() if algorithm_spec(d.algorithm).hidden_terms and d.hidden.weight > 0}
    if not multi:
        return
    try:
        n_student = layers(student_ref)
        counts = {t: layers(recipe.teachers[t].path) for d in multi.values() for t in d.teacher_names()}
    except Exception:  # noqa: BLE001 - a model that cannot be read fails in its stage, with load_model's message
        return
    for name, d in multi.items():
        check_layer_maps(d, n_student, counts, stage=f"distill.{name}")
