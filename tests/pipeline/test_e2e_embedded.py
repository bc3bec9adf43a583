"""`distill2edge recipe telecom-qa --quick` on the real embedded models (minutes on 2 CPU cores)."""

import json

import pytest

from distill2edge.cli.main import main

pytestmark = pytest.mark.slow


def test_telecom_qa_quick_on_embedded_models(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["recipe", "telecom-qa", "--quick", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    models = metrics["models"]
    assert list(models) == ["teacher", "teacher_sft", "student_base", "student_sft", "student_distilled"]
    teacher, student = models["teacher"], models["student_distilled"]
    assert teacher["params"] == pytest.approx(134.5e6, rel=0.01)
    assert student["params"] == pytest.approx(56.6e6, rel=0.01)
    assert all(m["n"] == 8 for m in models.values())
    # The instruct teacher answers extractive questions far better than the cut student before training.
    assert teacher["token_f1"] > models["student_base"]["token_f1"]
    for stage in ("sft_teacher", "sft_student", "distill"):
        t = metrics["training"][stage]
        assert t["steps"] == 2 and t["first_loss"] == t["first_loss"]  # ran, finite
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["config"]["student"]["num_layers"] == 8
    assert "| student (distilled) |" in (out / "report.md").read_text()
    assert "report:" in capsys.readouterr().out
