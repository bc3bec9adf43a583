"""The accuracy-latency frontier on tiny models: one run folder per size, the teacher fine-tuned once."""

import json

import pytest

from distill2edge.config import RecipeError, load_recipe
from distill2edge.frontier import run_frontier, size_recipe


def test_size_recipe_reuses_the_first_sizes_teacher(tiny_recipe, tmp_path):
    base = load_recipe(str(tiny_recipe()))
    first = size_recipe(base, 3, None)
    assert first.student.num_layers == 3 and first.evaluate.models == ["teacher_sft.tiny", "distilled.kd"]
    assert not first.bench.enabled and first.export.profiles == []
    later = size_recipe(base, 1, {"tiny": str(tmp_path / "sft")})
    assert later.teachers["tiny"].path == str(tmp_path / "sft") and later.distill["kd"].teacher_state == "base"
    assert later.evaluate.models == ["distilled.kd"]
    with pytest.raises(RecipeError, match="student.init_from"):
        size_recipe(load_recipe(str(tiny_recipe(student={"path": str(tmp_path)}))), 2, None)


def test_size_recipe_cuts_later_sizes_from_the_first_sizes_fine_tuned_teacher(tiny_recipe, tmp_path):
    """A student cut from `teacher_sft.NAME` with listed layers: every size measures block influence, and
    sizes after the first cut from the SFT folder the first size made (no second teacher SFT)."""
    base = load_recipe(str(tiny_recipe(student={"init_from": "teacher_sft.tiny", "layers": [0, 1]})))
    first = size_recipe(base, 3, None)
    assert first.student.init_from == "teacher_sft.tiny" and first.student.layers == "block_influence"
    later = size_recipe(base, 1, {"tiny": str(tmp_path / "sft")})
    assert later.student.init_from == str(tmp_path / "sft") and later.student.num_layers == 1


def test_frontier_trains_each_size_and_times_every_gguf_beside_the_teacher(tiny_recipe, tmp_path):
    base = load_recipe(str(tiny_recipe(student={"init_from": str(tmp_path), "num_layers": 2})),
                       ["student.init_from=" + load_recipe(str(tiny_recipe())).student.init_from])
    logs: list[str] = []
    result = run_frontier(base, [3, 1], tmp_path / "f", quant="f32", max_questions=2, log=logs.append,
                          progress=False)
    assert [r["layers"] for r in result["students"]] == [3, 1]
    assert result["students"][0]["params"] > result["students"][1]["params"]
    # The second size trained no teacher of its own: it distilled from the first size's SFT folder.
    assert (tmp_path / "f/L3/stages/sft_teacher.tiny/model").exists()
    assert not (tmp_path / "f/L1/stages/sft_teacher.tiny").exists()
    assert result["teacher"]["model_dir"].endswith("L3/stages/sft_teacher.tiny/model")
    for r in [result["teacher"], *result["students"]]:
        assert r["decode_tokens_per_s"] > 0 and r["file_mb"] > 0 and 0.0 <= r["token_f1"] <= 1.0
    saved = json.loads((tmp_path / "f/frontier.json").read_text())
    assert saved["students"][1]["speedup_vs_teacher"] == pytest.approx(
        saved["students"][1]["decode_tokens_per_s"] / saved["teacher"]["decode_tokens_per_s"])
    md = (tmp_path / "f/frontier.md").read_text()
    assert "| distilled.kd | 1 |" in md and (tmp_path / "f/frontier.png").stat().st_size > 0
