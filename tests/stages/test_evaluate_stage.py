"""The pipeline's evaluation stage takes its Oracle-LLM judge from the recipe (`evaluate.judge`), and a
named judge is part of the stage's reuse key (another judge scores again)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from distill2edge.config import Recipe, load_recipe
from distill2edge.runs import Run
from distill2edge.stages.context import Context
from distill2edge.stages.data import data_stage
from distill2edge.stages.evaluate import evaluate_stages
from tests.evaluate.stub_server import stub_server


def _evaluate_teacher(recipe: Recipe, out: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """The data stage and the evaluation stage of the recipe's teacher, as the pipeline runs them."""
    run = Run(out, recipe.name, recipe.model_dump(mode="json"), recipe.seed, "cpu")
    try:
        data, splits = data_stage(recipe, run, log)
        ctx = Context(recipe, run, torch.device("cpu"), False, log, data, splits,
                      models={"teacher.tiny": recipe.teachers["tiny"].path}, producers={"teacher.tiny": None})
        results = evaluate_stages(ctx)
        return results["teacher.tiny"]
    finally:
        run.close()


def test_the_evaluation_is_judged_by_the_recipes_judge(tiny_recipe, tmp_path: Path) -> None:
    def recipe(judge: str) -> Recipe:
        evaluate = {"models": ["teacher.tiny"], "metrics": ["token_f1", "answer_correctness"], "max_new_tokens": 4,
                    "batch_size": 4, "judge": judge}
        return load_recipe(str(tiny_recipe(evaluate=evaluate)))

    out, logs = tmp_path / "run", []
    with stub_server(lambda body: (200, "4")) as (url, seen):
        first = _evaluate_teacher(recipe(f"openai:judge-a@{url}"), out, logs.append)
        # Ignoring evaluate.judge would build the default judge (hf:embedded:gemma-3-270m) and ask no server.
        assert first["judge"] == f"openai:judge-a@{url}" and first["judge_unparsed"] == 0
        assert seen and {r["json"]["model"] for r in seen} == {"judge-a"}
        logs.clear()
        assert _evaluate_teacher(recipe(f"openai:judge-a@{url}"), out, logs.append)["judge"] == first["judge"]
        assert any(line.startswith("[evaluate_teacher.tiny] reusing") for line in logs)
        logs.clear()
        second = _evaluate_teacher(recipe(f"openai:judge-b@{url}"), out, logs.append)
    assert second["judge"] == f"openai:judge-b@{url}"  # another judge: a new key, scored again
    assert not any("reusing" in line for line in logs if line.startswith("[evaluate_"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["evaluate_teacher.tiny"]["status"] == "complete"
