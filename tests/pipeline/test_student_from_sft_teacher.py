"""`student.init_from: teacher_sft.NAME`: the student is cut from a teacher after its SFT."""

from pathlib import Path

import pytest
import torch

from distill2edge.config import RecipeError, load_recipe
from distill2edge.models import load_model
from distill2edge.pipeline import run_recipe


def test_student_cut_from_the_fine_tuned_teacher(tmp_path: Path, tiny_recipe, tiny_llama_dir: Path) -> None:
    """The student's layer is the SFT teacher's layer 1 (LoRA merged, so it differs from the base model's),
    and the student_init stage runs after the teacher's SFT."""
    recipe = load_recipe(str(tiny_recipe(
        student={"init_from": "teacher_sft.tiny", "layers": [1]}, evaluate={"models": ["student_base"]},
    )))
    logs: list[str] = []
    run_recipe(recipe, tmp_path / "run", progress=False, log=logs.append)
    order = [line.split("]")[0] + "]" for line in logs if line.endswith("running")]
    assert order.index("[sft_teacher.tiny]") < order.index("[student_init]")
    stages = tmp_path / "run" / "stages"
    student, _ = load_model(str(stages / "student_init" / "model"))
    sft, _ = load_model(str(stages / "sft_teacher.tiny" / "model"))
    base, _ = load_model(str(tiny_llama_dir))
    weight = student.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(weight, sft.model.layers[1].self_attn.q_proj.weight)
    assert not torch.equal(weight, base.model.layers[1].self_attn.q_proj.weight)


@pytest.mark.parametrize(("fields", "message"), [
    ({"student": {"init_from": "teacher_sft.nope", "num_layers": 1}}, "names no teacher"),
    ({"student": {"init_from": "teacher_sft.tiny", "num_layers": 1}, "sft": {"teacher": {"enabled": False}}},
     "sft.teacher.enabled is false"),
])
def test_a_wrong_teacher_source_is_refused(tiny_recipe, fields: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        load_recipe(str(tiny_recipe(**fields)))
