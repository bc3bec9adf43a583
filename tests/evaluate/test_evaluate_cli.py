"""`distill2edge evaluate` on the tiny random model: outputs, the judge named in the summary, and errors
that leave nothing behind."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from distill2edge.cli.main import main

from .stub_server import stub_server


def _run(tiny_llama_dir: Path, qa_jsonl: Path, out: Path, *extra: str) -> int:
    return main(["evaluate", f"tiny={tiny_llama_dir}", str(tiny_llama_dir), "--data", str(qa_jsonl), "--out", str(out),
                 "--split", "all", "--max-questions", "5", "--max-new-tokens", "4", "--max-length", "96",
                 "--no-progress", *extra])


def test_evaluate_writes_predictions_scores_and_summary(tiny_llama_dir, qa_jsonl, tmp_path) -> None:
    out = tmp_path / "eval"
    assert _run(tiny_llama_dir, qa_jsonl, out, "--metrics", "qa,ngram", "--metrics", "bleu") == 0
    summary = json.loads((out / "summary.json").read_text())
    names = ["exact_match", "token_f1", "bleu", "chrf", "rouge_1", "rouge_2", "rouge_l", "meteor"]
    assert summary["metrics"] == names and summary["n"] == 5 and summary["judge"] is None
    assert list(summary["models"]) == ["tiny", tiny_llama_dir.name]  # LABEL=REF, then a label from the path
    for m in summary["models"].values():
        folder = out / m["dir"]
        rows = list(csv.reader((folder / "scores.csv").open()))
        assert rows[0] == ["id", *names] and len(rows) == 6
        assert [r[0] for r in rows[1:]] == ["0-0", "0-1", "0-2", "1-0", "1-1"]
        preds = [json.loads(line) for line in (folder / "predictions.jsonl").open()]
        assert len(preds) == 5
        assert {"id", "prompt", "question", "reference", "prediction", "latency_s"} <= set(preds[0])
        assert preds[0]["prompt"].startswith("Context: cell 0") and preds[0]["reference"] == "n70"
        assert all(0.0 <= m[n] <= 1.0 for n in names) and m["latency_ms"] > 0
        assert json.loads((folder / "summary.json").read_text())["model"] == m["model"]
    assert "| tiny |" in (out / "summary.md").read_text()


def test_evaluate_llm_metrics_name_the_judge(tiny_llama_dir, qa_jsonl, tmp_path) -> None:
    out = tmp_path / "eval"
    with stub_server(lambda body: (200, "4")) as (url, seen):
        rc = _run(tiny_llama_dir, qa_jsonl, out, "--metrics", "answer_correctness,faithfulness",
                  "--judge", f"openai:judge-model@{url}")
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judge"] == f"openai:judge-model@{url}"
    model = summary["models"]["tiny"]
    assert model["judge"] == summary["judge"] and model["judge_unparsed"] == 0
    # Every non-empty prediction was graded 4 of 1..5 -> 0.75; empty ones score 0 without a request.
    rows = list(csv.DictReader((out / "tiny" / "scores.csv").open()))
    assert {r["answer_correctness"] for r in rows} <= {"0.750000", "0.000000"} and seen


def test_evaluate_errors_leave_nothing(tiny_llama_dir, qa_jsonl, tmp_path, capsys) -> None:
    out = tmp_path / "eval"
    assert _run(tiny_llama_dir, qa_jsonl, out, "--metrics", "llm", "--judge", "bogus") == 2
    assert "bad judge spec" in capsys.readouterr().err and not out.exists()
    assert _run(tiny_llama_dir, qa_jsonl, out, "--metrics", "bleurt") == 2
    assert "unknown metric 'bleurt'" in capsys.readouterr().err and not out.exists()
    assert not list(tmp_path.glob(".eval.tmp-*"))
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert _run(tiny_llama_dir, qa_jsonl, out) == 2
    assert "not an empty folder" in capsys.readouterr().err


def test_the_judge_variable_stands_in_for_judge(tiny_llama_dir, qa_jsonl, tmp_path, monkeypatch) -> None:
    """`$DISTILL2EDGE_JUDGE` is the documented default of `--judge`; an explicit `--judge` wins."""
    with stub_server(lambda body: (200, "4")) as (url, _seen):
        monkeypatch.setenv("DISTILL2EDGE_JUDGE", f"openai:env-model@{url}")
        assert _run(tiny_llama_dir, qa_jsonl, tmp_path / "env", "--metrics", "answer_correctness") == 0
        assert _run(tiny_llama_dir, qa_jsonl, tmp_path / "flag", "--metrics", "answer_correctness",
                    "--judge", f"openai:flag-model@{url}") == 0
    assert json.loads((tmp_path / "env" / "summary.json").read_text())["judge"] == f"openai:env-model@{url}"
    assert json.loads((tmp_path / "flag" / "summary.json").read_text())["judge"] == f"openai:flag-model@{url}"


def _recipe_run(root: Path, tiny_llama_dir: Path, max_length: int, template: str) -> Path:
    """A model folder inside a recipe run folder (runs/X/stages/STAGE/model under runs/X/manifest.json)."""
    import shutil

    model = root / "stages" / "distill.kd" / "model"
    shutil.copytree(tiny_llama_dir, model)
    data = {"source": "embedded:telecom-qa", "max_length": max_length, "prompt_template": template}
    (root / "manifest.json").write_text(json.dumps({"recipe": "r", "config": {"data": data}, "stages": {}}))
    return model


def test_evaluate_defaults_to_the_prompt_settings_of_the_models_recipe(tiny_llama_dir, qa_jsonl, tmp_path, capsys) -> None:
    """A recipe's student is scored at the prompt length and template it was trained with, unless told otherwise."""
    model = _recipe_run(tmp_path / "run", tiny_llama_dir, 72, "Q: {question}\nC: {context}\nA:")
    common = ["--data", str(qa_jsonl), "--split", "all", "--max-questions", "2", "--max-new-tokens", "2",
              "--metrics", "qa", "--no-progress"]
    assert main(["evaluate", str(model), str(tiny_llama_dir), "--out", str(tmp_path / "a"), *common]) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["max_length"] == 72 and summary["template"].startswith("Q: ")
    assert json.loads((tmp_path / "a" / "model" / "predictions.jsonl").open().readline())["prompt"].startswith("Q: ")
    assert "max_length 72" in capsys.readouterr().out
    assert main(["evaluate", str(model), "--max-length", "90", "--out", str(tmp_path / "b"), *common]) == 0
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["max_length"] == 90  # an explicit value wins
    assert main(["evaluate", str(tiny_llama_dir), "--out", str(tmp_path / "c"), *common]) == 0
    assert json.loads((tmp_path / "c" / "summary.json").read_text())["max_length"] == 384  # no recipe: DataConfig's
    other = _recipe_run(tmp_path / "run2", tiny_llama_dir, 96, "Q: {question}\nC: {context}\nA:")
    assert main(["evaluate", str(model), str(other), "--out", str(tmp_path / "d"), *common]) == 2
    err = capsys.readouterr().err
    assert "different prompt settings" in err and "max_length 72" in err and "max_length 96" in err
    assert not (tmp_path / "d").exists()


def test_evaluate_counts_the_answers_the_context_cut_dropped(tiny_llama_dir, qa_jsonl, tmp_path, capsys) -> None:
    # The fixture's answers sit at growing depths of their context ("n70" early, "slice 0" at its end): a
    # 60-token budget cuts the last few context tokens, which drops only "slice N"; 96 tokens keep them all.
    short, full = tmp_path / "short", tmp_path / "full"
    assert main(["evaluate", f"tiny={tiny_llama_dir}", "--data", str(qa_jsonl), "--out", str(short), "--split", "all",
                 "--max-questions", "6", "--max-new-tokens", "4", "--max-length", "60", "--metrics", "qa",
                 "--template", "{context}\nQ: {question}\nA:", "--no-progress"]) == 0
    cut = json.loads((short / "summary.json").read_text())["models"]["tiny"]["answers_cut"]
    assert cut == 2  # the two "which slice" questions: their answer ends the context
    assert f"dropped the reference answer from {cut} of 6 prompts" in capsys.readouterr().out
    assert _run(tiny_llama_dir, qa_jsonl, full, "--metrics", "qa") == 0
    assert json.loads((full / "summary.json").read_text())["models"]["tiny"]["answers_cut"] == 0
    assert "dropped the reference answer" not in capsys.readouterr().out
