"""The whole recipe pipeline on tiny random models: outputs, reuse, and refusal of mixed vocabularies."""

import json

from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from distill2edge.cli.main import main
from distill2edge.config import load_recipe
from distill2edge.pipeline import run_recipe


def test_tiny_pipeline_end_to_end_and_reuse(tmp_path, tiny_recipe):
    out = tmp_path / "run"
    recipe = load_recipe(str(tiny_recipe()))
    logs: list[str] = []
    metrics = run_recipe(recipe, out, progress=False, log=logs.append)

    assert set(metrics["models"]) == {"teacher", "teacher_sft", "student_base", "student_sft", "student_distilled"}
    for m in metrics["models"].values():
        assert 0.0 <= m["token_f1"] <= 1.0 and m["n"] == len((out / "stages/data/test.jsonl").read_text().splitlines())
    assert metrics["models"]["student_base"]["params"] < metrics["models"]["teacher"]["params"]
    assert metrics["training"]["distill"]["steps"] == 2 and metrics["training"]["sft_teacher"]["trainable_params"] > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert all(s["status"] == "complete" for s in manifest["stages"].values())
    assert json.loads((out / "metrics.json").read_text())["models"].keys() == metrics["models"].keys()
    report = (out / "report.md").read_text()
    assert "| student (distilled) |" in report and (out / "accuracy.png").stat().st_size > 0
    preds = (out / "stages/evaluate_student_distilled/predictions.jsonl").read_text().splitlines()
    assert {"id", "prediction", "references", "latency_s"} <= set(json.loads(preds[0]))
    assert (out / "stages/distill/model/config.json").exists()
    assert not any(p.name.endswith((".tmp", ".work")) for p in (out / "stages").iterdir())

    logs.clear()
    run_recipe(recipe, out, progress=False, log=logs.append)
    assert all("reusing" in line for line in logs if line.startswith("[")), logs

    # A changed distillation setting re-runs distill and the evaluation that depends on it, nothing else.
    logs.clear()
    changed = load_recipe(str(tiny_recipe()), ["distill.loss.name=reverse_kl"])
    run_recipe(changed, out, progress=False, log=logs.append)
    ran = {line.split("]")[0][1:] for line in logs if line.endswith("running")}
    assert ran == {"distill", "evaluate_student_distilled"}


def test_vanilla_kd_refuses_a_teacher_with_another_vocabulary(tmp_path, tiny_recipe, tiny_tokenizer_b_dir, capsys):
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_b_dir)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    teacher_dir = tmp_path / "other-vocab"
    LlamaForCausalLM(cfg).save_pretrained(teacher_dir)
    tok.save_pretrained(teacher_dir)
    recipe = tiny_recipe(teacher={"path": str(teacher_dir)})
    out = tmp_path / "run"
    assert main(["recipe", str(recipe), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "DSKD" in err and "vocabular" in err.lower()
    assert not (out / "metrics.json").exists() and not (out / "report.md").exists()
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"
    assert not (out / "stages/distill").exists()
