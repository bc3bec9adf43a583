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


def test_a_distillation_with_its_own_data_keeps_that_datas_tokens(tmp_path: Path, tiny_recipe: Any,
                                                                   tiny_llama_dir: Path) -> None:
    """A student trained (or started from one trained) on a distillation's own `data:` keeps the tokens of
    that data's training split; a student that never saw it does not."""
    own = tmp_path / "domain.jsonl"
    with own.open("w") as fh:
        for c in range(10):
            ctx = f"the scheduler {c} sends a paging message and the handover command over the interface."
            for q, (question, answer) in enumerate([(f"what does the scheduler {c} send?", "a paging message"),
                                                    (f"which command goes over the interface {c}?", "the handover command")]):
                fh.write(json.dumps({"id": f"d{c}-{q}", "context": ctx, "question": question, "answer": answer}) + "\n")
    train = {"epochs": 1, "batch_size": 4, "max_steps": 1, "checkpoint_every": 1, "lr": 1e-3}
    path = tiny_recipe(
        student={"init_from": str(tiny_llama_dir), "num_layers": 2, "vocabulary": {"keep_first": 0}},
        distill={"domain": {"student": "base", "data": {"source": str(own), "max_length": 96}, "train": train},
                 "kd": {"student": "domain", "train": train}},
        evaluate={"models": ["student_sft", "distilled.kd"], "max_new_tokens": 2, "batch_size": 4},
    )
    out = tmp_path / "run"
    run_recipe(load_recipe(str(path)), out, progress=False, log=lambda _m: None)

    from transformers import AutoTokenizer
    full = AutoTokenizer.from_pretrained(tiny_llama_dir)
    own_train = [json.loads(line) for line in (out / "stages/data.domain/train.jsonl").read_text().splitlines()]
    own_tokens = {t for r in own_train for field in ("context", "question")
                  for t in full.convert_ids_to_tokens(full(r[field], add_special_tokens=False)["input_ids"])}

    def kept(role: str) -> set[str]:
        tj = json.loads((out / "stages" / f"vocabulary.{role}" / "model" / "tokenizer.json").read_text())
        return set(tj["model"]["vocab"])

    missing = {role: own_tokens - kept(role) for role in ("distilled.domain", "distilled.kd", "student_sft")}
    assert not missing["distilled.domain"] and not missing["distilled.kd"]
    assert missing["student_sft"]  # trained on the recipe's data only: "scheduler", "handover"... are not kept
    inputs = json.loads((out / "manifest.json").read_text())["stages"]
    assert "data.domain" in inputs["vocabulary.distilled.kd"]["inputs"]
    assert "data.domain" not in inputs["vocabulary.student_sft"]["inputs"]


def test_a_trim_keeps_what_places_answer_windows(tmp_path: Path, tiny_recipe: Any, tiny_llama_dir: Path) -> None:
    """Under `data.context_window: answer` the window's place depends on how the whole context tokenizes,
    so the trim keeps those tokens; else the trimmed tokenizer would place windows elsewhere and the trim's
    own check would refuse it."""
    filler = "the gnb sends the ssb burst every twenty ms over the xn interface. "
    src = tmp_path / "late.jsonl"
    with src.open("w") as fh:
        for c in range(10):
            ctx = f"handover {c} precedes the paging cycle. {filler * 6}cell {c} uses band n{70 + c}. {filler * 3}"
            fh.write(json.dumps({"id": f"{c}-0", "context": ctx, "question": f"which band does cell {c} use?",
                                 "answer": f"n{70 + c}"}) + "\n")
    train = {"epochs": 1, "batch_size": 4, "max_steps": 1, "checkpoint_every": 1, "lr": 1e-3}
    path = tiny_recipe(
        student={"init_from": str(tiny_llama_dir), "num_layers": 2, "vocabulary": {"keep_first": 0}},
        data={"source": str(src), "max_length": 64, "context_window": "answer", "split": {"validation": 0.2, "test": 0.2}},
        sft={"teacher": {"enabled": False}, "student": {"lora": None, "train": train}},
        distill={"kd": {"teacher_state": "base", "train": train}},
        evaluate={"models": ["distilled.kd"], "max_new_tokens": 2, "batch_size": 4},
    )
    out = tmp_path / "run"
    run_recipe(load_recipe(str(path)), out, progress=False, log=lambda _m: None, until="distill")

    from transformers import AutoTokenizer
    tj = json.loads((out / "stages" / "vocabulary.distilled.kd" / "model" / "tokenizer.json").read_text())
    full = AutoTokenizer.from_pretrained(tiny_llama_dir)
    head = {t for t in full.convert_ids_to_tokens(full("handover 3 precedes the paging cycle.")["input_ids"])}
    assert head <= set(tj["model"]["vocab"])  # outside every window, kept all the same
