"""`teacher_data.TEACHER`: the SFT teacher writes extra examples about the training contexts (issue 14, item 3).

The filter rules one by one, the whole writer with a scripted teacher (every rejection reason, only
training contexts), the real tiny model (seeded, only training contexts), the stage in the pipeline
(reused, invalidated by its config, its examples in the distillation's training split and nowhere
else) and the recipe checks that name the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import distill2edge.evaluate.generate as generate
import distill2edge.stages.distill as distill_stage
import distill2edge.stages.sft as sft_stage
import distill2edge.stages.teacher_data as td
from distill2edge.config import DataConfig, DistillConfig, RecipeError, TeacherDataConfig, load_recipe
from distill2edge.data.qa import QAExample, read_split
from distill2edge.pipeline import run_recipe

torch.set_num_threads(1)

TEMPLATE = "Context: {context}\nQuestion: {question}\nAnswer:"


def _ex(cid: str, question: str, context: str | None = None) -> QAExample:
    return QAExample(id=f"{cid}-{question}", context_id=cid, context=context or f"cell {cid} uses band n7{cid}.",
                     question=question, answers=(f"n7{cid}",))


def test_question_template_cuts_before_the_question() -> None:
    assert td.question_template(TEMPLATE) == "Context: {context}\nQuestion:"
    with pytest.raises(ValueError, match="prompt_template"):
        td.question_template("Question: {question}\nContext: {context}\nAnswer:")


@pytest.mark.parametrize(("question", "ended", "reason"), [
    ("  ", True, "empty_question"),
    ("?", True, "empty_question"),
    ("which band does cell 1 use", False, "unfinished_question"),
    ("What band is used?", True, "duplicate_question"),        # same as a kept one, case and "?" aside
    ("Which band does  cell 1 use?", True, "training_question"),  # a training question, spacing aside
    ("which slice does cell 1 serve?", True, None),
])
def test_question_rules(question: str, ended: bool, reason: str | None) -> None:
    seen = {td.normalize_question("what band is used")}
    training = {td.normalize_question("which band does cell 1 use?")}
    assert td.question_reason(question, ended, seen, training) == reason


@pytest.mark.parametrize(("answer", "reason"), [
    ("", "empty_answer"),
    (" \t", "empty_answer"),
    ("band n99", "answer_not_in_context"),
    ("cell 1", "answer_in_question"),
    ("Band  N71", None),  # case and spacing ignored, as the data stage's own check
])
def test_answer_rules(answer: str, reason: str | None) -> None:
    assert td.answer_reason(answer, "Cell 1 uses band n71 and slice 3.", "which band does cell 1 use?") == reason


def test_only_training_contexts_are_used() -> None:
    splits = {"train": [_ex("1", "a?"), _ex("2", "b?"), _ex("1", "c?"), _ex("9", "x?", context="shared text")],
              "validation": [_ex("3", "d?")], "test": [_ex("4", "e?", context="shared text")]}
    contexts = td.training_contexts(splits)
    assert [c.context_id for c, _ in contexts] == ["1", "2"]  # "9" shares its text with a test context
    assert contexts[0][1] == {"a", "c"}
    assert [c.context_id for c, _ in td.training_contexts(splits, max_contexts=1)] == ["1"]


def _splits() -> dict[str, list[QAExample]]:
    return {"train": [_ex("1", "which band does cell 1 use?"), _ex("2", "which band does cell 2 use?")],
            "validation": [_ex("3", "which band does cell 3 use?")], "test": [_ex("4", "which band does cell 4 use?")]}


def test_writer_with_a_scripted_teacher_counts_every_reason(tmp_path: Path, tiny_llama_dir: Path, monkeypatch) -> None:
    """Canned questions and answers in place of sampling and greedy decoding: one example of each reason
    per context, two kept per context, and the prompts the teacher saw hold training contexts only."""
    prompts: list[str] = []

    def fake_sample(model: Any, tok: Any, prompt_ids: list[int], **kw: Any) -> list[tuple[str, bool]]:
        prompts.append(tok.decode(prompt_ids, skip_special_tokens=True))
        assert prompts[-1].endswith("Question:") and kw["n"] == 8
        cell = prompts[-1].split("cell ")[1][0]
        return [("", True), ("what is half a", False), (f"Which band does cell {cell} use", True),
                ("what band?", True), ("What band?", True), ("what slice?", True), ("who knows?", True),
                (f"what does cell {cell} use?", True)]

    def fake_answers(model: Any, tok: Any, examples: list[QAExample], **kw: Any) -> list[dict[str, Any]]:
        canned = {"what band?": "band n7{c}", "what slice?": "slice 3", "who knows?": "",
                  "what does cell {c} use?": "Cell {c}"}  # in the context, but also in the question
        answer = {(q.format(c=c), c): a.format(c=c) for q, a in canned.items() for c in "12"}
        return [{"prediction": answer[ex.question, ex.context_id]} for ex in examples]

    monkeypatch.setattr(generate, "sample_lines", fake_sample)
    monkeypatch.setattr(generate, "generate_answers", fake_answers)
    cfg = TeacherDataConfig(questions_per_context=8)
    stats = td.write_teacher_data(str(tiny_llama_dir), "float32", _splits(), DataConfig(max_length=96), cfg,
                                  tmp_path, name="teacher_data.t", progress=False)
    assert len(prompts) == 2 and all("cell 3" not in p and "cell 4" not in p for p in prompts)
    assert stats["asked"] == 16 and stats["contexts"] == 2
    assert stats["rejected"] == {"empty_question": 2, "unfinished_question": 2, "duplicate_question": 2,
                                 "training_question": 2, "empty_answer": 2, "answer_not_in_context": 2,
                                 "answer_in_question": 2}
    assert set(stats["rejected"]) == set(td.REASONS)
    kept = read_split(tmp_path / "train.jsonl")
    assert stats["kept"] == len(kept) == 2 and stats["kept_per_context"] == {"min": 1, "max": 1}
    assert {(ex.context_id, ex.question, ex.answer) for ex in kept} == {("1", "what band?", "band n71"),
                                                                       ("2", "what band?", "band n72")}
    assert all(ex.meta == {"source": "teacher_data.t"} and ex.id.startswith("teacher_data.t.") for ex in kept)
    assert json.loads((tmp_path / "stats.json").read_text()) == stats
    assert len((tmp_path / "candidates.jsonl").read_text().splitlines()) == 16


def test_writer_with_the_tiny_model_is_seeded(tmp_path: Path, tiny_llama_dir: Path) -> None:
    """Real sampling: every question is counted, on training contexts only, and the same seed writes the
    same questions (whatever the caller's random state)."""
    cfg = TeacherDataConfig(questions_per_context=3, max_question_tokens=6, max_answer_tokens=3)
    data = DataConfig(max_length=96)
    stats = td.write_teacher_data(str(tiny_llama_dir), "float32", _splits(), data, cfg, tmp_path / "a",
                                  name="teacher_data.t", progress=False)
    assert stats["asked"] == 6 and stats["kept"] + sum(stats["rejected"].values()) == 6
    records = [json.loads(line) for line in (tmp_path / "a/candidates.jsonl").read_text().splitlines()]
    assert len(records) == 6 and {r["context_id"] for r in records} == {"1", "2"}
    torch.manual_seed(123)
    td.write_teacher_data(str(tiny_llama_dir), "float32", _splits(), data, cfg, tmp_path / "b",
                          name="teacher_data.t", progress=False)
    assert (tmp_path / "a/candidates.jsonl").read_text() == (tmp_path / "b/candidates.jsonl").read_text()


def _recipe(tiny_recipe: Any, **teacher_data: Any) -> Any:
    train = {"epochs": 1, "batch_size": 4, "max_steps": 1, "checkpoint_every": 1, "lr": 1e-3}
    return load_recipe(str(tiny_recipe(
        teacher_data={"tiny": {"questions_per_context": 2, "max_question_tokens": 4, "max_answer_tokens": 2,
                               **teacher_data}},
        distill={"kd": {"student": "base", "extra_data": ["teacher_data.tiny"], "train": train}},
    )))


def test_stage_feeds_the_distillation_and_is_reused(tmp_path: Path, tiny_recipe: Any, monkeypatch) -> None:
    """Every question kept (the rules are tested above): the distillation trains on the recipe's training
    split plus the teacher's examples, validates on the unchanged validation split; a second run reuses the
    stage, and a changed teacher_data setting re-runs it and the distillation but not the teacher's SFT."""
    monkeypatch.setattr(td, "question_reason", lambda *a: None)
    monkeypatch.setattr(td, "answer_reason", lambda *a: None)
    seen: list[dict[str, list[QAExample]]] = []
    real = distill_stage.run_distill
    monkeypatch.setattr(distill_stage, "run_distill", lambda t, s, splits, *a, **k: seen.append(splits) or real(t, s, splits, *a, **k))
    out, logs = tmp_path / "run", []
    run_recipe(_recipe(tiny_recipe), out, progress=False, log=logs.append, until="distill")
    stage = out / "stages" / "teacher_data.tiny"
    data = {s: read_split(out / "stages" / "data" / f"{s}.jsonl") for s in ("train", "validation")}
    extra = read_split(stage / "train.jsonl")
    n_contexts = len({ex.context_id for ex in data["train"]})
    assert len(extra) == 2 * n_contexts
    assert {ex.context_id for ex in extra} == {ex.context_id for ex in data["train"]}
    assert [ex.id for ex in seen[0]["train"]] == [ex.id for ex in data["train"] + extra]
    assert [ex.id for ex in seen[0]["validation"]] == [ex.id for ex in data["validation"]]
    order = [line.split("]")[0] + "]" for line in logs if line.endswith("running")]
    assert order.index("[sft_teacher.tiny]") < order.index("[teacher_data.tiny]") < order.index("[distill.kd]")

    logs.clear()
    run_recipe(_recipe(tiny_recipe), out, progress=False, log=logs.append, until="distill")
    assert not [line for line in logs if line.endswith("running")], logs
    logs.clear()
    run_recipe(_recipe(tiny_recipe, seed=5), out, progress=False, log=logs.append, until="distill")
    rerun = {line.split("]")[0][1:] for line in logs if line.endswith("running")}
    assert rerun == {"teacher_data.tiny", "distill.kd"}


def test_student_sft_can_train_on_the_teacher_data(tmp_path: Path, tiny_recipe: Any, monkeypatch) -> None:
    """`sft.student.extra_data`: the labels-only student sees the teacher's examples too; the teacher's own
    SFT and a distillation that does not name them train on the recipe's split alone."""
    monkeypatch.setattr(td, "question_reason", lambda *a: None)
    monkeypatch.setattr(td, "answer_reason", lambda *a: None)
    seen: dict[str, list[str]] = {}
    real_sft, real_distill = sft_stage.run_sft, distill_stage.run_distill

    def sft(ref: str, splits: dict, *a: Any, **k: Any) -> Any:
        seen[k["desc"]] = [ex.id for ex in splits["train"]]
        return real_sft(ref, splits, *a, **k)

    def distill(t: str, s: str, splits: dict, *a: Any, **k: Any) -> Any:
        seen[k["desc"]] = [ex.id for ex in splits["train"]]
        return real_distill(t, s, splits, *a, **k)

    monkeypatch.setattr(sft_stage, "run_sft", sft)
    monkeypatch.setattr(distill_stage, "run_distill", distill)
    train = {"epochs": 1, "batch_size": 4, "max_steps": 1, "checkpoint_every": 1}
    recipe = load_recipe(str(tiny_recipe(
        teacher_data={"tiny": {"questions_per_context": 1, "max_question_tokens": 4, "max_answer_tokens": 2}},
        sft={"teacher": {"lora": {"r": 4, "alpha": 8}, "train": train},
             "student": {"lora": None, "train": train, "extra_data": ["teacher_data.tiny"]}},
        distill={"kd": {"train": train}},
    )))
    out = tmp_path / "run"
    run_recipe(recipe, out, progress=False, log=lambda _m: None, until="distill")
    data = [ex.id for ex in read_split(out / "stages" / "data" / "train.jsonl")]
    extra = [ex.id for ex in read_split(out / "stages" / "teacher_data.tiny" / "train.jsonl")]
    assert extra and seen == {"sft teacher_sft.tiny": data, "sft student_sft": data + extra, "distill kd": data}


def test_absent_section_keeps_old_keys_and_runs_no_stage(tiny_recipe: Any) -> None:
    recipe = load_recipe(str(tiny_recipe()))
    assert "teacher_data" not in recipe.model_dump(mode="json")
    assert "extra_data" not in DistillConfig().model_dump(mode="json")
    assert "extra_data" not in recipe.sft.student.model_dump(mode="json")
    assert "extra_data" in DistillConfig(extra_data=["teacher_data.x"]).model_dump(mode="json")


@pytest.mark.parametrize(("sections", "message"), [
    ({"teacher_data": {"nobody": {}}}, r"teacher_data.nobody: 'nobody' is not among teachers \(tiny\)"),
    ({"teacher_data": {"tiny": {}}, "sft": {"teacher": {"enabled": False}}},
     "teacher_data.tiny: the SFT teacher writes the data, but sft.teacher.enabled is false"),
    ({"teacher_data": {"tiny": {"temperature": 0}}}, "teacher_data.tiny.temperature"),
    ({"teacher_data": {"tiny": {}}, "data": {"source": "x.jsonl", "prompt_template": "Q: {question}\nC: {context}\nA:"}},
     "teacher_data.tiny: .*needs {context} before {question}"),
    ({"distill": {"kd": {"extra_data": ["teacher_data.tiny"]}}},
     r"distill.kd.extra_data: teacher_data.tiny is not enabled: the recipe's teacher_data has no entries"),
    ({"teacher_data": {"tiny": {}}, "distill": {"kd": {"extra_data": ["teacher_data.other"]}}},
     r"distill.kd.extra_data: teacher_data.other is not enabled: .*no entry 'other' \(it has: tiny\)"),
    ({"teacher_data": {"tiny": {}}, "sft": {"teacher": {"extra_data": ["teacher_data.tiny"]}}},
     "sft.teacher.extra_data: teachers write their data after their SFT"),
    ({"sft": {"student": {"extra_data": ["teacher_data.tiny"]}}},
     "sft.student.extra_data: teacher_data.tiny is not enabled"),
    ({"teacher_data": {"tiny": {}}, "distill": {"kd": {"extra_data": ["tiny"]}}},
     "distill.kd.extra_data: 'tiny' must be teacher_data.TEACHER"),
    ({"teacher_data": {"tiny": {}}, "distill": {"kd": {"extra_data": ["teacher_data.tiny"], "data": {"source": "o.jsonl"}}}},
     "distill.kd.extra_data: .*a distillation with its own data cannot add them"),
])
def test_config_errors_name_the_field(tiny_recipe: Any, sections: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        load_recipe(str(tiny_recipe(**sections)))
