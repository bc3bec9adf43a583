"""Stage `bench`: the teachers against the exported student (torch folder and each export that passed its
gates) on the test questions: decode speed, time per answer, size, memory, roofline fraction and, with
`bench.same_bits`, the teachers exported to the student's GGUF types so speed is compared at equal bits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill2edge.runs import StageResult
from distill2edge.stages.context import Context


def bench_stage(ctx: Context, export_stages: dict[str, StageResult]) -> dict[str, Any] | None:
    """Benchmark every teacher (SFT version when there is one, torch; with `bench.same_bits` also exported
    to each GGUF type the student was) against the exported student: its torch folder and each export
    that passed its gates. Returns bench.json's per-model summary and its equal-bits ratios."""
    recipe, models, producers, run, log = ctx.recipe, ctx.models, ctx.producers, ctx.run, ctx.log
    bcfg = recipe.bench
    if not bcfg.enabled:
        return None
    exports = {name: st.metrics for name, st in export_stages.items()}
    from distill2edge.bench import BenchModel
    from distill2edge.bench.api import run_bench, settings_for_recipe

    entries: list[tuple[str, str, str]] = []  # (role, path, name)
    inputs: dict[str, StageResult] = {"data": ctx.data}
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
    test = ctx.splits["test"][: bcfg.max_questions]

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
