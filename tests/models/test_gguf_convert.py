"""GGUF metadata -> tokenizer and config, on small GGUF files written here (metadata only, no tensors)."""

from pathlib import Path

import pytest
from gguf import GGUFReader, GGUFWriter, TokenType
from tokenizers import pre_tokenizers

from distill2edge.models.gguf_convert import fix_config
from distill2edge.models.gguf_tokenizer import tokenizer_from_gguf
from tests.factory import tiny_config

CONTROL, NORMAL, BYTE, USER, UNKNOWN = (TokenType.CONTROL, TokenType.NORMAL, TokenType.BYTE,
                                        TokenType.USER_DEFINED, TokenType.UNKNOWN)


def write_gguf(path: Path, arch: str, tokenizer: dict, **arch_fields) -> GGUFReader:
    w = GGUFWriter(str(path), arch)
    w.add_block_count(arch_fields.get("block_count", 2))
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_rope_freq_base(arch_fields.get("rope_freq_base", 100000.0))
    w.add_layer_norm_rms_eps(1e-5)
    if "key_length" in arch_fields:
        w.add_key_length(arch_fields["key_length"])
        w.add_sliding_window(arch_fields["sliding_window"])
    w.add_tokenizer_model(tokenizer["model"])
    if "pre" in tokenizer:
        w.add_tokenizer_pre(tokenizer["pre"])
    w.add_token_list(tokenizer["tokens"])
    w.add_token_types(tokenizer["types"])
    if "merges" in tokenizer:
        w.add_token_merges(tokenizer["merges"])
    if "scores" in tokenizer:
        w.add_token_scores(tokenizer["scores"])
    w.add_bos_token_id(tokenizer["bos"])
    w.add_eos_token_id(tokenizer["eos"])
    w.add_add_bos_token(tokenizer["add_bos"])
    if "unk" in tokenizer:
        w.add_unk_token_id(tokenizer["unk"])
    if "add_space_prefix" in tokenizer:
        w.add_add_space_prefix(tokenizer["add_space_prefix"])
    if "chat_template" in tokenizer:
        w.add_chat_template(tokenizer["chat_template"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return GGUFReader(str(path))


def byte_level(pre: str) -> dict:
    """SmolLM2-like: three control tokens, the 256 byte-level symbols, merges for "12" and " t"."""
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + pre_tokenizers.ByteLevel.alphabet()
    merges = ["1 2", "Ġ t"]
    tokens += [m.replace(" ", "") for m in merges]
    types = [CONTROL] * 3 + [NORMAL] * (len(tokens) - 3)
    return {"model": "gpt2", "pre": pre, "tokens": tokens, "types": types, "merges": merges,
            "bos": 1, "eos": 2, "add_bos": False,
            "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"}


def sentencepiece(score_ab: float, score_bc: float) -> dict:
    """Gemma-like: <unk>, <s>, </s>, 256 byte tokens, a few pieces scored as merge priorities, "\\n\\n"."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256
    pieces = {"▁": -1.0, "a": -2.0, "b": -3.0, "c": -4.0, "ab": score_ab, "bc": score_bc, "▁a": -5.0}
    tokens += list(pieces) + ["\n\n"]
    types += [NORMAL] * len(pieces) + [USER]
    scores = [0.0] * 259 + list(pieces.values()) + [0.0]
    return {"model": "llama", "tokens": tokens, "types": types, "scores": scores, "bos": 1, "eos": 2,
            "unk": 0, "add_bos": True, "add_space_prefix": False}


def test_byte_level_tokenizer_follows_the_gguf_special_tokens(tmp_path):
    tok = tokenizer_from_gguf(write_gguf(tmp_path / "t.gguf", "llama", byte_level("smollm")))
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    assert len(tok) == 3 + 256 + 2 and tok.chat_template.startswith("{% for m")
    ids = tok(" t12")["input_ids"]  # add_bos_token = false: no BOS
    assert tok.convert_ids_to_tokens(ids) == ["Ġt", "1", "2"]  # smollm splits digits
    assert tok.decode(ids) == " t12" and tok.decode(tok("héllo 😀")["input_ids"]) == "héllo 😀"
    assert tok("<|im_end|>")["input_ids"] == [2]


def test_gpt2_pre_tokenizer_keeps_digit_pairs(tmp_path):
    tok = tokenizer_from_gguf(write_gguf(tmp_path / "t.gguf", "llama", byte_level("gpt-2")))
    assert tok.convert_ids_to_tokens(tok("12")["input_ids"]) == ["12"]


def test_unknown_pre_tokenizer_names_the_field(tmp_path):
    reader = write_gguf(tmp_path / "t.gguf", "llama", byte_level("deepseek-coder"))
    with pytest.raises(ValueError, match="tokenizer.ggml.pre = 'deepseek-coder'"):
        tokenizer_from_gguf(reader)


@pytest.mark.parametrize(
    "score_ab,score_bc,pieces", [(-10.0, -20.0, ["ab", "c"]), (-20.0, -10.0, ["a", "bc"])]
)
def test_sentencepiece_merges_follow_scores(tmp_path, score_ab, score_bc, pieces):
    tok = tokenizer_from_gguf(write_gguf(tmp_path / "t.gguf", "gemma3", sentencepiece(score_ab, score_bc),
                                         key_length=4, sliding_window=8))
    ids = tok("abc")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["<s>"] + pieces
    assert tok.convert_ids_to_tokens(tok("a\n\né", add_special_tokens=False)["input_ids"]) == [
        "a", "\n\n", "<0xC3>", "<0xA9>"]
    assert tok.decode(tok(" a\n\né bc", add_special_tokens=False)["input_ids"]) == " a\n\né bc"
    assert tok.pad_token == "</s>" and tok.unk_token == "<unk>"


def test_llama_config_is_fixed_from_metadata(tmp_path):
    reader = write_gguf(tmp_path / "t.gguf", "llama", byte_level("smollm"))
    # The shape `write_gguf` writes, every field but rope_theta agreeing with it.
    cfg = tiny_config("llama", vocab_size=261, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                      rms_norm_eps=1e-5, tie_word_embeddings=True, rope_theta=10000.0)
    fixes = fix_config(cfg, reader)
    assert fixes == [
        {"field": "rope_theta", "was": 10000.0, "now": 100000.0, "source": "llama.rope.freq_base"}
    ]
    assert cfg.rope_theta == 100000.0
    assert fix_config(cfg, reader) == []


def test_gemma3_config_gets_llama_cpp_layer_pattern_and_local_rope(tmp_path):
    reader = write_gguf(tmp_path / "t.gguf", "gemma3", sentencepiece(-1.0, -2.0), block_count=7,
                        rope_freq_base=1e6, key_length=4, sliding_window=8)
    cfg = tiny_config("gemma3", vocab_size=267, hidden_size=8, intermediate_size=16, num_hidden_layers=7,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=4, query_pre_attn_scalar=4,
                      max_position_embeddings=64, rms_norm_eps=1e-5, sliding_window=8,
                      layer_types=["full_attention"] * 7, rope_local_base_freq=1e6)
    fixed = {f["field"]: f for f in fix_config(cfg, reader)}
    assert set(fixed) == {"layer_types", "rope_local_base_freq"}
    assert cfg.layer_types == ["sliding_attention"] * 5 + ["full_attention", "sliding_attention"]
    assert cfg.rope_local_base_freq == 10000.0 and "llama.cpp" in fixed["layer_types"]["source"]


def test_unsupported_architecture_names_the_field(tmp_path):
    reader = write_gguf(tmp_path / "t.gguf", "phi3", byte_level("smollm"))
    with pytest.raises(ValueError, match="general.architecture = 'phi3'"):
        fix_config(tiny_config("llama"), reader)
