"""`distill2edge bench` end to end on the tiny model, and its usage errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill2edge.cli.main import main


def test_bench_command_writes_results(tmp_path: Path, tiny_llama_dir: Path, tiny_gguf: Path, qa_jsonl: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench"
    code = main(["bench", str(tiny_llama_dir), f"student={tiny_gguf}", "--role", "teacher", "--data", str(qa_jsonl),
                 "--split", "all", "--limit", "2", "--max-new-tokens", "3", "--max-length", "96",
                 "--warmup", "0", "--threads", "1", "--no-isolate", "--out", str(out)])
    assert code == 0
    result = json.loads((out / "bench.json").read_text())
    assert [(m["role"], m["format"]) for m in result["models"]] == [("teacher", "torch"), ("student", "gguf")]
    assert result["settings"]["threads"] == 1 and result["n_questions"] == 2
    assert "| student | tiny.f32 (gguf) |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "no such file"),
        (["{model}", "--role", "teacher", "--role", "student"], "--role given"),
        (["{model}", "--threads", "0"], "--threads"),
        (["{model}", "--data", "{missing}"], "not found"),
    ],
)
def test_bench_usage_errors(args: list[str], message: str, tmp_path: Path, tiny_llama_dir: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    fill = {"missing": str(tmp_path / "missing"), "model": str(tiny_llama_dir)}
    code = main(["bench", *(a.format(**fill) for a in args), "--out", str(tmp_path / "out")])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "bench.json").exists()


def test_models_are_checked_before_the_bandwidth_is_measured(tmp_path: Path, tiny_llama_dir: Path, qa_jsonl: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 17: a model that cannot load fails at once, not after the bandwidth measurement."""
    import shutil

    from distill2edge.bench import api

    def measure_bandwidth(_threads: int) -> dict:
        raise AssertionError("bandwidth measured before the models were checked")

    monkeypatch.setattr(api, "measure_bandwidth", measure_bandwidth)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llama_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\xff" * 16)  # truncated weights
    code = main(["bench", str(tiny_llama_dir), str(broken), "--data", str(qa_jsonl), "--split", "all",
                 "--limit", "1", "--no-isolate", "--out", str(tmp_path / "out")])
    assert code == 2
    assert f"{broken / 'model.safetensors'}: not a readable safetensors file" in capsys.readouterr().err
