"""`distill2edge recipe telecom-qa --quick` on the real embedded models (minutes on 2 CPU cores)."""

import json
import math

import pytest

from distill2edge.cli.main import main

pytestmark = pytest.mark.slow


def test_telecom_qa_quick_on_embedded_models(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["recipe", "telecom-qa", "--quick", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    models = metrics["models"]
    assert list(models) == [
        "teacher.smollm2", "teacher_sft.smollm2", "student_base", "student_sft", "distilled.fullseq",
    ]
    teacher, student = models["teacher.smollm2"], models["distilled.fullseq"]
    assert teacher["params"] == pytest.approx(134.5e6, rel=0.01)
    # 16 of 30 layers (85.0M), then the vocabulary trimmed to the training tokens + the first 16,384 ids:
    # every dropped token removes one 576-wide row of the tied embedding.
    trim = metrics["vocabulary"]["distilled.fullseq"]
    assert trim["parameters_before"] == pytest.approx(85.0e6, rel=0.01)
    assert trim["original_size"] == 49152 and 16384 < trim["kept"] < 20000
    assert student["params"] == trim["parameters_after"] == trim["parameters_before"] - 576 * (49152 - trim["kept"])
    assert all(m["n"] == 8 for m in models.values())
    # The instruct teacher answers extractive questions far better than the cut student before training.
    assert teacher["token_f1"] > models["student_base"]["token_f1"]
    init = metrics["student_init"]
    # The student is cut from the SFT teacher, at the layers the recipe lists (answer_ce's choice).
    assert init["selection"] == "explicit" and init["layers_kept"] == [0, 1, 2, 8, 9, 11, 15, 16, 17, 18, 20, 22, 23, 24, 28, 29]
    assert init["val_answer_ce"] > models["teacher_sft.smollm2"]["answer_ce"]
    training = metrics["training"]
    assert list(training) == ["sft_teacher.smollm2", "sft_student", "distill.fullseq"]
    assert list(metrics["vocabulary"]) == ["student_sft", "distilled.fullseq"]
    assert [n for n in metrics["stage_seconds"] if n in ("sft_teacher.smollm2", "student_init")] == [
        "sft_teacher.smollm2", "student_init"]  # the student is cut after the teacher's SFT
    for t in training.values():
        assert t["steps"] == 2 and math.isfinite(t["first_loss"]) and math.isfinite(t["last_loss"])
    assert training["distill.fullseq"]["kd_positions"] == "all"
    assert training["distill.fullseq"]["starts_from"] == "student_base"
    history = json.loads((out / "stages/distill.fullseq/model/train_history.json").read_text())["history"]
    assert any("val_ce" in h for h in history)  # the learning curve the report plots
    assert any("val_token_f1" in h and "time_s" in h for h in history)  # and F1 against minutes (eval_answers)
    (export,) = metrics["exports"].values()  # --quick: the best distilled student for cpu-laptop (q8_0)
    assert export["profile"] == "cpu-laptop" and export["status"] in ("exported", "gate failed")
    assert export["gates"]["q8_0"]["mean_kld"] >= 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["config"]["student"]["init_from"] == "teacher_sft.smollm2"
    report = (out / "report.md").read_text()
    assert "| student distilled: fullseq |" in report and "## Is it worth it?" in report
    assert (out / "learning_curves.png").stat().st_size > 0
    assert "report:" in capsys.readouterr().out
