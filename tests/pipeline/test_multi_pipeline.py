"""Recipes with multi-teacher stages on tiny models: two-stage hand-off with per-stage data, and a
classification recipe scored by verbalizer likelihood (accuracy, macro-F1, ms per sentence)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill2edge.config import load_recipe
from distill2edge.pipeline import run_recipe
from distill2edge.stages import distill as distill_stage
from distill2edge.stages import sft as sft_stage

TRAIN = {"epochs": 1, "batch_size": 4, "max_steps": 2, "checkpoint_every": 1, "lr": 1e-3}
LABELS = ["sends", "receives", "reports"]


def test_two_stages_hand_off_with_their_own_data(tmp_path, tiny_recipe, tiny_llama_dir, tiny_teacher_b_dir, qa_jsonl, monkeypatch):
    seen: dict[str, str] = {}
    real = distill_stage.run_multi_distill

    def spy(teachers, student_ref, splits, data, cfg, *a, **k):
        seen[k["stage"]] = student_ref
        seen[k["stage"] + ".train"] = str(len(splits["train"]))
        return real(teachers, student_ref, splits, data, cfg, *a, **k)

    monkeypatch.setattr(distill_stage, "run_multi_distill", spy)
    general = {"source": str(qa_jsonl), "max_length": 96, "max_train": 4, "split": {"validation": 0.2, "test": 0.2, "seed": 7}}

    def write(stage_data: dict) -> Path:
        return tiny_recipe(
            teachers={"tiny": {"path": str(tiny_llama_dir)}, "other": {"path": str(tiny_teacher_b_dir)}},
            distill={
                "stage1": {"algorithm": "multi_teacher", "teachers": {"tiny": 1.0}, "student": "base",
                           "data": stage_data, "hidden": {"weight": 0.5}, "train": TRAIN},
                "stage2": {"algorithm": "multi_teacher", "student": "stage1", "hidden": {"weight": 0.5},
                           "teachers": {"tiny": 0.5, "other": {"weight": 0.5, "kd": "dskd"}}, "train": TRAIN},
            },
            evaluate={"models": ["distilled.stage1", "distilled.stage2"], "max_new_tokens": 4, "batch_size": 4},
        )

    path = write(general)
    out = tmp_path / "run"
    metrics = run_recipe(load_recipe(str(path)), out, progress=False, log=lambda _: None)

    manifest = json.loads((out / "manifest.json").read_text())["stages"]
    assert manifest["data.stage1"]["metrics"]["train_questions"] == 4 == int(seen["distill.stage1.train"])
    assert int(seen["distill.stage2.train"]) > 4  # the second stage trains on the recipe's data
    assert manifest["distill.stage1"]["inputs"]["data.stage1"] == "stages/data.stage1"
    # stage 2 starts from stage 1's (best) student and its key depends on it
    assert seen["distill.stage2"] == str(out / "stages/distill.stage1/model")
    assert manifest["distill.stage2"]["inputs"]["distill.stage1"] == "stages/distill.stage1"
    t2 = metrics["training"]["distill.stage2"]
    assert t2["kd/other"] == "dskd" and t2["kd/tiny"] == "logits"
    assert {"first_kl/tiny", "first_kl/other", "first_mse/tiny", "first_mse/other"} <= set(t2)
    assert t2["layer_map/tiny"] == [[1, 2], [2, 4]]
    report = (out / "report.md").read_text()
    assert "| stage2 | multi_teacher | tiny w=0.5 kd=auto, other w=0.5 kd=dskd (sft) | stage1 |" in report and f"`{qa_jsonl}`" in report

    # Changing only stage 1's data re-runs both stages (stage 2 depends on stage 1), nothing upstream.
    logs: list[str] = []
    general["max_train"] = 6
    path = write(general)
    run_recipe(load_recipe(str(path)), out, progress=False, log=logs.append)
    ran = {line.split("]")[0][1:] for line in logs if line.endswith("running")}
    assert ran == {"data.stage1", "distill.stage1", "distill.stage2", "evaluate_distilled.stage1", "evaluate_distilled.stage2"}


@pytest.fixture
def class_jsonl(tmp_path: Path) -> Path:
    """60 sentences whose label is the verb they contain, 60/25/15 imbalanced."""
    subjects = ["The UE", "The gNB", "The AMF", "The cell", "The scheduler"]
    counts = {"sends": 36, "receives": 15, "reports": 9}
    p = tmp_path / "sentences.jsonl"
    with p.open("w") as fh:
        i = 0
        for label, n in counts.items():
            for k in range(n):
                fh.write(json.dumps({"id": f"s{i:03d}", "text": f"{subjects[k % 5]} {label} the RSRP in LTE.", "label": label}) + "\n")
                i += 1
    return p


def test_classification_recipe_reports_accuracy_f1_and_ms(tmp_path, tiny_recipe, class_jsonl):
    data = {"task": "classification", "source": str(class_jsonl), "labels": LABELS, "max_length": 64,
            "prompt_template": "{text}\nAnswer:"}
    path = tiny_recipe(
        data=data,
        distill={"multi": {
            "algorithm": "multi_teacher", "teachers": {"tiny": 1.0}, "student": "base", "hidden": {"weight": 0.1},
            "shortcut": {"name": "label_prior_kl", "weight": 0.5}, "train": {**TRAIN, "eval_every_samples": 4},
        }},
        evaluate={"models": ["all"], "batch_size": 1},
    )
    recipe = load_recipe(str(path))
    assert recipe.evaluate.metrics == ["accuracy", "macro_f1"]
    out = tmp_path / "run"
    metrics = run_recipe(recipe, out, progress=False, log=lambda _: None)

    assert set(metrics["models"]) == {"teacher.tiny", "teacher_sft.tiny", "student_base", "student_sft", "distilled.multi"}
    n_test = metrics["data"]["test_examples"]
    assert metrics["data"]["test_labels"] == {"sends": 7, "receives": 3, "reports": 2}
    for m in metrics["models"].values():
        assert 0 <= m["accuracy"] <= 1 and 0 <= m["macro_f1"] <= 1 and m["latency_ms"] > 0 and m["n"] == n_test
        assert sum(m[f"predicted/{c}"] for c in LABELS) == pytest.approx(1.0)
    t = metrics["training"]["distill.multi"]
    assert t["shortcut_prior"] == pytest.approx([26 / 44, 11 / 44, 7 / 44], abs=1e-3)  # train 25/10/6, add-one smoothed
    assert "first_shortcut" in t and len([h for h in json.loads(
        (out / "stages/distill.multi/model/train_history.json").read_text())["history"] if "val_loss" in h]) == 2
    preds = [json.loads(line) for line in (out / "stages/evaluate_distilled.multi/predictions.jsonl").read_text().splitlines()]
    assert len(preds) == n_test and set(preds[0]["log_probs"]) == set(LABELS)
    report = (out / "report.md").read_text()
    assert "| Role | Params (M) | Accuracy | macro-F1 | ms / inference | predicted (sends / receives / reports) |" in report
    assert "label_prior_kl x0.5" in report and "split per label" in report


def test_a_bad_layer_map_stops_the_run_before_any_stage_trains(tmp_path, tiny_recipe, monkeypatch):
    from distill2edge.train.multi import MultiTeacherConfigError

    trained: list[str] = []
    monkeypatch.setattr(sft_stage, "run_sft", lambda *a, **k: trained.append("sft"))
    path = tiny_recipe(distill={"d": {
        "algorithm": "multi_teacher", "teachers": {"tiny": {"layer_map": [[1, 2], [2, 9]]}}, "hidden": {"weight": 1.0},
        "train": TRAIN,
    }})
    with pytest.raises(MultiTeacherConfigError, match=r"distill\.d\.teachers\.tiny: hidden\.layer_map: .*teacher layer 9 out of range 1\.\.4"):
        run_recipe(load_recipe(str(path)), tmp_path / "run", progress=False, log=lambda _: None)
    assert trained == []
