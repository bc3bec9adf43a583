"""`teacher_data.TEACHER.passages_per_context`: the SFT teacher writes new paragraphs from the training
contexts' opening words, unlabelled text that full-sequence KD learns from (issue 14, item 2: healing on
unlabelled text).

The passage rules, the writer with a scripted teacher (only training contexts, every rejection reason),
the encoding of a passage (no labels), a batch of passages alone (CE 0, not NaN), the pipeline (the
distillation's training split holds the passages, its loss stays finite) and the recipe checks."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import distill2edge.evaluate.generate as generate
import distill2edge.stages.distill as distill_stage
import distill2edge.stages.teacher_data as td
from distill2edge.config import DataConfig, RecipeError, TeacherDataConfig, load_recipe
from distill2edge.data.examples import DataError, TextExample
from distill2edge.data.qa import QAExample, read_split
from distill2edge.data.tokenize import IGNORE_INDEX
from distill2edge.models import load_model
from distill2edge.pipeline import run_recipe
from distill2edge.train.objectives import masked_ce
from distill2edge.train.trainers import encode_all

torch.set_num_threads(1)


@pytest.mark.parametrize(("text", "ended", "kept"), [
    ("The AMF handles  registration.\n\n Next", True, "The AMF handles registration.\nNext"),
    ("The AMF handles registration. It also pages the UE and", False, "The AMF handles registration."),
    ("The AMF handles registration? It pages", False, "The AMF handles registration?"),
    ("The AMF handles registration.\nIt pages", False, "The AMF handles registration."),
    ("The AMF handles registration and paging", False, ""),
    ("Release 15.1 of the AMF", False, ""),
    ("The AMF handles registration.", False, "The AMF handles registration."),
])
def test_a_passage_that_did_not_end_is_cut_after_its_last_sentence(text: str, ended: bool, kept: str) -> None:
    assert td.finish_passage(text, ended) == kept


@pytest.mark.parametrize(("text", "reason"), [
    ("too short to keep.", "short_passage"),
    ("the cell the cell the cell the cell the cell the cell the cell the cell.", "repetitive_passage"),
    ("The  gNB serves the cell and schedules the uplink of every UE in it", "duplicate_passage"),
    ("the gNB serves the cell and schedules the downlink of every UE in it", None),
])
def test_passage_rules(text: str, reason: str | None) -> None:
    seen = {"the gnb serves the cell and schedules the uplink of every ue in it"}
    assert td.passage_reason(text, seen, min_words=8) == reason


def _ex(cid: str, context: str) -> QAExample:
    return QAExample(id=f"{cid}-q", context_id=cid, context=context, question="which band?", answers=("n71",))


def _splits() -> dict[str, list[QAExample]]:
    return {"train": [_ex("1", "Cell one uses band n71 for its uplink."), _ex("2", "Cell two uses band n72 too.")],
            "validation": [_ex("3", "Cell three is held out.")], "test": [_ex("4", "Cell four is held out.")]}


def test_writer_samples_from_training_openings_and_counts_rejections(tmp_path: Path, tiny_llama_dir: Path,
                                                                     monkeypatch) -> None:
    """Canned continuations: each training context's first words are the prompt (never a held-out
    context), a continuation is joined to them, and each rejection reason is counted once per context
    (the duplicate only on the second context, where the first one's passage is a repeat)."""
    prompts: list[str] = []

    def fake_sample(model: Any, tok: Any, prompt_ids: list[int], **kw: Any) -> list[tuple[str, bool]]:
        prompts.append(tok.decode(prompt_ids, skip_special_tokens=True))
        assert kw["n"] == 4 and kw["max_new_tokens"] == 32 and kw["first_line"] is False and kw["min_new_tokens"] == 32
        return [("serves the whole district with a wide band of spectrum.", True), ("is.", True),
                ("a a a a a a a a a a a a", True), ("serves the whole district with a wide band of spectrum.", True)]

    monkeypatch.setattr(generate, "sample_lines", fake_sample)
    cfg = TeacherDataConfig(questions_per_context=0, passages_per_context=4, passage_seed_words=2,
                            max_passage_tokens=32, min_passage_words=6)
    stats = td.write_teacher_data(str(tiny_llama_dir), "float32", _splits(), DataConfig(max_length=96), cfg,
                                  tmp_path, name="teacher_data.t", progress=False)
    assert prompts == ["Cell one", "Cell two"]
    assert stats["asked"] == 0 and stats["kept"] == 0
    assert stats["passages_asked"] == 8 and stats["passages_kept"] == 2 and stats["passage_tokens"] > 0
    assert stats["rejected"] == {"short_passage": 2, "repetitive_passage": 2, "duplicate_passage": 2}
    passages = [TextExample.from_json(json.loads(line)) for line in (tmp_path / "passages.jsonl").read_text().splitlines()]
    assert [p.text for p in passages] == ["Cell one serves the whole district with a wide band of spectrum.",
                                         "Cell two serves the whole district with a wide band of spectrum."]
    assert passages[0].meta == {"source": "teacher_data.t", "context_id": "1"}
    assert read_split(tmp_path / "train.jsonl") == []


def test_a_passage_is_encoded_whole_without_labels(tiny_llama_dir: Path) -> None:
    _model, tok = load_model(str(tiny_llama_dir))
    qa, passage = _ex("1", "Cell one uses band n71."), TextExample(id="p", text="Cell one uses band n71 " * 40)
    rows = encode_all(tok, [qa, passage, qa], DataConfig(max_length=64))
    assert rows[0] == rows[2] and any(t != IGNORE_INDEX for t in rows[0]["labels"])
    assert len(rows[1]["input_ids"]) == 64 and set(rows[1]["labels"]) == {IGNORE_INDEX}
    short = encode_all(tok, [TextExample(id="s", text="Cell one.")], DataConfig(max_length=64))[0]
    assert short["input_ids"][-1] == tok.eos_token_id


def test_masked_ce_of_a_batch_without_answers_is_zero_and_trains() -> None:
    logits = torch.randn(2, 3, 5, requires_grad=True)
    none = torch.full((2, 3), IGNORE_INDEX)
    loss = masked_ce(logits, none)
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and not logits.grad.any()
    some = none.clone()
    some[0, 1] = 2
    assert torch.allclose(masked_ce(logits, some), F.cross_entropy(logits[0, 1:2], torch.tensor([2])))


def _recipe(tiny_recipe: Any, positions: str = "all", **distill: Any) -> Any:
    train = {"epochs": 1, "batch_size": 2, "max_steps": 3, "checkpoint_every": 3, "lr": 1e-3}
    return load_recipe(str(tiny_recipe(
        teacher_data={"tiny": {"questions_per_context": 0, "passages_per_context": 2, "max_passage_tokens": 16,
                               "min_passage_words": 1, "passage_seed_words": 3}},
        distill={"kd": {"student": "base", "positions": positions, "extra_data": ["teacher_data.tiny"],
                        "train": train, **distill}},
    )))


@pytest.mark.parametrize("cache", [False, True])
def test_the_distillation_learns_the_passages(tmp_path: Path, tiny_recipe: Any, monkeypatch, cache: bool) -> None:
    """Full-sequence KD, online and from the all-positions cache: the training split is the recipe's
    questions then the passages, and the loss stays finite (a batch of passages alone: `masked_ce` above)."""
    seen: list[dict[str, list[Any]]] = []
    real = distill_stage.run_distill
    monkeypatch.setattr(distill_stage, "run_distill", lambda t, s, splits, *a, **k: seen.append(splits) or real(t, s, splits, *a, **k))
    out = tmp_path / "run"
    run_recipe(_recipe(tiny_recipe, cache={"enabled": cache}), out, progress=False, log=lambda _m: None, until="distill")
    stage = out / "stages" / "teacher_data.tiny"
    passages = [json.loads(line)["id"] for line in (stage / "passages.jsonl").read_text().splitlines()]
    questions = [ex.id for ex in read_split(out / "stages" / "data" / "train.jsonl")]
    assert passages and [ex.id for ex in seen[0]["train"]] == questions + passages
    assert all(isinstance(ex, TextExample) for ex in seen[0]["train"][len(questions):])
    metrics = json.loads((out / "manifest.json").read_text())["stages"]["distill.kd"]["metrics"]
    assert math.isfinite(metrics["last_loss"])


@pytest.mark.parametrize(("sections", "message"), [
    ({"teacher_data": {"tiny": {"questions_per_context": 0}}}, "teacher_data.tiny: .*both 0: the teacher would write nothing"),
    ({"teacher_data": {"tiny": {"passages_per_context": 2}}, "distill": {"kd": {"extra_data": ["teacher_data.tiny"]}}},
     "distill.kd.extra_data: teacher_data.tiny writes passages .* positions: all"),
    ({"teacher_data": {"tiny": {"passages_per_context": 2}}, "sft": {"student": {"extra_data": ["teacher_data.tiny"]}}},
     "sft.student.extra_data: teacher_data.tiny writes passages"),
])
def test_passage_config_errors_name_the_field(tiny_recipe: Any, sections: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        load_recipe(str(tiny_recipe(**sections)))


def test_passage_fields_stay_out_of_old_keys() -> None:
    assert "passages_per_context" not in TeacherDataConfig().model_dump(mode="json")
    assert TeacherDataConfig(passages_per_context=3).model_dump(mode="json")["passages_per_context"] == 3


def test_a_text_file_feeds_the_distillation_and_its_edits_rerun_it(tmp_path: Path, tiny_recipe: Any, monkeypatch) -> None:
    """`texts.NAME` + `extra_data: [text.NAME]`: the file's passages follow the recipe's questions in the
    training split; a second run reuses everything; an edited file re-runs its stage and the distillation."""
    notes = tmp_path / "notes.txt"
    notes.write_text("cell one uses band seventy one for the uplink\n\ncell two serves the whole district\n")
    seen: list[dict[str, list[Any]]] = []
    real = distill_stage.run_distill
    monkeypatch.setattr(distill_stage, "run_distill", lambda t, s, splits, *a, **k: seen.append(splits) or real(t, s, splits, *a, **k))
    train = {"epochs": 1, "batch_size": 2, "max_steps": 2, "checkpoint_every": 2}

    def recipe() -> Any:
        return load_recipe(str(tiny_recipe(
            texts={"notes": {"path": str(notes), "min_words": 3}},
            distill={"kd": {"student": "base", "positions": "all", "extra_data": ["text.notes"], "train": train}})))

    out, logs = tmp_path / "run", []
    run_recipe(recipe(), out, progress=False, log=logs.append, until="distill")
    questions = [ex.id for ex in read_split(out / "stages" / "data" / "train.jsonl")]
    assert [ex.id for ex in seen[0]["train"]] == questions + ["text.notes.0", "text.notes.1"]
    assert seen[0]["train"][-1].text == "cell two serves the whole district"
    logs.clear()
    run_recipe(recipe(), out, progress=False, log=logs.append, until="distill")
    assert not [line for line in logs if line.endswith("running")], logs
    notes.write_text("cell three uses band seventy eight for the downlink\n")
    logs.clear()
    run_recipe(recipe(), out, progress=False, log=logs.append, until="distill")
    assert {line.split("]")[0][1:] for line in logs if line.endswith("running")} == {"text.notes", "distill.kd"}
    assert [ex.id for ex in seen[-1]["train"]] == questions + ["text.notes.0"]


@pytest.mark.parametrize(("sections", "message"), [
    ({"distill": {"kd": {"positions": "all", "extra_data": ["text.nope"]}}},
     r"distill.kd.extra_data: text.nope names no entry of the recipe's texts \(none\)"),
    ({"texts": {"notes": {"path": "n.txt"}}, "distill": {"kd": {"extra_data": ["text.notes"]}}},
     "distill.kd.extra_data: text.notes is unlabelled text, which only full-sequence KD learns from"),
    ({"texts": {"notes": {"path": "n.txt"}}, "sft": {"student": {"extra_data": ["text.notes"]}}},
     "sft.student.extra_data: text.notes is unlabelled text"),
    ({"texts": {"notes": {"path": "n.txt", "max_words": 2}}}, "texts.notes.max_words"),
])
def test_text_config_errors_name_the_field(tiny_recipe: Any, sections: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        load_recipe(str(tiny_recipe(**sections)))


def test_a_missing_text_file_is_named_and_leaves_no_completed_stage(tmp_path: Path, tiny_recipe: Any) -> None:
    """The run stops at the `text.NAME` stage with the file's path in the error; the manifest does not
    record that stage as done, so the next run (with the file in place) runs it."""
    missing = tmp_path / "absent.txt"
    recipe = load_recipe(str(tiny_recipe(
        texts={"notes": {"path": str(missing), "min_words": 3}},
        distill={"kd": {"student": "base", "positions": "all", "extra_data": ["text.notes"],
                        "train": {"epochs": 1, "batch_size": 2, "max_steps": 1, "checkpoint_every": 1}}})))
    out = tmp_path / "run"
    with pytest.raises(DataError, match=r"absent.txt: no such file \(texts path\)"):
        run_recipe(recipe, out, progress=False, log=lambda _m: None, until="distill")
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert stages["text.notes"]["status"] == "failed" and "absent.txt" in stages["text.notes"]["error"]
    assert "distill.kd" not in stages
    assert not (out / "stages" / "text.notes" / "passages.jsonl").exists()
