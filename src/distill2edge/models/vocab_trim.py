"""Vocabulary trimming: a student whose embedding and output layer cover only the tokens a domain uses.

A small decoder spends much of each decoded token in its output layer: SmolLM2's tied 49,152 x 576
table (28.3M parameters) is read whole at every token, as much as eight of its decoder layers. Vocabulary
trimming (Ushio et al., 2023, "An Efficient Multilingual Language Model Compression through Vocabulary
Trimming") keeps the rows of the tokens the target text uses and drops the rest, in the model and in the
tokenizer together, so every runtime (transformers, llama.cpp, onnxruntime) runs the smaller model as is.

What is kept, for a BPE tokenizer:
- every token no merge produces (the byte or character alphabet) and every added/special token, so any
  text still tokenizes;
- the first `keep_first` ids: byte-level BPE vocabularies are numbered in merge order, so these are the
  tokens the tokenizer's own training corpus used most (general language);
- every token the given texts (the recipe's training prompts and answers) tokenize to;
- the merge parents of all of these, recursively, so BPE can still reach each kept token.

With parents kept, a text whose tokens are all kept tokenizes to exactly the same tokens after the trim
(a merge whose result was dropped can never be applied on the way to a kept token), and the trimmed
model's logits over the kept tokens equal the untrimmed model's: greedy decoding changes only where the
untrimmed model would have chosen a dropped token. Other text falls back to shorter kept pieces.
`trim_vocabulary` checks the first property on the sequences it was given and refuses to publish otherwise.

Old ids keep their order, so ids below `keep_first` (special tokens and the byte alphabet included)
keep their numbers and the chat template, EOS and pad ids stay as they were.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from distill2edge.atomic import write_dir_atomic

TRIM_RECORD = "vocab_trim.json"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
# Files of the full vocabulary that the trimmed folder must not carry: a slow tokenizer's vocabulary and a
# SentencePiece model would describe the untrimmed ids (the trimmed tokenizer is tokenizer.json alone).
_FULL_VOCAB_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "merges.txt", "vocab.txt")


@dataclass(frozen=True)
class TrimReport:
    """What `trim_vocabulary` kept, recorded in the trimmed folder's `vocab_trim.json`."""

    original_size: int  # tokenizer entries before
    kept: int  # tokenizer entries (and embedding rows) after
    keep_first: int
    used_tokens: int  # distinct tokens the encoded sequences use (special ids included)
    added_as_parents: int  # kept only because a kept token is merged from them
    sequences: int  # encoded training sequences the tokens were read from
    parameters_before: int
    parameters_after: int


def _merge_pairs(model: dict[str, Any]) -> list[tuple[str, str]]:
    """BPE merges as pairs (tokenizer.json stores "a b" strings or, in newer files, [a, b] lists)."""
    pairs: list[tuple[str, str]] = []
    for m in model.get("merges", []):
        a, b = (m.split(" ", 1) if isinstance(m, str) else m)
        pairs.append((a, b))
    return pairs


def kept_ids(tokenizer_json: dict[str, Any], used: Iterable[int], keep_first: int) -> tuple[list[int], int]:
    """Sorted ids to keep (the alphabet, added tokens, ids below `keep_first`, `used`, and every merge parent
    of those: see the module docstring), and how many of them are kept only as parents. Raises ValueError
    for a tokenizer model other than BPE."""
    model = tokenizer_json.get("model", {})
    if model.get("type") != "BPE":
        raise ValueError(f"vocabulary trimming supports BPE tokenizers only, not {model.get('type')!r}")
    if model.get("dropout"):
        raise ValueError("vocabulary trimming needs a deterministic BPE (the tokenizer has merge dropout)")
    vocab: dict[str, int] = model["vocab"]
    parents: dict[int, tuple[int, int]] = {}
    for a, b in _merge_pairs(model):
        if a in vocab and b in vocab and (a + b) in vocab:
            parents.setdefault(vocab[a + b], (vocab[a], vocab[b]))
    ids = set(vocab.values()) | {int(t["id"]) for t in tokenizer_json.get("added_tokens", [])}
    keep = {i for i in ids if i < keep_first or i not in parents}  # the prefix, the alphabet, added tokens
    keep |= {i for i in used if i in ids}
    before_parents = len(keep)
    todo = list(keep)
    while todo:
        for parent in parents.get(todo.pop(), ()):
            if parent not in keep:
                keep.add(parent)
                todo.append(parent)
    return sorted(keep), len(keep) - before_parents


def _remap_ids(node: Any, old_to_new: dict[int, int]) -> Any:
    """Post-processor templates name special tokens by id (`special_tokens: {X: {ids: [...]}}`)."""
    if isinstance(node, dict):
        return {k: ([old_to_new[i] for i in v] if k == "ids" and isinstance(v, list) else _remap_ids(v, old_to_new))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_remap_ids(v, old_to_new) for v in node]
    return node


def trimmed_tokenizer_json(tj: dict[str, Any], keep: Sequence[int]) -> dict[str, Any]:
    """`tokenizer.json` with only the `keep` ids (renumbered in order) and the merges that make them."""
    old_to_new = {old: new for new, old in enumerate(keep)}
    model = dict(tj["model"])
    vocab = {tok: old_to_new[i] for tok, i in model["vocab"].items() if i in old_to_new}
    merges = [m for m, (a, b) in zip(model.get("merges", []), _merge_pairs(model), strict=True) if (a + b) in vocab]
    model.update(vocab=vocab, merges=merges)
    added = [{**t, "id": old_to_new[int(t["id"])]} for t in tj.get("added_tokens", [])]
    return {**tj, "model": model, "added_tokens": added, "post_processor": _remap_ids(tj.get("post_processor"), old_to_new)}


def _trim_model(model: PreTrainedModel, keep: Sequence[int], old_to_new: dict[int, int]) -> None:
    """Keep the embedding (and an untied output layer's) rows `keep`, in place; remap the special ids.
    The modules stay (only their weights shrink), so a scaled embedding (Gemma) keeps its scale."""
    index = torch.tensor(keep, dtype=torch.long)
    emb: Any = model.get_input_embeddings()
    head: Any = model.get_output_embeddings()
    tied = head is not None and head.weight is emb.weight
    emb.weight = torch.nn.Parameter(emb.weight.data[index].clone())
    emb.num_embeddings = len(keep)
    if getattr(emb, "padding_idx", None) is not None:
        emb.padding_idx = old_to_new.get(int(emb.padding_idx))
    if head is not None:
        head.weight = emb.weight if tied else torch.nn.Parameter(head.weight.data[index].clone())
        if getattr(head, "bias", None) is not None:
            head.bias = torch.nn.Parameter(head.bias.data[index].clone())
        head.out_features = len(keep)
    text_config = model.config.get_text_config()
    text_config.vocab_size = len(keep)
    model.config.vocab_size = len(keep)
    for cfg in (model.config, getattr(model, "generation_config", None)):
        for key in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
            value = getattr(cfg, key, None) if cfg is not None else None
            if isinstance(value, int) and value in old_to_new:
                setattr(cfg, key, old_to_new[value])
            elif isinstance(value, list):
                setattr(cfg, key, [old_to_new[v] for v in value if v in old_to_new])


def _special_ids(model_dir: Path) -> set[int]:
    ids: set[int] = set()
    for name in ("config.json", "generation_config.json"):
        path = model_dir / name
        if path.is_file():
            cfg = json.loads(path.read_text(encoding="utf-8"))
            for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
                value = cfg.get(key)
                ids.update([value] if isinstance(value, int) else value if isinstance(value, list) else [])
    return ids


def trim_vocabulary(
    model_dir: Path, out_dir: Path, encode: Callable[[PreTrainedTokenizerBase], list[list[int]]], keep_first: int = 16384,
) -> TrimReport:
    """Write to `out_dir` the model of `model_dir` (a Hugging Face folder with a fast tokenizer's
    `tokenizer.json`) with its vocabulary trimmed to the tokens `encode(tokenizer)` yields (the token ids of
    the texts the student is meant for) plus the first `keep_first` ids (module docstring). Published
    atomically. `encode` runs again with the trimmed tokenizer: it must give the same tokens (renumbered),
    else ValueError (an invariant of the trim; a BPE feature this module does not model would break it)."""
    tj_path = model_dir / "tokenizer.json"
    if not tj_path.is_file():
        raise ValueError(f"{tj_path}: missing (vocabulary trimming needs a fast tokenizer's tokenizer.json)")
    tj = json.loads(tj_path.read_text(encoding="utf-8"))
    tok = AutoTokenizer.from_pretrained(model_dir)
    encoded = encode(tok)
    used = {i for ids in encoded for i in ids}
    keep, as_parents = kept_ids(tj, used | _special_ids(model_dir), keep_first)
    old_to_new = {old: new for new, old in enumerate(keep)}
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")
    params_before = sum(p.numel() for p in model.parameters())
    _trim_model(model, keep, old_to_new)
    report = TrimReport(
        original_size=len(tok), kept=len(keep), keep_first=keep_first, used_tokens=len(used),
        added_as_parents=as_parents, sequences=len(encoded), parameters_before=params_before,
        parameters_after=sum(p.numel() for p in model.parameters()),
    )

    def write(tmp: Path) -> None:
        for src in model_dir.iterdir():  # chat template, special-token map, records of earlier stages
            if src.is_file() and src.name not in _WEIGHT_FILES + _FULL_VOCAB_FILES:
                shutil.copy2(src, tmp / src.name)
        model.save_pretrained(tmp)
        (tmp / "tokenizer.json").write_text(json.dumps(trimmed_tokenizer_json(tj, keep), ensure_ascii=False),
                                            encoding="utf-8")
        _rewrite_tokenizer_config(tmp / "tokenizer_config.json", old_to_new)
        retokenized = encode(AutoTokenizer.from_pretrained(tmp))
        for n, (before, after) in enumerate(zip(encoded, retokenized, strict=True)):
            if after != [old_to_new[i] for i in before]:
                raise ValueError(f"vocabulary trim of {model_dir}: sequence {n} tokenizes differently after the trim")
        (tmp / TRIM_RECORD).write_text(json.dumps(asdict(report), indent=2), encoding="utf-8")

    write_dir_atomic(out_dir, write)
    return report


def _rewrite_tokenizer_config(path: Path, old_to_new: dict[int, int]) -> None:
    if not path.is_file():
        return
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if "added_tokens_decoder" in cfg:
        cfg["added_tokens_decoder"] = {str(old_to_new[int(k)]): v for k, v in cfg["added_tokens_decoder"].items()
                                       if int(k) in old_to_new}
    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False), encoding="utf-8")
