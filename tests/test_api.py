"""The public Python API (`distill2edge.api`, re-exported lazily by `distill2edge`): each function gives
what its CLI command gives on the same input, and `import distill2edge` stays free of torch."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import distill2edge
from distill2edge.cli.main import main

_EVAL_ARGS: dict[str, Any] = {"split": "all", "max_questions": 3, "max_new_tokens": 4, "max_length": 96,
                              "metrics": ["qa,rouge_l"]}


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_import_is_cheap_and_exports_the_api() -> None:
    code = (
        "import sys, distill2edge as d\n"
        "heavy = lambda: sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules)\n"
        "assert heavy() == [], heavy()\n"
        "fns = [getattr(d, n) for n in d.__all__]\n"  # resolving every name imports no heavy module either
        "assert heavy() == [], heavy()\n"
        "print(d.__version__, ' '.join(sorted(d.__all__)))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    version, names = run.stdout.split(maxsplit=1)
    assert version == distill2edge.__version__
    assert set(names.split()) == {"__version__", "load_recipe", "run_recipe", "export_gguf", "export_onnx",
                                  "run_bench", "evaluate_models", "RecipeRun", "ExportResult", "Evaluation"}
    for name in distill2edge.__all__:
        obj = getattr(distill2edge, name)
        assert name == "__version__" or (callable(obj) and obj.__doc__), name
    with pytest.raises(AttributeError):
        distill2edge.no_such_name  # noqa: B018


def test_evaluate_models_beside_the_evaluate_subpackage() -> None:
    """The API function is `evaluate_models`: `distill2edge.evaluate` stays the subpackage, untouched by the API."""
    import distill2edge.evaluate.registry
    from distill2edge import api

    assert distill2edge.evaluate.registry.resolve_metrics(["qa"]) == ["exact_match", "token_f1"]
    assert distill2edge.evaluate_models is api.evaluate_models
    with pytest.raises(TypeError):
        distill2edge.evaluate_models()  # type: ignore[call-arg]


def test_load_recipe_equals_recipe_show(capsys: pytest.CaptureFixture[str]) -> None:
    sets = ["distill.fullseq.train.lr=1e-4", "evaluate.metrics=[token_f1]"]
    recipe = distill2edge.load_recipe("telecom-qa", sets, quick=True)
    assert main(["recipe", "show", "telecom-qa", "--quick", *(a for s in sets for a in ("--set", s))]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown == recipe.model_dump(mode="json")
    assert recipe.distill["fullseq"].train.lr == 1e-4 and recipe.evaluate.metrics == ["token_f1"]


def test_run_recipe_equals_the_recipe_command(tmp_path: Path, tiny_recipe, capsys) -> None:
    recipe_file = tiny_recipe(
        sft={"teacher": {"enabled": False}, "student": {"enabled": False}},
        distill={"kd": {"teacher_state": "base", "student": "base",
                        "train": {"epochs": 1, "batch_size": 4, "max_steps": 1}}},
        evaluate={"models": ["distilled.kd"], "max_new_tokens": 2, "batch_size": 8, "metrics": ["qa"]},
    )
    sets = ["distill.kd.loss.name=reverse_kl"]
    assert main(["recipe", str(recipe_file), "--out", str(tmp_path / "cli"), "--no-progress", "--set", sets[0]]) == 0
    assert f"run folder: {tmp_path / 'cli'}" in capsys.readouterr().out
    logs: list[str] = []
    run = distill2edge.run_recipe(recipe_file, tmp_path / "api", overrides=sets, progress=False, log=logs.append)

    assert isinstance(run, distill2edge.RecipeRun) and run.out_dir == tmp_path / "api"
    assert logs[0] == f"run folder: {tmp_path / 'api'}" and run.report.exists()
    assert run.metrics == json.loads((run.out_dir / "metrics.json").read_text())
    assert run.models == {"distilled.kd": str(tmp_path / "api" / "stages/distill.kd/model")}
    cli_metrics = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert cli_metrics.keys() == run.metrics.keys()
    assert _files(tmp_path / "cli") == _files(run.out_dir)
    pred = "stages/evaluate_distilled.kd/predictions.jsonl"
    answers = [[json.loads(line)["prediction"] for line in (root / pred).open()] for root in (tmp_path / "cli", run.out_dir)]
    assert answers[0] == answers[1]
    for key in ("token_f1", "exact_match", "answer_ce", "n"):
        assert cli_metrics["models"]["distilled.kd"][key] == pytest.approx(run.metrics["models"]["distilled.kd"][key])

    # A Recipe object runs as is (resuming: every stage is reused); overrides then belong to load_recipe.
    again = distill2edge.run_recipe(distill2edge.load_recipe(recipe_file, sets), run.out_dir, progress=False,
                                    log=logs.append)
    assert again.metrics["models"].keys() == run.metrics["models"].keys()
    with pytest.raises(ValueError, match="overrides"):
        distill2edge.run_recipe(distill2edge.load_recipe(recipe_file), run.out_dir, overrides=sets)


def test_export_gguf_equals_the_export_command(tmp_path: Path, tiny_llama_dir: Path) -> None:
    cli_out, api_out = tmp_path / "cli" / "tiny.f32.gguf", tmp_path / "api" / "tiny.f32.gguf"
    assert main(["export", "gguf", str(tiny_llama_dir), "--out", str(cli_out), "--quant", "f32", "--threads", "1"]) == 0
    result = distill2edge.export_gguf(tiny_llama_dir, api_out, quant="f32", threads=1)

    assert isinstance(result, distill2edge.ExportResult)
    assert result.path == api_out and result.format == "gguf" and result.passed and set(result.gates) == {"f32"}
    assert result.files == {"parity": tmp_path / "api/tiny.f32.parity.json", "card": tmp_path / "api/tiny.f32.md",
                            "modelfile": tmp_path / "api/tiny.f32.Modelfile"}
    assert _files(tmp_path / "cli") == _files(tmp_path / "api")
    assert api_out.read_bytes() == cli_out.read_bytes()
    cli_record = json.loads((tmp_path / "cli/tiny.f32.parity.json").read_text())
    assert result.record == json.loads(result.files["parity"].read_text())
    assert cli_record["gates"] == result.record["gates"]

    from distill2edge.export import ExportError, ParityError

    with pytest.raises(ExportError, match="--quant"):  # the command's exit 2
        distill2edge.export_gguf(tiny_llama_dir, tmp_path / "bad.gguf", quant="q3")
    strict = tmp_path / "strict.yaml"
    strict.write_text("format: gguf\ngguf: {quant: q8_0, threads: 1, gates: {q8_0: {max_kld: 0.0, min_same_top: 1.0}}}\n")
    with pytest.raises(ParityError) as failed:  # the command's exit 1: nothing written
        distill2edge.export_gguf(tiny_llama_dir, tmp_path / "strict" / "tiny.gguf", profile=str(strict))
    assert not failed.value.record["gates"]["q8_0"]["passed"] and not (tmp_path / "strict" / "tiny.gguf").exists()


def test_export_onnx_equals_the_export_command(tmp_path: Path, tiny_llama_dir: Path) -> None:
    pytest.importorskip("optimum.onnxruntime")
    assert main(["export", "onnx", str(tiny_llama_dir), "--out", str(tmp_path / "cli")]) == 0
    result = distill2edge.export_onnx(tiny_llama_dir, tmp_path / "api")

    assert result.path == tmp_path / "api" and result.format == "onnx" and result.passed
    assert result.files == {"parity": tmp_path / "api/parity.json", "card": tmp_path / "api/README.md"}
    assert _files(tmp_path / "cli") == _files(tmp_path / "api")
    cli_record = json.loads((tmp_path / "cli/parity.json").read_text())
    assert cli_record["gates"].keys() == result.gates.keys()
    for name, gate in result.gates.items():
        assert gate["passed"] == cli_record["gates"][name]["passed"]
        assert gate["max_abs_logit_diff"] == pytest.approx(cli_record["gates"][name]["max_abs_logit_diff"], abs=1e-5)


def test_run_bench_equals_the_bench_command(tmp_path: Path, tiny_llama_dir: Path, qa_jsonl: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from distill2edge.bench import api as bench_api

    # The bandwidth measurement takes seconds and differs between runs; both runs get the same figures.
    monkeypatch.setattr(bench_api, "measure_bandwidth", lambda _threads: {"read_gb_s": 10.0, "copy_gb_s": 8.0})
    opts: dict[str, Any] = {"data": str(qa_jsonl), "split": "all", "limit": 2, "max_new_tokens": 3, "max_length": 96,
                            "warmup": 0, "threads": 1, "batch_size": 0}
    argv = ["bench", str(tiny_llama_dir), "--role", "teacher", "--no-isolate",
            "--out", str(tmp_path / "cli")]
    for key, value in opts.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    assert main(argv) == 0
    logs: list[str] = []
    result = distill2edge.run_bench([str(tiny_llama_dir)], tmp_path / "api", roles=["teacher"], isolate=False,
                                    log=logs.append, **opts)

    assert result == json.loads((tmp_path / "api" / "bench.json").read_text())
    cli = json.loads((tmp_path / "cli" / "bench.json").read_text())
    assert cli.keys() == result.keys() and cli["settings"] == result["settings"]
    assert cli["n_questions"] == result["n_questions"] == 2 and any("[bench]" in line for line in logs)
    assert [(m["role"], m["format"]) for m in result["models"]] == [("teacher", "torch")]
    for a, b in zip(cli["models"], result["models"]):
        assert a.keys() == b.keys() and a["accuracy"] == b["accuracy"]
    assert _files(tmp_path / "cli") == _files(tmp_path / "api")

    from distill2edge.bench import BenchError

    with pytest.raises(BenchError, match="--role given"):
        distill2edge.run_bench([str(tiny_llama_dir)], tmp_path / "x", roles=["a", "b"], data=str(qa_jsonl))


def test_evaluate_equals_the_evaluate_command(tmp_path: Path, tiny_llama_dir: Path, qa_jsonl: Path) -> None:
    argv = ["evaluate", f"tiny={tiny_llama_dir}", "--data", str(qa_jsonl), "--out", str(tmp_path / "cli"),
            "--no-progress"]
    for key, value in _EVAL_ARGS.items():
        argv += [f"--{key.replace('_', '-')}", value[0] if isinstance(value, list) else str(value)]
    assert main(argv) == 0
    logs: list[str] = []
    ev = distill2edge.evaluate_models([f"tiny={tiny_llama_dir}"], tmp_path / "api", data=str(qa_jsonl), progress=False,
                               log=logs.append, **_EVAL_ARGS)

    assert isinstance(ev, distill2edge.Evaluation) and ev.out_dir == tmp_path / "api"
    assert ev.summary == json.loads((tmp_path / "api" / "summary.json").read_text())
    cli = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert ev.summary["metrics"] == cli["metrics"] == ["exact_match", "token_f1", "rouge_l"]
    assert ev.scores == {"tiny": {m: cli["models"]["tiny"][m] for m in cli["metrics"]}}
    assert logs == ["tiny: " + "  ".join(f"{m} {ev.scores['tiny'][m]:.4f}" for m in cli["metrics"])]
    assert _files(tmp_path / "cli") == _files(tmp_path / "api")
    rows = [list(csv.reader((root / "tiny" / "scores.csv").open())) for root in (tmp_path / "cli", tmp_path / "api")]
    assert rows[0] == rows[1] and len(rows[0]) == 4

    from distill2edge.evaluate.run import OutputExistsError

    with pytest.raises(OutputExistsError, match="not an empty folder"):
        distill2edge.evaluate_models([str(tiny_llama_dir)], tmp_path / "api", data=str(qa_jsonl))
