"""Model specs: format detection by path, `role=path` parsing, clear errors on bad paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill2edge.bench import BenchError, BenchModel, detect_format, parse_model_spec


def test_detects_torch_folder(tiny_llama_dir: Path) -> None:
    assert detect_format(tiny_llama_dir) == "torch"


def test_detects_gguf_by_magic_not_suffix(tmp_path: Path) -> None:
    f = tmp_path / "model.bin"
    f.write_bytes(b"GGUF" + b"\0" * 16)
    assert detect_format(f) == "gguf"
    other = tmp_path / "x.gguf"
    other.write_bytes(b"PK\3\4")
    with pytest.raises(BenchError, match="not GGUF"):
        detect_format(other)


def test_detects_onnx_folder_and_needs_config(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(BenchError, match="config.json"):
        detect_format(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    assert detect_format(tmp_path) == "onnx"


def test_bad_paths_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no such file"):
        detect_format(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match="empty"):
        detect_format(tmp_path / "empty")


def test_role_prefix_and_default_name(tiny_llama_dir: Path) -> None:
    m = parse_model_spec(f"teacher={tiny_llama_dir}")
    assert (m.role, m.format, m.path) == ("teacher", "torch", tiny_llama_dir)
    assert m.name == f"{tiny_llama_dir.name} (torch)"
    plain = parse_model_spec(str(tiny_llama_dir), default_role="student")
    assert plain.role == "student"


def test_explicit_name_and_format_kept(tiny_llama_dir: Path) -> None:
    m = BenchModel(tiny_llama_dir, "student", name="my student").resolved()
    assert (m.name, m.format) == ("my student", "torch")
    with pytest.raises(BenchError, match="unknown format"):
        BenchModel(tiny_llama_dir, format="tflite").resolved()


def test_settings_follow_the_recipe() -> None:
    from distill2edge.bench import settings_for_recipe
    from distill2edge.config import load_recipe

    recipe = load_recipe("telecom-qa")
    s = settings_for_recipe(recipe, threads=3)
    assert s.template == recipe.data.prompt_template and s.max_length == recipe.data.max_length
    assert s.max_new_tokens == recipe.evaluate.max_new_tokens and s.threads == 3
    assert list(s.metrics) == recipe.evaluate.metrics
