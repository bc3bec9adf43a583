"""Stages `export_ROLE.PROFILE`: a model exported for each device profile (GGUF or ONNX) through the same
exporter and parity gates as `distill2edge export`. `best_distilled` picks the distilled model with the
best test score, so the export stages run after the evaluation stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill2edge.export.for_profile import export_for_profile
from distill2edge.export.profiles import load_profile
from distill2edge.runs import StageResult
from distill2edge.stages.context import Context
from distill2edge.stages.evaluate import best_distilled


def export_stages(ctx: Context, results: dict[str, dict[str, Any]]) -> dict[str, StageResult]:
    """One export stage per (model, device profile); gate failures are recorded, not raised, by default.
    Stage metrics: what `export_for_profile` returns plus `role` and `chosen_as`."""
    recipe, models, producers, run, log = ctx.recipe, ctx.models, ctx.producers, ctx.run, ctx.log
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
