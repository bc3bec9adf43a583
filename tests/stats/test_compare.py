"""`distill2edge compare`: finding scores in the folders evaluate and recipes write, the figures, and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distill2edge.cli.main import main
from distill2edge.evaluate.generate import write_scores_csv
from distill2edge.stats.compare import compare_scores, find_scores

IDS = [f"q{i}" for i in range(40)]


def _write(folder, scores, ids=IDS):
    folder.mkdir(parents=True, exist_ok=True)
    write_scores_csv(folder / "scores.csv", ids, scores)
    return folder


@pytest.fixture
def eval_out(tmp_path):
    """An `evaluate --out` folder with a teacher, a student at half its score and a better student."""
    rng = np.random.default_rng(0)
    t = rng.random(len(IDS))
    out = tmp_path / "eval"
    _write(out / "teacher", {"token_f1": list(t), "rouge_l": list(t)})
    _write(out / "student", {"token_f1": list(0.5 * t), "rouge_l": list(0.4 * t)})
    _write(out / "zhealed", {"token_f1": list(0.75 * t), "rouge_l": list(0.7 * t)})
    (out / "summary.json").write_text("{}")
    with (out / "teacher" / "predictions.jsonl").open("w") as fh:  # first half short prompts, second half long
        for i, q in enumerate(IDS):
            fh.write(json.dumps({"id": q, "prompt_tokens": 100 if i < 20 else 700}) + "\n")
    return out


def test_kept_and_steps_from_an_evaluate_folder(eval_out):
    r = compare_scores(find_scores([str(eval_out)]), reference="teacher")
    assert r["metric"] == "token_f1" and r["n"] == 40
    assert r["models"]["student"]["kept"]["value"] == pytest.approx(0.5)
    assert r["models"]["zhealed"]["kept"]["low"] == pytest.approx(0.75)
    assert "kept" not in r["models"]["teacher"]
    (step,) = r["steps"]
    assert (step["model"], step["baseline"]) == ("zhealed", "student") and step["mean"]["value"] > 0
    assert compare_scores(find_scores([str(eval_out)]), "teacher", "rouge_l")["models"]["student"]["kept"]["value"] \
        == pytest.approx(0.4)


def test_cli_prints_the_table_and_writes_json(eval_out, tmp_path, capsys):
    out = tmp_path / "kept.json"
    assert main(["compare", f"t={eval_out / 'teacher'}", f"s={eval_out / 'student' / 'scores.csv'}",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| s | " in text and "50.0% (50.0% to 50.0%)" in text and "reference `t`" in text
    assert json.loads(out.read_text())["models"]["s"]["kept"]["value"] == pytest.approx(0.5)


def test_recipe_run_folder_is_labelled_by_role(tmp_path):
    run = tmp_path / "run"
    _write(run / "stages" / "evaluate_teacher_sft.x", {"token_f1": [0.5, 1.0]}, ["a", "b"])
    _write(run / "stages" / "evaluate_distilled.kd", {"token_f1": [0.25, 0.5]}, ["b", "a"])
    (run / "stages" / "evaluate_broken").mkdir()
    _write(run / "stages" / "evaluate_distilled.kd.tmp", {"token_f1": [0.0, 0.0]}, ["a", "b"])  # unfinished
    files = find_scores([str(run)])
    assert set(files) == {"teacher_sft.x", "distilled.kd"}
    r = compare_scores(files, "teacher_sft.x")
    assert r["models"]["distilled.kd"]["kept"]["value"] == pytest.approx(0.75 / 1.5)


@pytest.mark.parametrize("case, message", [
    ("missing", "no scores.csv there"),
    ("ids", "question ids differ"),
    ("label", "two models are labelled 'teacher'"),
    ("reference", "--reference 'nobody' is not among"),
    ("metric", "metric 'bleu' is not scored"),
    ("one", "at least two models"),
])
def test_bad_input_exits_2_naming_the_problem(case, message, eval_out, tmp_path, capsys):
    other = _write(tmp_path / "other" / "teacher", {"token_f1": [0.1] * 5}, IDS[:5])
    args = {
        "missing": [str(tmp_path / "nowhere")],
        "ids": [str(eval_out / "teacher"), f"x={other}"],
        "label": [str(eval_out), str(other)],
        "reference": [str(eval_out), "--reference", "nobody"],
        "metric": [str(eval_out), "--metric", "bleu"],
        "one": [str(eval_out / "teacher")],
    }[case]
    assert main(["compare", *args]) == 2
    assert message in capsys.readouterr().err


def test_by_length_splits_the_questions_at_the_reference_prompt_lengths(eval_out, tmp_path, capsys):
    student = eval_out / "student" / "scores.csv"
    ids, scores = IDS, {"token_f1": [0.0] * 20 + [1.0] * 20}  # scores nothing on short prompts
    write_scores_csv(student, ids, scores)
    r = compare_scores(find_scores([str(eval_out)]), "teacher", by_length=[256, 512])
    short, middle, long = r["by_length"]
    assert (short["prompt_tokens"], short["n"], middle["n"], long["n"]) == ("1-256", 20, 0, 20)
    assert short["models"]["student"]["kept"]["value"] == 0.0 and long["prompt_tokens"] == ">512"
    assert middle["models"]["student"]["kept"] is None
    assert main(["compare", str(eval_out), "--reference", "teacher", "--by-length", "256", "512"]) == 0
    assert "| 257-512 | 0 | – | – |" in capsys.readouterr().out
    assert main(["compare", str(eval_out), "--reference", "student", "--by-length", "256"]) == 2
    assert "predictions.jsonl: not found" in capsys.readouterr().err
