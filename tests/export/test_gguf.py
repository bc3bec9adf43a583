"""GGUF export: F32 parity with llama.cpp, quant types, K-quant fallbacks, failure paths, CLI."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import gguf
import pytest

from distill2edge.cli.export_cmd import add_export_parser, run_export
from distill2edge.export import ExportError, ParityError
from distill2edge.export.gguf import export_gguf, supported_architectures
from distill2edge.export.gguf.registry import permute_rope

LOOSE = "format: gguf\ngguf:\n  gates:\n    {q}: {{max_kld: 10.0, min_same_top: 0.0}}\n"


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_export_parser(parser.add_subparsers(dest="command"))
    return run_export(parser.parse_args(["export", *argv]))


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_mistral", "tiny_qwen2", "tiny_gemma3"])
def test_f32_matches_torch(fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    model = request.getfixturevalue(fixture)
    rec = export_gguf(model, tmp_path / "m.gguf", quant="f32")
    g = rec["gates"]["f32"]
    # gemma3: llama.cpp's fp16-table GELU limits F32 parity (see registry.Gemma3); the rest is exact.
    assert g["max_abs_logit_diff"] <= (1e-2 if fixture == "tiny_gemma3" else 1e-4)
    # ~2000 positions of a random model: gemma3's GELU rounding may flip one near-tie
    assert g["mean_kld"] < 1e-6 and g["same_top_token"] >= (0.998 if fixture == "tiny_gemma3" else 1.0)
    assert rec["passed"]
    assert rec["effective_bpw"] == pytest.approx(32.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.Modelfile", "m.gguf", "m.md", "m.parity.json"]
    assert json.loads((tmp_path / "m.parity.json").read_text())["gates"]["f32"]["passed"]
    reader = gguf.GGUFReader(str(tmp_path / "m.gguf"))
    arch = reader.fields["general.architecture"].contents()
    rope = json.loads((model / "config.json").read_text())["rope_theta"]
    assert reader.fields[f"{arch}.rope.freq_base"].contents() == rope  # the torch model's rope base


def test_modelfile_carries_chatml_template(tiny_llama: Path, tmp_path: Path) -> None:
    export_gguf(tiny_llama, tmp_path / "m.gguf", quant="f16")
    text = (tmp_path / "m.Modelfile").read_text()
    assert (
        "\nFROM ./m.gguf\n" in text and "<|im_start|>" in text and 'PARAMETER stop "<|im_end|>"' in text
    )
    assert "| f16 |" in (tmp_path / "m.md").read_text()


def test_sidecars_per_artifact_and_user_files_kept(tiny_llama: Path, tmp_path: Path) -> None:
    """Two exports into one folder keep both artifacts' sidecars; the user's own files are never written."""
    mine = {"README.md": "# my model\n", "Modelfile": "FROM ./mine.gguf\n"}
    for name, text in mine.items():
        (tmp_path / name).write_text(text)
    export_gguf(tiny_llama, tmp_path / "s.f16.gguf", quant="f16")
    export_gguf(tiny_llama, tmp_path / "s.f32.gguf", quant="f32")
    for base, quant in (("s.f16", "f16"), ("s.f32", "f32")):
        assert json.loads((tmp_path / f"{base}.parity.json").read_text())["quant"] == quant
        assert f"FROM ./{base}.gguf" in (tmp_path / f"{base}.Modelfile").read_text()
        assert f"# {base}.gguf" in (tmp_path / f"{base}.md").read_text()
    assert all((tmp_path / n).read_text() == t for n, t in mine.items())
    export_gguf(tiny_llama, tmp_path / "s.f16.gguf", quant="f16")  # its own sidecars are replaced
    (tmp_path / "u.md").write_text("notes the user keeps\n")
    with pytest.raises(ExportError, match="u.md: exists and was not written by distill2edge"):
        export_gguf(tiny_llama, tmp_path / "u.gguf", quant="f32")
    assert (tmp_path / "u.md").read_text() == "notes the user keeps\n" and not (tmp_path / "u.gguf").exists()


def test_bf16_and_q8_0(tiny_llama: Path, tmp_path: Path) -> None:
    bf16 = export_gguf(tiny_llama, tmp_path / "a" / "m.gguf", quant="bf16")
    assert bf16["tensor_types"].get("BF16") and bf16["gates"]["bf16"]["mean_kld"] < 1e-3
    q8 = export_gguf(tiny_llama, tmp_path / "b" / "m.gguf", quant="q8_0")
    assert q8["tensor_types"].get("Q8_0") and 8.0 < q8["effective_bpw"] < 10.0


def test_k_quants_apply_at_hidden_256(tiny_llama_256: Path, tmp_path: Path) -> None:
    prof = tmp_path / "loose.yaml"
    prof.write_text(LOOSE.format(q="q4_k_m"))
    rec = export_gguf(tiny_llama_256, tmp_path / "m.gguf", quant="q4_k_m", profile=str(prof))
    assert not rec["fallback"] and rec["tensor_types"].get("Q4_K")
    assert rec["effective_bpw"] < 6.0


def test_small_rows_fall_back_with_warning(tiny_llama: Path, tmp_path: Path) -> None:
    prof = tmp_path / "loose.yaml"
    prof.write_text(LOOSE.format(q="q4_k_m"))
    with pytest.warns(UserWarning, match="K-quants need rows divisible by 256"):
        rec = export_gguf(tiny_llama, tmp_path / "m.gguf", quant="q4_k_m", profile=str(prof))
    assert rec["fallback"] and "Q4_K" not in rec["fallback"]


def test_forced_parity_failure_leaves_nothing(tiny_llama: Path, tmp_path: Path) -> None:
    prof = tmp_path / "strict.yaml"
    prof.write_text("format: gguf\ngguf:\n  gates:\n    f32: {max_rel_logit: 1.0e-12}\n")
    out = tmp_path / "out"
    with pytest.raises(ParityError, match="max |Δlogit|"):
        export_gguf(tiny_llama, out / "m.gguf", quant="f32", profile=str(prof))
    assert list(out.iterdir()) == []
    assert (
        _cli(
            ["gguf", str(tiny_llama), "--out", str(out / "m.gguf"), "--quant", "f32", "--profile", str(prof)]
        )
        == 1
    )
    assert list(out.iterdir()) == []


def test_unsupported_architecture_lists_supported(
    tiny_llama: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "neox"
    shutil.copytree(tiny_llama, model)
    cfg = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**cfg, "architectures": ["GPTNeoXForCausalLM"]}))
    with pytest.raises(ExportError, match="LlamaForCausalLM.*MistralForCausalLM"):
        export_gguf(model, tmp_path / "m.gguf")
    assert _cli(["gguf", str(model), "--out", str(tmp_path / "m.gguf")]) == 2
    assert "error: unsupported architecture" in capsys.readouterr().err
    assert "LlamaForCausalLM" in supported_architectures()


def test_corrupt_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    assert _cli(["gguf", str(bad), "--out", str(tmp_path / "m.gguf")]) == 2
    assert "config.json: not valid JSON" in capsys.readouterr().err
    assert _cli(["gguf", str(tmp_path / "missing"), "--out", str(tmp_path / "m.gguf")]) == 2
    assert not (tmp_path / "m.gguf").exists()


def test_cli_success(tiny_mistral: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["gguf", str(tiny_mistral), "--out", str(tmp_path / "m.gguf"), "--quant", "f32"]) == 0
    assert "bits per weight" in capsys.readouterr().out


def test_permute_rope_interleaves_halves() -> None:
    import numpy as np

    w = np.arange(8).reshape(8, 1)  # one head of dim 8: rows [a0 a1 a2 a3 | b0 b1 b2 b3]
    assert permute_rope(w, 1)[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


def test_rope_base_follows_transformers(tiny_llama: Path, tmp_path: Path) -> None:
    """transformers 4.57 ignores `rope_parameters`: the GGUF must use the base torch really runs with."""
    model = tmp_path / "ropeparams"
    shutil.copytree(tiny_llama, model)
    cfg = json.loads((model / "config.json").read_text())
    cfg.pop("rope_theta")
    cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 100000.0}
    (model / "config.json").write_text(json.dumps(cfg))
    with pytest.warns(UserWarning, match="rope_parameters"):
        rec = export_gguf(model, tmp_path / "m.gguf", quant="f32")
    assert rec["gates"]["f32"]["max_abs_logit_diff"] <= 1e-4
    assert gguf.GGUFReader(str(tmp_path / "m.gguf")).fields["llama.rope.freq_base"].contents() == 10000.0


def test_help_explains(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _cli(["gguf", "--help"])
    assert exc.value.code == 0 and "llama.cpp" in capsys.readouterr().out


def test_kquant_width_helpers() -> None:
    from types import SimpleNamespace

    from distill2edge.export.gguf.quantize import kquant_friendly_width, kquant_misfits

    assert kquant_friendly_width(576) == 512 and kquant_friendly_width(1536) == 1536
    assert kquant_misfits(SimpleNamespace(hidden_size=576, intermediate_size=1536)) == {"hidden_size": 576}


def test_record_says_what_was_used(tiny_llama: Path, tmp_path: Path) -> None:
    """parity.json: the quant and threads used (not the profile's q8_0 / 4), the runtime named as the binding
    plus the llama.cpp library, the artifact's sha256, greedy text compared; general.* as upstream writes."""
    import hashlib

    model = tmp_path / "run" / "stages" / "distill.kd" / "model"
    shutil.copytree(tiny_llama, model)
    (model / "student_init.json").write_text(json.dumps({"teacher": "embedded:smollm2-135m-instruct"}))
    out = tmp_path / "out" / "s.f16.gguf"
    rec = export_gguf(model, out, quant="f16", profile="cpu-laptop", threads=1)
    saved = json.loads((tmp_path / "out" / "s.f16.parity.json").read_text())
    assert saved["profile"]["gguf"]["quant"] == "f16" and saved["profile"]["gguf"]["threads"] == 1
    assert saved["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest() == rec["sha256"]
    for g in saved["gates"].values():
        assert g["runtime"].startswith("llama-cpp-python ") and "(llama.cpp " in g["runtime"]
        assert isinstance(g["greedy_identical"], bool)
    assert saved["gates"]["f32"]["greedy_identical"] is True
    fields = gguf.GGUFReader(str(out)).fields
    general = {k.removeprefix("general."): fields[k].contents() for k in fields if k.startswith("general.")}
    assert general["name"] == "SmolLM2 distill.kd" and general["type"] == "model"  # not the folder name
    assert general["basename"] == "SmolLM2" and general["finetune"] == "distill.kd"
    assert general["size_label"].endswith("K") and general["license"] == "apache-2.0"


@pytest.mark.parametrize("quant", ["q4_0", "q4_1", "iq4_nl"])
def test_4bit_types_with_4bit_embedding(tiny_llama: Path, tmp_path: Path, quant: str) -> None:
    """32-value-block 4-bit types fit width 64 (and 576): no fallback; the profile's embedding type is
    applied to the tied embedding; bits per weight reported for the file and the tensors."""
    prof = tmp_path / "p.yaml"
    prof.write_text(LOOSE.format(q=quant) + f"  embedding_type: {quant}\n")
    rec = export_gguf(tiny_llama, tmp_path / "m.gguf", quant=quant, profile=str(prof))
    assert not rec["fallback"] and rec["embedding_type"] == quant.upper()
    assert set(rec["tensor_types"]) == {quant.upper(), "F32"}
    assert rec["file_bpw"] > rec["effective_bpw"] and rec["profile"]["gguf"]["embedding_type"] == quant
    auto = export_gguf(tiny_llama, tmp_path / "a.gguf", quant=quant, profile=str(prof), embedding_type="auto")
    assert auto["embedding_type"] == "Q8_0" and auto["effective_bpw"] > rec["effective_bpw"]


def test_quant_table_rows(tiny_llama: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from distill2edge.export.gguf.table import quant_table

    rows = quant_table(tiny_llama, [("q8_0", "auto"), ("q4_0", "q4_0")], threads=1)
    assert [(r["quant"], r["embedding_type"]) for r in rows] == [("q8_0", "Q8_0"), ("q4_0", "Q4_0")]
    assert rows[1]["file_bpw"] < rows[0]["file_bpw"] and rows[0]["n_positions"] > 500
    assert all(r["mean_kld"] >= 0 and r["gate"].startswith("size class tiny") for r in rows)
    assert _cli(["gguf-table", str(tiny_llama), "--rows", "q4_1:q4_1", "--threads", "1"]) == 0
    assert "| q4_1 | Q4_1 (q4_1) |" in capsys.readouterr().out
