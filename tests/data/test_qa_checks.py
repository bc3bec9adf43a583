"""Issue 17: empty answers are refused with file:line; answers not in their context are counted and
located in a warning, or stop the data stage with `data.answers_in_context: error`."""

import json
from pathlib import Path

import pytest

from distill2edge.config import DataConfig
from distill2edge.data.qa import DataError, load_examples
from distill2edge.data.splits import prepare_data


def write_jsonl(path: Path, answers: list[str]) -> Path:
    with path.open("w") as fh:
        for i, answer in enumerate(answers):
            ctx = f"cell {i} uses band n{70 + i} and amf {i}."
            fh.write(json.dumps({"id": str(i), "context": ctx, "question": f"band of cell {i}?", "answer": answer}) + "\n")
    return path


@pytest.mark.parametrize("bad", ["   ", ""])
def test_empty_answer_is_refused_with_file_and_line(tmp_path, bad):
    p = write_jsonl(tmp_path / "qa.jsonl", ["n70", "n71", bad, "n73"])
    with pytest.raises(DataError, match=rf"{p}:3: empty or whitespace-only answer"):
        load_examples(DataConfig(source=str(p)))


def test_answers_not_in_context_warn_with_count_and_lines(tmp_path):
    answers = [f"n{70 + i}" for i in range(10)]
    answers[2], answers[7] = "n99", "Band N78"
    p = write_jsonl(tmp_path / "qa.jsonl", answers)
    warnings: list[str] = []
    examples = load_examples(DataConfig(source=str(p)), warn=warnings.append)
    assert len(examples) == 10 and len(warnings) == 1
    assert "2 of 10 answers do not occur in their context" in warnings[0]
    assert f"{p}:3" in warnings[0] and f"{p}:8" in warnings[0]
    cfg = DataConfig(source=str(p), split={"validation": 0.2, "test": 0.2})
    logged: list[str] = []
    metrics = prepare_data(cfg, tmp_path, log=logged.append)
    assert logged[0].startswith("[data] warning: 2 of 10") and metrics["warnings"] == [logged[0].split(": ", 1)[1]]


def test_answers_not_in_context_can_be_an_error(tmp_path):
    p = write_jsonl(tmp_path / "qa.jsonl", ["n70", "nowhere", "n72"])
    with pytest.raises(DataError, match=rf"1 of 3 answers do not occur.*{p}:2.*answers_in_context: error"):
        load_examples(DataConfig(source=str(p), answers_in_context="error"))


def test_matching_ignores_case_and_spacing(tmp_path):
    p = write_jsonl(tmp_path / "qa.jsonl", ["N70", "amf  1", "Cell 2 uses"])
    warnings: list[str] = []
    load_examples(DataConfig(source=str(p)), warn=warnings.append)
    assert warnings == []
