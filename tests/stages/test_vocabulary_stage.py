"""Stage `vocabulary.ROLE` (`student.vocabulary`): trained students trimmed after training, evaluated trimmed,
and a change of the trim re-runs only what depends on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import AutoConfig

from distill2edge.config import load_recipe
from distill2edge.export.lineage import lineage
from distill2edge.pipeline import run_recipe


def _ran(logs: list[str]) -> set[str]:
    return {line.split("]")[0][1:] for line in logs if line.endswith("running")}


def test_trained_students_are_trimmed_before_evaluation_and_keys_stay(tmp_path: Path, tiny_recipe: Any) -> None:
    out = tmp_path / "run"
    plain = load_recipe(str(tiny_recipe()))
    assert "vocabulary" not in plain.student.model_dump(mode="json")  # older run folders keep their keys
    run_recipe(plain, out, progress=False, log=lambda _m: None)

    logs: list[str] = []
    trimmed = load_recipe(str(tiny_recipe()), ["student.vocabulary.keep_first=0"])
    metrics = run_recipe(trimmed, out, progress=False, log=logs.append)
    # Training is reused (the trim is not part of the cut or of any training key); the trim and every
    # evaluation of a trimmed student run.
    assert _ran(logs) == {"vocabulary.student_sft", "vocabulary.distilled.kd",
                          "evaluate_student_sft", "evaluate_distilled.kd"}
    for role in ("student_sft", "distilled.kd"):
        trim = metrics["vocabulary"][role]
        folder = out / "stages" / f"vocabulary.{role}" / "model"
        assert AutoConfig.from_pretrained(folder).vocab_size == trim["kept"] < trim["original_size"]
        assert metrics["models"][role]["params"] == trim["parameters_after"] < metrics["models"]["student_base"]["params"]
    # Only training text was read: every test question still round-trips through the trimmed tokenizer.
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(out / "stages" / "vocabulary.distilled.kd" / "model")
    for line in (out / "stages/data/test.jsonl").read_text().splitlines():
        q = json.loads(line)["question"]
        assert tok.decode(tok(q, add_special_tokens=False)["input_ids"]) == q
    assert "Its vocabulary is trimmed" in (out / "report.md").read_text()
    # Exports name the trained stage's origin and the trim (GGUF metadata, model card).
    lin = lineage(out / "stages" / "vocabulary.distilled.kd" / "model")
    assert lin.distilled and lin.stage == "vocabulary.distilled.kd" and lin.finetune == "tiny-vocabulary.distilled.kd"
    assert lin.vocab_trim is not None and lin.vocab_trim["kept"] == metrics["vocabulary"]["distilled.kd"]["kept"]
