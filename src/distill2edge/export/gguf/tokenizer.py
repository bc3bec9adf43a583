"""Tokenizer metadata for GGUF: byte-level BPE ("gpt2" + pre-tokenizer name) and SentencePiece ("llama").

llama.cpp re-implements each tokenizer; it only tokenizes like HF when the GGUF names the right model
and pre-tokenizer. The pre-tokenizer name is read off the structure of `tokenizer.json` (not guessed
from the architecture), so a byte-level BPE with per-digit splitting becomes "smollm" and a plain
GPT-2 byte-level one "gpt-2". tests/export/test_tokenizer_parity.py checks the result on 200+ strings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf

from distill2edge.export.common import ExportError

#: The GPT-2 / ByteLevel split regex (HF ByteLevel with use_regex=True uses it implicitly).
_GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3_REGEX_START = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
_QWEN2_REGEX_START = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"


def _flatten(node: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not node:
        return []
    if node.get("type") == "Sequence":
        key = "pretokenizers" if "pretokenizers" in node else "normalizers"
        return [leaf for child in node.get(key, []) for leaf in _flatten(child)]
    return [node]


def byte_level_pre_name(tj: dict[str, Any]) -> str:
    """llama.cpp's pre-tokenizer name for a byte-level BPE `tokenizer.json` (raises when unknown)."""
    steps = _flatten(tj.get("pre_tokenizer"))
    kinds = [s["type"] for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if (
        kinds == ["Digits", "ByteLevel"]
        and steps[0].get("individual_digits")
        and steps[1].get("use_regex", True)
    ):
        return "smollm"
    if kinds and kinds[0] == "Split":
        regex = steps[0].get("pattern", {}).get("Regex", "")
        if regex.startswith(_LLAMA3_REGEX_START):
            return "llama-bpe"
        if regex.startswith(_QWEN2_REGEX_START):
            return "qwen2"
    raise ExportError(f"tokenizer.json: byte-level pre-tokenizer {kinds} has no known llama.cpp equivalent")


def _special_ids(tok: Any) -> dict[str, int | None]:
    return {
        "bos": tok.bos_token_id,
        "eos": tok.eos_token_id,
        "unk": tok.unk_token_id,
        "pad": tok.pad_token_id,
    }


def _token_types(tj: dict[str, Any], n: int) -> list[int]:
    types = [int(gguf.TokenType.NORMAL)] * n
    for added in tj.get("added_tokens", []):
        if added["id"] < n:
            types[added["id"]] = int(
                gguf.TokenType.CONTROL if added["special"] else gguf.TokenType.USER_DEFINED
            )
    return types


def _vocab_list(tj: dict[str, Any], n: int) -> list[str]:
    """Token strings by id, `n` long: rows beyond the tokenizer (padded embeddings) get `[PAD{i}]`."""
    tokens: list[str | None] = [None] * n
    for text, idx in tj["model"]["vocab"].items():
        if idx < n:
            tokens[idx] = text
    for added in tj.get("added_tokens", []):
        if added["id"] < n:
            tokens[added["id"]] = added["content"]
    return [t if t is not None else f"[PAD{i}]" for i, t in enumerate(tokens)]


def write_tokenizer(w: gguf.GGUFWriter, model_dir: Path, tok: Any, vocab_size: int) -> str:
    """Add `tokenizer.ggml.*` keys; returns the tokenizer kind ("gpt2" or "llama")."""
    tj_path = model_dir / "tokenizer.json"
    if not tj_path.is_file():
        raise ExportError(f"{tj_path}: missing (the GGUF exporter needs a fast tokenizer's tokenizer.json)")
    tj = json.loads(tj_path.read_text())
    model = tj.get("model", {})
    if len(tok) > vocab_size:
        raise ExportError(f"{tj_path}: {len(tok)} tokens but the model has only {vocab_size} embedding rows")
    is_byte_level = any(s["type"] == "ByteLevel" for s in _flatten(tj.get("pre_tokenizer")))
    if model.get("type") == "BPE" and is_byte_level:
        kind = _write_byte_level(w, tj, vocab_size)
    elif model.get("type") == "BPE":
        kind = _write_sentencepiece(w, model_dir, tj, vocab_size)
    else:
        raise ExportError(f"{tj_path}: tokenizer model {model.get('type')!r} is not supported (BPE only)")

    ids = _special_ids(tok)
    for key, adder in (
        ("bos", w.add_bos_token_id),
        ("eos", w.add_eos_token_id),
        ("unk", w.add_unk_token_id),
        ("pad", w.add_pad_token_id),
    ):
        if (value := ids[key]) is not None:
            adder(int(value))
    probe = tok("a")["input_ids"]
    w.add_add_bos_token(bool(ids["bos"] is not None and probe and probe[0] == ids["bos"]))
    w.add_add_eos_token(bool(ids["eos"] is not None and probe and probe[-1] == ids["eos"]))
    if getattr(tok, "chat_template", None):
        w.add_chat_template(tok.chat_template)
    return kind


def _write_byte_level(w: gguf.GGUFWriter, tj: dict[str, Any], n: int) -> str:
    merges = tj["model"].get("merges", [])
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]  # newer files store pairs
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(byte_level_pre_name(tj))
    w.add_token_list(_vocab_list(tj, n))
    w.add_token_types(_token_types(tj, n))
    w.add_token_merges(merges)
    return "gpt2"


def _prepends_space(tj: dict[str, Any]) -> bool:
    for step in _flatten(tj.get("normalizer")) + _flatten(tj.get("pre_tokenizer")):
        if step["type"] == "Prepend" and step.get("prepend") == "▁":
            return True
        if step["type"] == "Metaspace" and step.get("prepend_scheme", "always") != "never":
            return True
    return False


def _write_sentencepiece(w: gguf.GGUFWriter, model_dir: Path, tj: dict[str, Any], n: int) -> str:
    """SentencePiece-style vocab: scores from tokenizer.model when present, else from the merge ranks."""
    tokens = _vocab_list(tj, n)
    types = _token_types(tj, n)
    scores = [0.0] * n
    spm_file = model_dir / "tokenizer.model"
    if spm_file.is_file():
        import sentencepiece as spm

        try:
            sp = spm.SentencePieceProcessor(model_file=str(spm_file))
        except RuntimeError as exc:
            raise ExportError(f"{spm_file}: not a SentencePiece model ({exc})") from exc
        for i in range(min(n, sp.get_piece_size())):
            scores[i] = float(sp.get_score(i))
    else:
        # SentencePiece BPE merges the highest-scoring pair; a merge of rank r gets score -r.
        rank = {
            "".join(m if isinstance(m, list) else m.split(" ")): r
            for r, m in enumerate(tj["model"].get("merges", []))
        }
        scores = [-float(rank.get(t, 0)) for t in tokens]
    unk = tj["model"].get("unk_token")
    for i, text in enumerate(tokens):
        if text == unk:
            types[i] = int(gguf.TokenType.UNKNOWN)
        elif len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
            types[i] = int(gguf.TokenType.BYTE)
        elif text.startswith("[PAD"):
            types[i] = int(gguf.TokenType.UNUSED)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_add_space_prefix(_prepends_space(tj))
    return "llama"
