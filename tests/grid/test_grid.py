"""The 16-cell grid on tiny models: recipe construction, shared SFT, resume after a kill, outputs, and
findings stated from the numbers."""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

import pytest

from distill2edge import pipeline
from distill2edge.cli.main import main
from distill2edge.config import Recipe, RecipeError, load_recipe
from distill2edge.grid import assign_teachers, build_grid_recipe, run_grid
from distill2edge.report.grid import findings
from distill2edge.stages import distill as distill_stage
from distill2edge.stages import sft as sft_stage
from distill2edge.stats import grid_cells, run_tests, table3
from distill2edge.stats.plots import cell_means, group_means

TRAIN = {"epochs": 1, "batch_size": 4, "max_steps": 1, "checkpoint_every": 1, "lr": 1e-3}
METRICS = ["exact_match", "token_f1", "rouge_l", "bleu"]


@pytest.fixture
def base(tiny_recipe, tiny_llama_dir: Path, tiny_teacher_b_dir: Path):
    path = tiny_recipe(
        teachers={"other": {"path": str(tiny_teacher_b_dir)}, "same": {"path": str(tiny_llama_dir)}},
        distill={"kd": {"teacher": "same", "algorithm": "vanilla", "train": TRAIN, "loss": {"temperature": 1.5}},
                 "dk": {"teacher": "other", "algorithm": "dskd", "train": TRAIN, "dskd": {"chunk_tokens": 8}}},
    )
    return load_recipe(str(path))


def test_teachers_are_detected_and_the_recipe_has_16_cells(base) -> None:
    assert assign_teachers(base) == ("same", "other")
    assert assign_teachers(base, same="same", different="other") == ("same", "other")
    with pytest.raises(RecipeError, match="not among"):
        assign_teachers(base, same="nope")
    recipe = build_grid_recipe(base, "same", "other", METRICS)
    assert list(recipe.distill) == [c.key for c in grid_cells()]
    algos = {k: d.algorithm for k, d in recipe.distill.items()}
    assert algos["same-T0-S0-V"] == "vanilla" and algos["different-T1-S1-V"] == "uld"
    assert algos["same-T1-S0-D"] == algos["different-T0-S1-D"] == "dskd"
    d = recipe.distill["different-T1-S0-V"]
    assert (d.teacher, d.teacher_state, d.student) == ("other", "sft", "base")
    assert d.loss.temperature == 1.5  # V cells take the base recipe's vanilla settings
    assert recipe.distill["same-T0-S0-D"].dskd.chunk_tokens == 8  # D cells its DSKD settings
    assert recipe.evaluate.models == [f"distilled.{c.key}" for c in grid_cells()]
    assert recipe.evaluate.metrics == METRICS
    exporting = Recipe.model_validate({**base.model_dump(mode="json"), "export": {"models": ["best_distilled", "distilled.kd"]}})
    assert build_grid_recipe(exporting, "same", "other", METRICS).export.models == ["best_distilled"]


def test_grid_runs_shares_sft_and_resumes_after_a_kill(base, tmp_path: Path, monkeypatch) -> None:
    calls = {"sft": 0, "distill": []}
    real_sft, real_distill = sft_stage.run_sft, distill_stage.run_distill
    kill_at = {"n": 5}

    def sft(*a, **k):
        calls["sft"] += 1
        return real_sft(*a, **k)

    def distill(*a, **k):
        calls["distill"].append(k["desc"])
        if len(calls["distill"]) == kill_at["n"]:
            raise KeyboardInterrupt  # the process is killed during the 5th cell
        return real_distill(*a, **k)

    monkeypatch.setattr(sft_stage, "run_sft", sft)
    monkeypatch.setattr(distill_stage, "run_distill", distill)
    out = tmp_path / "grid"
    with pytest.raises(KeyboardInterrupt):
        run_grid(base, out, metrics=METRICS, quick=True, progress=False, log=lambda _: None)
    assert calls["sft"] == 3  # two teachers and the student, once each
    finished = calls["distill"][:4]
    manifest = json.loads((out / "manifest.json").read_text())
    done = [n for n, s in manifest["stages"].items() if n.startswith("distill.") and s["status"] == "complete"]
    assert len(done) == 4 and not (out / "table3.md").exists()

    calls["sft"], calls["distill"], kill_at["n"] = 0, [], -1
    logs: list[str] = []
    grid = run_grid(base, out, metrics=METRICS, quick=True, progress=False, log=logs.append)
    assert calls["sft"] == 0 and len(calls["distill"]) == 12  # finished cells and every SFT reused
    assert not set(calls["distill"]) & set(finished)
    assert sum("reusing" in line for line in logs if line.startswith("[distill.")) == 4

    assert set(grid["cells"]) == {c.key for c in grid_cells()} and grid["n_questions"] > 0
    assert grid["cells"]["different-T0-S0-V"]["algorithm"] == "uld"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["grid"]["table3"]["train-both"]["same-V"] is not None
    assert metrics["training"]["distill.different-T1-S1-V"]["kd_variant"].startswith("ULD")
    t3 = json.loads((out / "table3.json").read_text())
    assert t3["metrics"] == ["bleu", "rouge_l"] and len(t3["rows"]) == 7
    for name in ("heatmap.png", "group_means.png", "table3.md", "pipeline_report.md"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "run ULD" in report and "### RQ1" in report and "### RQ3" in report and "(paper 13/14)" in report

    # A third invocation redoes nothing.
    calls["sft"], calls["distill"] = 0, []
    run_grid(base, out, metrics=METRICS, quick=True, progress=False, log=lambda _: None)
    assert calls == {"sft": 0, "distill": []}


def test_the_judge_reaches_the_pipeline_through_the_recipe(base, tmp_path: Path, monkeypatch) -> None:
    """`run_grid(judge=...)` becomes the grid recipe's `evaluate.judge`; the environment is neither read nor set."""
    seen: list[tuple[Recipe, str | None]] = []

    class Stop(Exception):
        pass

    def run_recipe(recipe: Recipe, *_a, **_k):
        seen.append((recipe, os.environ.get("DISTILL2EDGE_JUDGE")))
        raise Stop

    monkeypatch.setattr(pipeline, "run_recipe", run_recipe)
    monkeypatch.setenv("DISTILL2EDGE_JUDGE", "gguf:from-the-environment.gguf")
    metrics = [*METRICS, "answer_correctness"]
    for n, judge in enumerate(["openai:m@http://127.0.0.1:9", None]):
        with pytest.raises(Stop):
            run_grid(base, tmp_path / f"g{n}", metrics=metrics, judge=judge, progress=False, log=lambda _: None)
    (named, env_named), (default, _) = seen
    assert named.evaluate.judge == "openai:m@http://127.0.0.1:9"
    assert env_named == "gguf:from-the-environment.gguf"  # left as it was
    assert default.evaluate.judge is None  # the default judge: the stage keys of grids made before the field
    assert json.loads((tmp_path / "g1" / "grid.json").read_text())["judge"] == "hf:embedded:gemma-3-270m"
    with_judge = Recipe.model_validate({**base.model_dump(mode="json"),
                                        "evaluate": {**base.evaluate.model_dump(mode="json"), "judge": "hf:x"}})
    with pytest.raises(Stop):
        run_grid(with_judge, tmp_path / "g2", metrics=metrics, progress=False, log=lambda _: None)
    assert seen[-1][0].evaluate.judge == "hf:x"  # the base recipe's judge when none is given


def _synthetic(effect: float, seed: int = 0) -> dict:
    """Scores of 20 questions where teacher SFT adds `effect` to every metric of every cell."""
    rng = random.Random(seed)
    base = [rng.random() * 0.5 for _ in range(20)]
    scores = {}
    for c in grid_cells():
        lift = effect * c.teacher_sft
        scores[c.key] = {m: [b + lift + rng.gauss(0, 0.01) for b in base]
                         for m in ("bleu", "rouge_l", "embedding_cosine", "bertscore_f1")}
    return scores


def test_findings_follow_the_numbers() -> None:
    groups = {"n-gram": ["bleu", "rouge_l"], "embedding": ["embedding_cosine", "bertscore_f1"]}
    for effect, expect in ((0.2, "significantly in 8 of 12"), (0.0, "significantly in 0 of 12")):
        scores = _synthetic(effect)
        means = cell_means(scores)
        gm = group_means(means, groups)
        grid = {"same_teacher": "s", "different_teacher": "d", "quick": False, "n_questions": 20,
                "cells": {k: {"group_means": gm[k], "means": means[k]} for k in scores}}
        text = "\n".join(findings(grid, table3(run_tests(scores))))
        assert expect in text, text
        if effect:
            # teacher SFT only and both: significant (4/4 metrics); student SFT only: not.
            assert re.search(r"teacher SFT \+0\.(19|20)\d \(4/4 metrics significant; paper 13/14\)", text), text
            assert re.search(r"student SFT [+-]0\.00\d \(0/4 metrics significant", text), text
            assert "adds no significant gain over teacher SFT alone" in text
            assert "rank the cells alike" in text


def test_cli_refuses_a_recipe_without_two_kinds_of_teacher(tiny_recipe, capsys) -> None:
    path = tiny_recipe()
    assert main(["grid", str(path), "--out", "/nonexistent/never", "--no-progress"]) == 2
    assert "--same-teacher" in capsys.readouterr().err


def test_cached_grid_builds_one_entry_per_teacher_state_and_kind(tiny_recipe, tiny_llama_dir: Path,
                                                                 tiny_teacher_b_dir: Path, tmp_path: Path) -> None:
    """With the cache on in the base recipe, the 12 cells it serves read 6 entries (teacher x state x top-k
    or hidden states) and ULD cells run online; turning the cache on for ULD alone is still refused."""
    cache = {"enabled": True, "top_k": 16, "hidden_dtype": "float32"}
    path = tiny_recipe(
        teachers={"other": {"path": str(tiny_teacher_b_dir)}, "same": {"path": str(tiny_llama_dir)}},
        distill={"kd": {"teacher": "same", "algorithm": "vanilla", "train": TRAIN, "cache": cache},
                 "dk": {"teacher": "other", "algorithm": "dskd", "train": TRAIN, "cache": cache}},
    )
    recipe = build_grid_recipe(load_recipe(str(path)), "same", "other", METRICS)
    cached = {k for k, d in recipe.distill.items() if d.cache.enabled}
    assert cached == {k for k, d in recipe.distill.items() if d.algorithm != "uld"} and len(cached) == 12
    with pytest.raises(RecipeError, match="not 'uld'"):
        load_recipe(str(path), overrides=["distill.kd.algorithm=uld"])

    out = tmp_path / "grid"
    run_grid(load_recipe(str(path)), out, metrics=METRICS, quick=True, progress=False, log=lambda _: None)
    training = json.loads((out / "metrics.json").read_text())["training"]
    entries: dict[str, list[str]] = {}
    for key in cached:
        summary = training[f"distill.{key}"]
        entries.setdefault(summary["teacher_cache"], []).append(key)
    assert all("teacher_cache" not in training[f"distill.{k}"] for k in set(recipe.distill) - cached)
    assert len(entries) == 6 and {len(v) for v in entries.values()} == {2}
    for keys in entries.values():  # the two cells of an entry differ only in the student's state
        assert len({re.sub(r"-S[01]-", "-S-", k) for k in keys}) == 1
        assert sorted(training[f"distill.{k}"]["teacher_cache_hit"] for k in keys) == [False, True]
    on_disk = [p for p in (out / "cache" / "teacher").glob("*/*") if p.is_dir()]  # <key>/<kind of targets>
    assert sorted(str(p) for p in on_disk) == sorted(entries)
