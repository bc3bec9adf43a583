"""The recipe pipeline: data -> student init -> SFT (teacher, student) -> distill -> evaluate -> report.

Every stage goes through `Run.stage`, so completed stages are reused and a killed one resumes. The
run is complete (exit 0) only when `metrics.json` and `report.md` are written.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from distill2edge.config import Recipe
from distill2edge.data.qa import prepare_splits, read_split, write_jsonl
from distill2edge.evaluate.generate import evaluate_model
from distill2edge.models import DTYPES, init_student_from_teacher, load_model
from distill2edge.report.markdown import write_report
from distill2edge.runs import Run, StageResult, write_json_atomic
from distill2edge.train.stages import run_sft, run_vanilla_kd

Log = Callable[[str], None]
ROLES = {
    "teacher": "teacher (base)",
    "teacher_sft": "teacher (SFT)",
    "student_base": "student (base)",
    "student_sft": "student (SFT)",
    "student_distilled": "student (distilled)",
}


def resolve_device(pref: str) -> torch.device:
    if pref == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for but no CUDA device is available")
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(pref)


def _load_splits(data_stage: StageResult) -> dict[str, list]:
    return {name: read_split(data_stage.out_dir / f"{name}.jsonl") for name in ("train", "validation", "test")}


def run_recipe(recipe: Recipe, out_dir: Path, *, progress: bool = True, log: Log = print) -> dict[str, Any]:
    """Run every stage of `recipe` in `out_dir`; returns the metrics written to metrics.json."""
    t_start = time.perf_counter()
    device = resolve_device(recipe.device)
    config = recipe.model_dump(mode="json")
    run = Run(out_dir, recipe.name, config, recipe.seed, str(device))
    try:
        metrics = _run_stages(recipe, run, device, progress, log)
        metrics["wall_time_s"] = round(time.perf_counter() - t_start, 1)
        write_json_atomic(out_dir / "metrics.json", metrics)
        write_report(out_dir, recipe, metrics, run.manifest)
    except BaseException as e:
        run.finish("failed", f"{type(e).__name__}: {e}")
        raise
    run.finish("complete")
    return metrics


def _run_stages(recipe: Recipe, run: Run, device: torch.device, progress: bool, log: Log) -> dict[str, Any]:
    data_cfg = recipe.data

    def data_fn(out: Path, _work: Path) -> dict[str, Any]:
        splits = prepare_splits(data_cfg)
        for name, examples in splits.items():
            write_jsonl(examples, out / f"{name}.jsonl")
        return {
            f"{name}_{what}": n
            for name, examples in splits.items()
            for what, n in (("questions", len(examples)), ("contexts", len({e.context_id for e in examples})))
        }

    data = run.stage("data", data_cfg.model_dump(mode="json"), data_fn, log=log)
    splits = _load_splits(data)

    # Student initialisation (layer pruning of a same-family model), or a model used as is.
    student_cfg = recipe.student
    student_init: StageResult | None = None
    if student_cfg.init_from is not None:
        def init_fn(out: Path, _work: Path) -> dict[str, Any]:
            path = init_student_from_teacher(
                student_cfg.init_from, out / "model", num_layers=student_cfg.num_layers, layers=student_cfg.layers
            )
            model, _ = load_model(str(path))
            return {"params": sum(p.numel() for p in model.parameters()), "layers": model.config.num_hidden_layers}

        student_init = run.stage("student_init", student_cfg.model_dump(mode="json"), init_fn, log=log)
        student_base_ref = str(student_init.out_dir / "model")
    else:
        student_base_ref = str(student_cfg.path)
    teacher_ref = recipe.teacher.path
    models: dict[str, str] = {"teacher": teacher_ref, "student_base": student_base_ref}
    stages: dict[str, StageResult] = {}

    wanted = set(recipe.evaluate.models)
    for role, sft_cfg, base_ref, dtype, upstream in (
        ("teacher", recipe.sft.teacher, teacher_ref, recipe.teacher.dtype, None),
        ("student", recipe.sft.student, student_base_ref, student_cfg.dtype, student_init),
    ):
        needed = getattr(recipe.distill, role) == "sft" or f"{role}_sft" in wanted
        if not (sft_cfg.enabled and needed):
            continue

        def sft_fn(out: Path, work: Path, _ref=base_ref, _cfg=sft_cfg, _dtype=dtype, _role=role) -> dict[str, Any]:
            result = run_sft(
                _ref, splits, data_cfg, _cfg, out / "model", work, device=device, dtype=_dtype,
                progress=progress, desc=f"sft {_role}",
            )
            return result.metrics()

        inputs = {"data": data, **({"student_init": upstream} if upstream else {})}
        config = {"model": base_ref if upstream is None else "student_init", "sft": sft_cfg.model_dump(mode="json")}
        stage = run.stage(f"sft_{role}", config, sft_fn, inputs=inputs, log=log)
        stages[f"sft_{role}"] = stage
        models[f"{role}_sft"] = str(stage.out_dir / "model")

    # Distillation.
    dcfg = recipe.distill
    for role in ("teacher", "student"):
        if getattr(dcfg, role) == "sft" and f"{role}_sft" not in models:
            raise ValueError(f"distill.{role} is 'sft' but sft.{role}.enabled is false")
    kd_teacher = models["teacher_sft" if dcfg.teacher == "sft" else "teacher"]
    kd_student = models["student_sft" if dcfg.student == "sft" else "student_base"]

    def distill_fn(out: Path, work: Path) -> dict[str, Any]:
        result = run_vanilla_kd(
            kd_teacher, kd_student, splits, data_cfg, dcfg, out / "model", work, device=device,
            teacher_dtype=recipe.teacher.dtype, student_dtype=student_cfg.dtype, progress=progress,
        )
        return result.metrics()

    d_inputs = {"data": data}
    d_inputs.update({k: v for k, v in stages.items()})
    if student_init:
        d_inputs["student_init"] = student_init
    d_config = {"distill": dcfg.model_dump(mode="json"), "teacher": teacher_ref}
    distill = run.stage("distill", d_config, distill_fn, inputs=d_inputs, log=log)
    stages["distill"] = distill
    models["student_distilled"] = str(distill.out_dir / "model")

    # Evaluation of each model on the test split.
    ecfg = recipe.evaluate
    results: dict[str, dict[str, Any]] = {}
    for role in ecfg.models:
        if role not in models:
            log(f"[evaluate] skipping {role}: not produced by this recipe")
            continue
        ref = models[role]

        def eval_fn(out: Path, _work: Path, _ref=ref, _role=role) -> dict[str, Any]:
            dtype = DTYPES[recipe.teacher.dtype if _role.startswith("teacher") else student_cfg.dtype]
            model, tok = load_model(_ref, dtype=dtype, device=device)
            summary = evaluate_model(
                model, tok, splits["test"], out, template=data_cfg.prompt_template, max_length=data_cfg.max_length,
                max_new_tokens=ecfg.max_new_tokens, metrics=ecfg.metrics, batch_size=ecfg.batch_size,
                device=device, progress=progress, desc=f"evaluate {_role}",
            )
            summary["params"] = sum(p.numel() for p in model.parameters())
            return summary

        e_inputs = {"data": data, **{k: v for k, v in stages.items() if k in _producer(role)}}
        if student_init and role.startswith("student"):
            e_inputs["student_init"] = student_init
        e_config = {"model": ref if role == "teacher" else role, "evaluate": ecfg.model_dump(mode="json")}
        stage = run.stage(f"evaluate_{role}", e_config, eval_fn, inputs=e_inputs, log=log)
        results[role] = {"role": ROLES[role], "model": ref, **stage.metrics}

    return {
        "recipe": recipe.name,
        "models": results,
        "training": {name: s.metrics for name, s in stages.items()},
        "data": data.metrics,
        "stage_seconds": {
            name: rec.get("seconds") for name, rec in run.manifest["stages"].items() if rec.get("status") == "complete"
        },
    }


def _producer(role: str) -> tuple[str, ...]:
    """Stages whose output a model role depends on (for evaluation stage keys)."""
    return {
        "teacher": (),
        "teacher_sft": ("sft_teacher",),
        "student_base": (),
        "student_sft": ("sft_student",),
        "student_distilled": ("distill",),
    }[role]
