"""The whole recipe pipeline on tiny random models: outputs, reuse, and refusal of mixed vocabularies."""

import json

import pytest

from distill2edge.cli.main import main
from distill2edge.config import load_recipe
from distill2edge.export import ParityError
from distill2edge.pipeline import run_recipe


def test_tiny_pipeline_end_to_end_and_reuse(tmp_path, tiny_recipe):
    out = tmp_path / "run"
    recipe = load_recipe(str(tiny_recipe()))
    logs: list[str] = []
    metrics = run_recipe(recipe, out, progress=False, log=logs.append)

    assert set(metrics["models"]) == {"teacher.tiny", "teacher_sft.tiny", "student_base", "student_sft", "distilled.kd"}
    for m in metrics["models"].values():
        assert m["answer_ce"] > 0 and 0.0 <= m["token_f1"] <= 1.0 and m["n"] == len((out / "stages/data/test.jsonl").read_text().splitlines())
    assert metrics["models"]["student_base"]["params"] < metrics["models"]["teacher.tiny"]["params"]
    assert metrics["training"]["distill.kd"]["steps"] == 2 and metrics["training"]["sft_teacher.tiny"]["trainable_params"] > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert all(s["status"] == "complete" for s in manifest["stages"].values())
    assert json.loads((out / "metrics.json").read_text())["models"].keys() == metrics["models"].keys()
    report = (out / "report.md").read_text()
    assert "| student distilled: kd |" in report and (out / "accuracy.png").stat().st_size > 0
    preds = (out / "stages/evaluate_distilled.kd/predictions.jsonl").read_text().splitlines()
    assert {"id", "prediction", "references", "latency_s"} <= set(json.loads(preds[0]))
    assert (out / "stages/distill.kd/model/config.json").exists()
    assert not any(p.name.endswith((".tmp", ".work")) for p in (out / "stages").iterdir())

    logs.clear()
    run_recipe(recipe, out, progress=False, log=logs.append)
    assert all("reusing" in line for line in logs if line.startswith("[")), logs

    # A changed distillation setting re-runs distill and the evaluation that depends on it, nothing else.
    logs.clear()
    changed = load_recipe(str(tiny_recipe()), ["distill.kd.loss.name=reverse_kl"])
    run_recipe(changed, out, progress=False, log=logs.append)
    ran = {line.split("]")[0][1:] for line in logs if line.endswith("running")}
    assert ran == {"distill.kd", "evaluate_distilled.kd"}


def test_vanilla_kd_refuses_a_teacher_with_another_vocabulary(
    tmp_path, tiny_recipe, make_tiny_model, tiny_tokenizer_b_dir, capsys
):
    teacher_dir = make_tiny_model(tokenizer_dir=tiny_tokenizer_b_dir)  # a llama like the student, vocabulary B
    recipe = tiny_recipe(teachers={"tiny": {"path": str(teacher_dir)}})
    out = tmp_path / "run"
    assert main(["recipe", str(recipe), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "DSKD" in err and "vocabular" in err.lower()
    assert not (out / "metrics.json").exists() and not (out / "report.md").exists()
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"
    assert not (out / "stages/distill.kd").exists()


def test_dskd_from_two_teachers_and_a_chained_stage(tmp_path, tiny_recipe, tiny_llama_dir, tiny_teacher_b_dir):
    """Vanilla KD and DSKD from the same-vocabulary teacher, DSKD (cross-model attention) from a teacher
    with another vocabulary, and a second stage that starts from the first stage's student."""
    train = {"epochs": 1, "batch_size": 4, "max_steps": 2, "checkpoint_every": 1, "lr": 1e-3}
    recipe = load_recipe(str(tiny_recipe(
        teachers={"same": {"path": str(tiny_llama_dir)}, "other": {"path": str(tiny_teacher_b_dir)}},
        sft={"teacher": {"enabled": False}, "student": {"enabled": False}},
        distill={
            "vanilla": {"teacher": "same", "teacher_state": "base", "student": "base", "train": train},
            "dskd": {"teacher": "same", "teacher_state": "base", "student": "base", "algorithm": "dskd", "train": train},
            "cma": {"teacher": "other", "teacher_state": "base", "student": "base", "algorithm": "dskd", "train": train},
            "then": {"teacher": "other", "teacher_state": "base", "student": "vanilla", "algorithm": "dskd_cma",
                     "train": train},
        },
    )))
    out = tmp_path / "run"
    metrics = run_recipe(recipe, out, progress=False, log=lambda _: None)
    assert list(metrics["models"]) == [
        "teacher.same", "teacher.other", "student_base", "distilled.vanilla", "distilled.dskd", "distilled.cma",
        "distilled.then",
    ]
    t = metrics["training"]
    assert "dskd_variant" not in t["distill.vanilla"]
    assert t["distill.dskd"]["dskd_variant"].startswith("dual space")
    assert t["distill.cma"]["dskd_variant"] == "cross-model attention"
    assert t["distill.then"]["dskd_variant"] == "cross-model attention"
    for name in ("dskd", "cma", "then"):
        assert t[f"distill.{name}"]["steps"] == 2 and t[f"distill.{name}"]["projector_params"] > 0
        assert t[f"distill.{name}"]["first_t2s_ce"] > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert "distill.vanilla" in manifest["stages"]["distill.then"]["inputs"]
    report = (out / "report.md").read_text()
    assert "| cma | dskd | other (base) | base |" in report and "| student distilled: then |" in report


def test_export_stage_records_passes_gate_failures_and_skips(tmp_path, tiny_recipe):
    """The best distilled student exported per profile: an F32 GGUF passes its gate and is written with
    its sidecars; a q8_0 profile whose gate demands exact equality fails it (recorded, nothing exported,
    the run goes on); a CUDA-only ONNX profile is skipped on a machine without CUDA."""
    (tmp_path / "f32.yaml").write_text("format: gguf\ngguf: {quant: f32, threads: 2}\n")
    (tmp_path / "strict.yaml").write_text(
        "format: gguf\ngguf: {quant: q8_0, threads: 2, gates: {q8_0: {max_kld: 0.0, min_same_top: 1.0}}}\n"
    )
    recipe = load_recipe(str(tiny_recipe(
        sft={"teacher": {"enabled": False}, "student": {"enabled": False}},
        distill={"kd": {"teacher_state": "base", "student": "base",
                        "train": {"epochs": 1, "batch_size": 4, "max_steps": 1}}},
        evaluate={"models": ["distilled.kd"], "max_new_tokens": 2, "batch_size": 8},
        export={"models": ["best_distilled"],
                "profiles": [str(tmp_path / "f32.yaml"), str(tmp_path / "strict.yaml"), "jetson-orin"]},
        bench={"enabled": True, "max_questions": 2, "threads": 1, "batch_size": 0},
    )))
    out = tmp_path / "run"
    metrics = run_recipe(recipe, out, progress=False, log=lambda _: None)
    ex = metrics["exports"]
    assert set(ex) == {"export_distilled.kd.f32", "export_distilled.kd.strict", "export_distilled.kd.jetson-orin"}
    ok = ex["export_distilled.kd.f32"]
    assert ok["status"] == "exported" and ok["chosen_as"] == "best_distilled" and ok["gates"]["f32"]["passed"]
    folder = out / "stages/export_distilled.kd.f32"
    assert {"model.f32.gguf", "model.f32.parity.json", "model.f32.md", "model.f32.Modelfile"} <= {p.name for p in folder.iterdir()}
    assert (folder / "model.f32.gguf").stat().st_size == ok["bytes"]
    failed = ex["export_distilled.kd.strict"]
    assert failed["status"] == "gate failed" and not failed["gates"]["q8_0"]["passed"]
    assert not list((out / "stages/export_distilled.kd.strict").glob("*.gguf"))
    assert (out / "stages/export_distilled.kd.strict/gate_failure.json").exists()
    assert ex["export_distilled.kd.jetson-orin"]["status"] == "skipped"
    report = (out / "report.md").read_text()
    assert "## Exports" in report and "| distilled.kd | strict | gguf | gate failed |" in report
    # The benchmark: the teacher in torch against the student in torch and as the exported GGUF only
    # (the failed and skipped exports are left out), plus the teacher exported to the student's GGUF type
    # (bench.same_bits, on by default) for the equal-bits ratios.
    bench = metrics["bench"]["models"]
    assert [(m["role"], m["format"]) for m in bench] == [
        ("teacher", "torch"), ("student", "torch"), ("student", "gguf"), ("teacher", "gguf")]
    assert all(m["ms_per_answer"] > 0 and m["decode_tokens_per_s"] > 0 for m in bench)
    assert bench[3]["weight_type"] == bench[2]["weight_type"] == "f32"
    same = {r["model"]: r["teacher"] for r in metrics["bench"]["same_bits"]}
    assert same == {bench[1]["name"]: bench[0]["name"], bench[2]["name"]: bench[3]["name"]}
    assert (out / "stages/bench/bench.json").exists() and "## Benchmark" in report
    # Asking for failures to stop the run makes the failed gate an error.
    strict = load_recipe(str(tiny_recipe(
        sft={"teacher": {"enabled": False}, "student": {"enabled": False}},
        distill={"kd": {"teacher_state": "base", "student": "base",
                        "train": {"epochs": 1, "batch_size": 4, "max_steps": 1}}},
        evaluate={"models": ["distilled.kd"], "max_new_tokens": 2, "batch_size": 8},
        export={"models": ["distilled.kd"], "profiles": [str(tmp_path / "strict.yaml")], "on_gate_failure": "fail"},
    )))
    with pytest.raises(ParityError):
        run_recipe(strict, out, progress=False, log=lambda _: None)


def test_training_stages_warn_of_answers_the_context_cut_and_the_answer_window_keeps_them(tmp_path, tiny_recipe):
    filler = "the gnb sends the ssb burst every twenty ms. " * 8
    src = tmp_path / "late.jsonl"
    with src.open("w") as fh:
        for c in range(10):
            ctx = f"{filler}cell {c} uses band n{70 + c}. {filler}"
            for q, (question, answer) in enumerate([(f"which band does cell {c} use?", f"n{70 + c}"),
                                                     (f"what does the gnb send in cell {c}?", "the ssb burst")]):
                fh.write(json.dumps({"id": f"{c}-{q}", "context": ctx, "question": question, "answer": answer}) + "\n")
    data = {"source": str(src), "max_length": 64, "split": {"validation": 0.2, "test": 0.2}}
    logs: list[str] = []
    run_recipe(load_recipe(str(tiny_recipe(data=data))), tmp_path / "head", progress=False, log=logs.append, until="distill")
    warned = [line for line in logs if "dropped the reference answer" in line]
    # Six training contexts: the band answers sit past the 64-token head, the ssb burst opens every context.
    assert {line.split("]")[0] for line in warned} == {"[sft_teacher.tiny", "[sft_student", "[distill.kd"}
    assert all("from 6 of 12 training prompts" in line for line in warned), warned

    logs.clear()
    windowed = load_recipe(str(tiny_recipe(data={**data, "context_window": "answer"})))
    run_recipe(windowed, tmp_path / "window", progress=False, log=logs.append, until="distill")
    assert not [line for line in logs if "dropped the reference answer" in line]
