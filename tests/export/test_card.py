"""Model cards carry Hub front matter (read back by huggingface_hub) and the lineage of the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from distill2edge.export.gguf import export_gguf
from distill2edge.export.lineage import lineage

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _run_folder(root: Path, tiny: Path) -> Path:
    """A recipe run folder: manifest.json and a distill stage whose model is a copy of `tiny`."""
    model = root / "stages" / "distill.kd" / "model"
    shutil.copytree(tiny, model)
    manifest = {
        "recipe": "telecom-qa",
        "config": {
            "teachers": {"t": {"path": "embedded:smollm2-135m-instruct"}, "g": {"path": "embedded:gemma-3-270m"}},
            "student": {"init_from": "embedded:smollm2-135m-instruct"},
        },
        "stages": {"distill.kd": {"config": {"distill": {"teacher": "t"}}, "metrics": {"val_ce": 1.25}}},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return model


def test_lineage_of_a_recipe_stage(tiny_llama: Path, tmp_path: Path) -> None:
    lin = lineage(_run_folder(tmp_path, tiny_llama))
    assert lin.base_models == [SMOLLM2] and lin.distilled and lin.stage == "distill.kd"
    assert lin.name == "SmolLM2 telecom-qa distill.kd" and lin.basename == "SmolLM2"
    assert lin.stage_metrics == {"val_ce": 1.25}


def test_gguf_card_front_matter(tiny_llama: Path, tmp_path: Path) -> None:
    """ModelCard.load finds base_model, license, library_name, tags and pipeline_tag; the body has parity."""
    model = _run_folder(tmp_path / "run", tiny_llama)
    export_gguf(model, tmp_path / "out" / "s.f16.gguf", quant="f16", profile="cpu-laptop")
    card = ModelCard.load(tmp_path / "out" / "s.f16.md")
    data = card.data.to_dict()
    assert data["base_model"] == [SMOLLM2] and data["library_name"] == "gguf"
    assert data["pipeline_tag"] == "text-generation"
    assert {"gguf", "distillation", "profile-cpu-laptop", "f16"} <= set(data["tags"])
    if (Path.home() / ".cache/distill2edge/models/smollm2-135m-instruct/conversion.json").is_file():
        assert data["license"] == "apache-2.0"  # the teacher's, from its source GGUF
    else:
        pytest.skip("embedded SmolLM2 not converted here: licence not checked")
    assert "| f16 | llama-cpp-python" in card.text and "| val_ce | 1.25 |" in card.text


def test_lineage_and_card_of_a_trimmed_student(tiny_llama: Path, tmp_path: Path) -> None:
    """A student trimmed by stage `vocabulary.distilled.kd` takes its teacher from stage `distill.kd` (the
    trim stage's own config names no teacher) and its card states the trim."""
    from distill2edge.models.vocab_trim import TRIM_RECORD

    model = _run_folder(tmp_path, tiny_llama)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["config"]["student"] = {}  # so the only origin is the teacher the distill stage names
    manifest["stages"]["vocabulary.distilled.kd"] = {"config": {"model": "distilled.kd"}, "metrics": {"kept": 300}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    trimmed = tmp_path / "stages" / "vocabulary.distilled.kd" / "model"
    shutil.copytree(model, trimmed)
    (trimmed / TRIM_RECORD).write_text(json.dumps({"kept": 300, "original_size": 512}))
    lin = lineage(trimmed)
    assert lin.distilled and lin.stage == "vocabulary.distilled.kd" and lin.base_models == [SMOLLM2]
    assert lin.vocab_trim == {"kept": 300, "original_size": 512}
    export_gguf(trimmed, tmp_path / "out" / "s.f16.gguf", quant="f16", profile="cpu-laptop")
    card = ModelCard.load(tmp_path / "out" / "s.f16.md")
    assert card.data.to_dict()["base_model"] == [SMOLLM2]
    assert "- Vocabulary trimmed to its domain: 300 of 512 tokens" in card.text
