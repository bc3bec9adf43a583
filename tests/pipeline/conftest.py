import json
from pathlib import Path

import pytest
import yaml


@pytest.fixture
def qa_jsonl(tmp_path: Path) -> Path:
    """10 small contexts x 3 questions."""
    p = tmp_path / "qa.jsonl"
    with p.open("w") as fh:
        for c in range(10):
            ctx = f"cell {c} uses band n{70 + c} and the amf {c} serves slice {c * 3}."
            for q, (question, answer) in enumerate([
                (f"which band does cell {c} use?", f"n{70 + c}"),
                (f"which amf serves cell {c}?", f"amf {c}"),
                (f"which slice is served in cell {c}?", f"slice {c * 3}"),
            ]):
                fh.write(json.dumps({"id": f"{c}-{q}", "context": ctx, "question": question, "answer": answer}) + "\n")
    return p


@pytest.fixture
def tiny_recipe(tmp_path: Path, tiny_llama_dir: Path, qa_jsonl: Path):
    """Write a recipe over the tiny model; `make(**sections)` overrides top-level sections."""

    def make(**sections) -> Path:
        train = {"epochs": 1, "batch_size": 4, "max_steps": 2, "checkpoint_every": 1, "lr": 1e-3}
        recipe = {
            "name": "tiny",
            "teacher": {"path": str(tiny_llama_dir)},
            "student": {"init_from": str(tiny_llama_dir), "num_layers": 2},
            "data": {"source": str(qa_jsonl), "max_length": 96, "split": {"validation": 0.2, "test": 0.2}},
            "sft": {"teacher": {"lora": {"r": 4, "alpha": 8}, "train": train},
                    "student": {"lora": None, "train": train}},
            "distill": {"train": train},
            "evaluate": {"max_new_tokens": 4, "batch_size": 4},
            **sections,
        }
        p = tmp_path / "tiny.yaml"
        p.write_text(yaml.safe_dump(recipe))
        return p

    return make
