"""Teacher placement: an offloaded or separately placed teacher trains the student exactly like one beside it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from distill2edge.config import DataConfig, DistillConfig, load_recipe
from distill2edge.data.qa import load_jsonl
from distill2edge.models import load_model
from distill2edge.models.placement import PlacedTeacher, place_teacher
from distill2edge.train.trainers import run_distill


def _run(tiny_llama_dir: Path, student: Path, qa_jsonl: Path, out: Path, **placement) -> list[float]:
    rows = load_jsonl(qa_jsonl)
    cfg = DistillConfig(algorithm="vanilla", train={"epochs": 1, "batch_size": 4, "max_steps": 3, "early_stopping": None,
                                                    "scheduler": "constant", "lr": 2e-3})
    result = run_distill(
        str(tiny_llama_dir), str(student), {"train": rows[:12], "validation": rows[12:16]},
        DataConfig(source=str(qa_jsonl), max_length=96), cfg, out / "model", out / "work",
        device=torch.device("cpu"), progress=False, **placement,
    )
    return [h["loss"] for h in result.result.history if "loss" in h]


def test_offloaded_teacher_gives_the_same_losses(tiny_llama_dir: Path, make_tiny_model, qa_jsonl: Path, tmp_path: Path) -> None:
    student = make_tiny_model(seed=5)
    beside = _run(tiny_llama_dir, student, qa_jsonl, tmp_path / "a")
    offloaded = _run(tiny_llama_dir, student, qa_jsonl, tmp_path / "b", teacher_offload=True, teacher_device="cpu")
    assert len(beside) == 3
    assert offloaded == pytest.approx(beside, rel=1e-6)


def test_placed_teacher_forwards_and_exposes_its_layers(tiny_llama_dir: Path) -> None:
    model, tok = load_model(str(tiny_llama_dir))
    placed = PlacedTeacher(model, torch.device("cpu"))
    ids = torch.tensor([tok("the cell uses band n70")["input_ids"]])
    torch.testing.assert_close(placed(input_ids=ids).logits, model(input_ids=ids).logits)
    assert placed.get_output_embeddings() is model.get_output_embeddings()
    assert place_teacher(model, torch.device("cpu"), None, False) is model  # nothing to do: no wrapper


def test_dskd_and_multi_teacher_refuse_a_teacher_away_from_the_student(tiny_recipe) -> None:
    path = Path(tiny_recipe())
    base = yaml.safe_load(path.read_text())
    base["teachers"]["tiny"]["device"] = "cpu"
    base["distill"] = {"kd": {"algorithm": "dskd"}}
    path.write_text(yaml.safe_dump(base))
    with pytest.raises(Exception, match=r"teachers.tiny.device/offload: distill.kd \(dskd\) needs the teacher beside the student; enable distill.kd.cache"):
        load_recipe(str(path))
    assert load_recipe(str(path), ["distill.kd.cache.enabled=true"]).teachers["tiny"].device == "cpu"
    with pytest.raises(Exception, match=r"distill.kd \(multi_teacher\) needs the teacher beside the student"):
        load_recipe(str(path), ["distill.kd.algorithm=multi_teacher", "distill.kd.teachers={tiny: 1.0}"])
