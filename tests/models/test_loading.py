import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from distill2edge.models import ModelLoadError, load_model, resolve_model


def test_local_folder_loads_ready_for_training(tiny_llama_dir):
    assert resolve_model(str(tiny_llama_dir)) == tiny_llama_dir
    model, tok = load_model(str(tiny_llama_dir))
    assert model.config.num_hidden_layers == 4 and next(model.parameters()).dtype == torch.float32
    assert tok.pad_token == "<pad>" and tok.padding_side == "right"
    model16, _ = load_model(str(tiny_llama_dir), dtype=torch.bfloat16)
    assert next(model16.parameters()).dtype == torch.bfloat16


def test_missing_pad_token_becomes_eos(tiny_llama_dir, tmp_path):
    folder = tmp_path / "no-pad"
    shutil.copytree(tiny_llama_dir, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.pad_token = None
    tok.save_pretrained(folder)
    assert AutoTokenizer.from_pretrained(folder).pad_token is None
    model, tok = load_model(str(folder))
    assert tok.pad_token == tok.eos_token == "</s>" and model.config.pad_token_id is not None


def test_home_relative_folder(tiny_llama_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(tiny_llama_dir, tmp_path / "m")
    assert resolve_model("~/m") == tmp_path / "m"


@pytest.mark.parametrize(
    "ref", ["./no-such-model", "/definitely/not/here", "~/no-such-model", "runs/x/student"]
)
def test_path_that_does_not_exist_is_file_not_found(ref):
    with pytest.raises(FileNotFoundError, match="does not exist") as err:
        resolve_model(ref)
    assert Path(ref).name in str(err.value)


def test_folder_without_config_json_is_named(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="config.json is missing") as err:
        resolve_model(str(tmp_path))
    assert str(tmp_path) in str(err.value)


def test_hub_id_is_passed_through():
    assert resolve_model("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"


def test_hub_id_offline_is_a_model_load_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty hub cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(ModelLoadError) as err:
        load_model("someone/no-such-model")
    message = str(err.value)
    assert "'someone/no-such-model'" in message and "hub" in message and "offline" in message
    assert "local model folder" in message and "embedded:smollm2-135m-instruct" in message


def test_unreachable_hub_fails_within_seconds(tmp_path, monkeypatch):
    """Issue 17: without HF_HUB_OFFLINE, a hub that cannot be reached used to cost 85 s of retries."""
    import time

    import huggingface_hub.constants

    from distill2edge.models import loading

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(loading, "_probed", {})
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="cannot be reached") as err:
        load_model("someone/no-such-model")
    assert time.monotonic() - start < 10 and "'someone/no-such-model'" in str(err.value)
