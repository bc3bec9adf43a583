"""The pipeline's output stages, after training: evaluation of each model, exports, the bench.

Each is one `Run.stage` per model (and device profile), keyed like the training stages, so a rerun
reuses what is done. `pipeline.run_recipe` runs them in order, on the main process only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from distill2edge.config import Recipe
from distill2edge.export.for_profile import export_for_profile
from distill2edge.export.profiles import load_profile
from distill2edge.models import DTYPES, load_model
from distill2edge.runs import Run, StageResult
from distill2edge.tasks import get_task

Log = Callable[[str], None]


def evaluate_stages(
    recipe: Recipe, run: Run, models: dict[str, str], producers: dict[str, StageResult | None], data: StageResult,
    splits: dict[str, list], device: torch.device, progress: bool, log: Log,
) -> dict[str, dict[str, Any]]:
    """One evaluation stage per model role on the test split; returns role -> {role label, model, metrics}."""
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
            return _evaluate(recipe, _ref, _role, _dtype, splits["test"], out, device, progress)

        producer = producers[role]
        e_inputs = {"data": data, **({producer.name: producer} if producer is not None else {})}
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


def run_export_stages(
    recipe: Recipe, run: Run, models: dict[str, str], producers: dict[str, StageResult | None],
    results: dict[str, dict[str, Any]], progress: bool, log: Log,
) -> dict[str, StageResult]:
    """One export stage per (model, device profile); gate failures are recorded, not raised, by default.
    Stage metrics: what `export_for_profile` returns plus `role` and `chosen_as`."""
    xcfg = recipe.export
    exports: dict[str, StageResult] = {}
    for spec in xcfg.models:
        role = best_distilled(recipe, results) if spec == "best_distilled" else spec
        producer = producers[role]
        for profile in xcfg.profiles:
            prof = load_profile(profile)

            def export_fn(out: Path, _work: Path, _ref=models[role], _prof=prof, _role=role, _spec=spec) -> dict[str, Any]:
                record = export_for_profile(Path(_ref), _prof, out, raise_on_gate=xcfg.on_gate_failure == "fail")
                return {"role": _role, "chosen_as": _spec, **record}

            inputs = {producer.name: producer} if producer is not None else {}
            config = {
                "model": models[role] if producer is None else role, "profile": prof.model_dump(mode="json"),
                "on_gate_failure": xcfg.on_gate_failure,
            }
            stage = run.stage(f"export_{role}.{prof.name}", config, export_fn, inputs=inputs, log=log,
                              content=run.content(model=models[role] if producer is None else None))
            exports[stage.name] = stage
    return exports


def run_bench_stage(
    recipe: Recipe, run: Run, models: dict[str, str], producers: dict[str, StageResult | None],
    export_stages: dict[str, StageResult], data: StageResult, splits: dict[str, list], log: Log,
) -> dict[str, Any] | None:
    """Benchmark every teacher (SFT version when there is one, torch; with `bench.same_bits` also exported
    to each GGUF type the student was) against the exported student: its torch folder and each export
    that passed its gates. Returns bench.json's per-model summary and its equal-bits ratios."""
    bcfg = recipe.bench
    if not bcfg.enabled:
        return None
    exports = {name: st.metrics for name, st in export_stages.items()}
    from distill2edge.bench import BenchModel
    from distill2edge.bench.api import run_bench, settings_for_recipe

    entries: list[tuple[str, str, str]] = []  # (role, path, name)
    inputs: dict[str, StageResult] = {"data": data}
    # The teachers the distillations learn from (a recipe may name others for the grid), SFT version if made.
    used = [t for t in recipe.teachers if any(t in d.teacher_names() for d in recipe.distill.values())]
    for t in used or list(recipe.teachers):
        role = f"teacher_sft.{t}" if f"teacher_sft.{t}" in models else f"teacher.{t}"
        entries.append(("teacher", models[role], role))
    students = dict.fromkeys(e["role"] for e in exports.values() if e["status"] == "exported")
    for role in students:
        entries.append(("student", models[role], f"{role} (torch)"))
    for stage_name, e in exports.items():
        if e["status"] == "exported":
            entries.append(("student", str(run.stages_dir / stage_name / e["artifact"]), f"{e['role']} ({e['profile']})"))
            inputs[stage_name] = export_stages[stage_name]
    for _role, _path, name in entries:
        producer = producers.get(name.split(" ")[0])
        if producer is not None:
            inputs[producer.name] = producer
    test = splits["test"][: bcfg.max_questions]

    def bench_fn(out: Path, _work: Path) -> dict[str, Any]:
        result = run_bench(
            [BenchModel(Path(path), role, name=name) for role, path, name in entries], test, out,
            settings=settings_for_recipe(recipe, threads=bcfg.threads, batch_size=bcfg.batch_size),
            same_bits=bcfg.same_bits, log=log,
        )
        return {"models": [bench_summary(r) for r in result["models"]], "same_bits": result["same_bits"],
                "bandwidth_gb_s": result["bandwidth"]["read_gb_s"]}

    config = {"bench": bcfg.model_dump(mode="json"), "models": [(r, n) for r, _p, n in entries]}
    content = run.content(**{name: path for _r, path, name in entries if producers.get(name.split(" ")[0]) is None
                             and not path.startswith(str(run.root))})
    return run.stage("bench", config, bench_fn, inputs=inputs, log=log, content=content).metrics


def bench_summary(rec: dict[str, Any]) -> dict[str, Any]:
    """The per-model summary kept in the bench stage's metrics: sizes, speeds, roofline fraction, accuracy."""
    keys = ("name", "role", "format", "weight_type", "params", "file_bytes", "decode_tokens_per_s", "questions_per_s",
            "peak_rss_mb")
    out = {k: rec.get(k) for k in keys}
    out["ms_per_answer"] = rec.get("answer_ms", {}).get("mean")
    out["roofline_fraction"] = (rec.get("roofline") or {}).get("fraction")
    out.update({m: v for m, v in (rec.get("accuracy") or {}).items()})
    return out


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
