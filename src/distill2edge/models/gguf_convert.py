"""Turn a (quantized) GGUF file into a plain, trainable Hugging Face model, checked against the GGUF metadata.

transformers can load a GGUF (`from_pretrained(dir, gguf_file=...)`, dequantizing every tensor to
float32), but the model it returns carries a `quantization_config` and refuses `save_pretrained` and
training. So: load it, rebuild the same architecture from its config with that key removed, copy the
state dict over, and save it with a tokenizer built by `gguf_tokenizer` (the one transformers builds
from a GGUF tokenizes differently from llama.cpp, see there).

The config transformers derives from the GGUF is checked field by field against the GGUF metadata
and against the values llama.cpp hard-codes for the architecture (for Gemma-3: the local RoPE base,
one global-attention layer in six, query scaling); every disagreement is fixed in the saved
config.json and listed in `conversion.json` under `config_fixes`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from gguf import GGUFReader
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from distill2edge.models.gguf_tokenizer import gguf_field, tokenizer_from_gguf

Expected = dict[str, tuple[Any, str]]
"""config field -> (value it must have, where that value comes from)."""


def _common_fields(reader: GGUFReader, arch: str) -> Expected:
    """Fields every decoder-only architecture stores under `<arch>.*`."""
    def f(key: str, *default: Any) -> Any:  # no default: the field is required
        return gguf_field(reader, f"{arch}.{key}", *default)

    n_vocab = len(gguf_field(reader, "tokenizer.ggml.tokens"))
    has_output = any(t.name == "output.weight" for t in reader.tensors)
    fields: Expected = {
        "num_hidden_layers": (f("block_count"), f"{arch}.block_count"),
        "hidden_size": (f("embedding_length"), f"{arch}.embedding_length"),
        "intermediate_size": (f("feed_forward_length"), f"{arch}.feed_forward_length"),
        "num_attention_heads": (f("attention.head_count"), f"{arch}.attention.head_count"),
        "num_key_value_heads": (
            f("attention.head_count_kv", f("attention.head_count")), f"{arch}.attention.head_count_kv"
        ),
        "rms_norm_eps": (f("attention.layer_norm_rms_epsilon"), f"{arch}.attention.layer_norm_rms_epsilon"),
        "rope_theta": (f("rope.freq_base", 10000.0), f"{arch}.rope.freq_base"),
        "max_position_embeddings": (f("context_length"), f"{arch}.context_length"),
        "vocab_size": (n_vocab, "tokenizer.ggml.tokens"),
        "tie_word_embeddings": (not has_output, "no output.weight tensor"),
    }
    if gguf_field(reader, f"{arch}.rope.scaling.type", "none") not in ("none", None):
        raise ValueError(f"GGUF field {arch}.rope.scaling.type is set: RoPE scaling is not supported yet")
    return fields


def _llama_fields(reader: GGUFReader) -> Expected:
    return _common_fields(reader, "llama")


def _gemma3_fields(reader: GGUFReader) -> Expected:
    fields = _common_fields(reader, "gemma3")
    n_layers = fields["num_hidden_layers"][0]
    key_length = gguf_field(reader, "gemma3.attention.key_length")
    fields.update({
        "head_dim": (key_length, "gemma3.attention.key_length"),
        "sliding_window": (
            gguf_field(reader, "gemma3.attention.sliding_window"), "gemma3.attention.sliding_window"
        ),
        # llama.cpp (llama-model.cpp, LLM_ARCH_GEMMA3) hard-codes these three:
        "rope_local_base_freq": (10000.0, "llama.cpp: rope_freq_base_train_swa = 10000"),
        "layer_types": (
            ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(n_layers)],
            "llama.cpp: set_swa_pattern(6)",
        ),
        "query_pre_attn_scalar": (key_length, "llama.cpp: attention scale 1/sqrt(key_length)"),
        "final_logit_softcapping": (
            gguf_field(reader, "gemma3.final_logit_softcapping", None), "gemma3.final_logit_softcapping"
        ),
        "attn_logit_softcapping": (
            gguf_field(reader, "gemma3.attn_logit_softcapping", None), "gemma3.attn_logit_softcapping"
        ),
    })
    return fields


# GGUF `general.architecture` -> the config fields to check. Add an entry (and a parity run) per architecture.
CONFIG_CHECKS: dict[str, Callable[[GGUFReader], Expected]] = {
    "llama": _llama_fields,
    "gemma3": _gemma3_fields,
}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-6)
    return a == b


def fix_config(config: PretrainedConfig, reader: GGUFReader) -> list[dict[str, Any]]:
    """Make `config` agree with the GGUF metadata (in place); returns the changes made.

    Each change is {"field", "was", "now", "source"}: e.g. transformers 4.57 reads `rope_theta`, so a
    GGUF-derived config with another RoPE base would silently degrade every position but the first.
    """
    arch = gguf_field(reader, "general.architecture")
    if arch not in CONFIG_CHECKS:
        raise ValueError(
            f"GGUF field general.architecture = {arch!r} is not supported; supported: {sorted(CONFIG_CHECKS)}"
        )
    fixes = []
    for field, (value, source) in CONFIG_CHECKS[arch](reader).items():
        was = getattr(config, field, None)
        if not _same(was, value):
            setattr(config, field, value)
            fixes.append({"field": field, "was": was, "now": value, "source": source})
    return fixes


def rebuild_trainable(gguf_model: PreTrainedModel, config: PretrainedConfig) -> PreTrainedModel:
    """A plain float32 model of the same class with the GGUF model's weights (no quantization_config).

    `config` is the (fixed) config; `load_state_dict(strict=True)` proves every tensor found its place.
    """
    cfg = copy.deepcopy(config)
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    cfg.architectures = [type(gguf_model).__name__]
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.tie_weights()
    return model.eval()


def load_gguf(gguf_path: Path) -> tuple[PreTrainedModel, GGUFReader]:
    """transformers' dequantizing loader (float32) and a metadata reader for the same file."""
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32, local_files_only=True
    )
    return model, GGUFReader(str(gguf_path))


def sync_special_ids(model: PreTrainedModel, tok: PreTrainedTokenizerBase) -> None:
    """Config and generation config carry the tokenizer's bos/eos/pad ids (generation stops on eos)."""
    for cfg in (model.config, model.generation_config):
        if cfg is None:
            continue
        cfg.bos_token_id = tok.bos_token_id
        cfg.eos_token_id = tok.eos_token_id
        cfg.pad_token_id = tok.pad_token_id


def describe_tokenizer(tok: PreTrainedTokenizerBase) -> dict[str, Any]:
    return {
        "class": type(tok).__name__, "size": len(tok), "bos": tok.bos_token, "eos": tok.eos_token,
        "pad": tok.pad_token, "unk": tok.unk_token,
        "adds_bos": tok("a")["input_ids"][:1] == [tok.bos_token_id],
        "chat_template": tok.chat_template is not None,
    }


def build_hf_model(
    gguf_path: Path,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, GGUFReader, list[dict[str, Any]]]:
    """GGUF -> (trainable float32 model, tokenizer, metadata reader, config fixes). Nothing written."""
    gguf_model, reader = load_gguf(gguf_path)
    config = copy.deepcopy(gguf_model.config)
    fixes = fix_config(config, reader)
    model = rebuild_trainable(gguf_model, config)
    del gguf_model
    tok = tokenizer_from_gguf(reader)
    sync_special_ids(model, tok)
    return model, tok, reader, fixes
