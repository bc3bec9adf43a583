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
        "teacher.smollm2", "teacher.gemma", "teacher_sft.smollm2", "teacher_sft.gemma", "student_base",
        "student_sft", "distilled.vanilla", "distilled.dskd", "distilled.dskd-gemma",
    ]
    teacher, student = models["teacher.smollm2"], models["distilled.vanilla"]
    assert teacher["params"] == pytest.approx(134.5e6, rel=0.01)
    assert models["teacher.gemma"]["params"] == pytest.approx(268.1e6, rel=0.01)
    assert student["params"] == pytest.approx(56.6e6, rel=0.01)
    assert all(m["n"] == 8 for m in models.values())
    # The instruct teacher answers extractive questions far better than the cut student before training.
    assert teacher["token_f1"] > models["student_base"]["token_f1"]
    training = metrics["training"]
    assert list(training) == [
        "sft_teacher.smollm2", "sft_teacher.gemma", "sft_student", "distill.vanilla", "distill.dskd",
        "distill.dskd-gemma",
    ]
    for t in training.values():
        assert t["steps"] == 2 and math.isfinite(t["first_loss"]) and math.isfinite(t["last_loss"])
    assert training["distill.dskd"]["dskd_variant"].startswith("dual space")
    assert training["distill.dskd-gemma"]["dskd_variant"] == "cross-model attention"
    (export,) = metrics["exports"].values()  # --quick: the best distilled student for cpu-laptop (q8_0)
    assert export["profile"] == "cpu-laptop" and export["status"] in ("exported", "gate failed")
    assert export["gates"]["q8_0"]["mean_kld"] >= 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["config"]["student"]["num_layers"] == 8
    assert "| student distilled: dskd-gemma |" in (out / "report.md").read_text()
    assert "report:" in capsys.readouterr().out
