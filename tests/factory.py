"""The one factory of tiny models and tokenizers for the tests and the benchmark suite (no hub, deterministic).

A plain module (not a conftest) so that `tests/` and `bench/` import the same code: the repository root is
on `sys.path` through `pythonpath = ["."]` in pyproject.toml, so `from tests.factory import ...` works under
`pytest` (testpaths) and `pytest bench` alike. The fixtures over it live in tests/conftest.py and
tests/export/conftest.py; bench/conftest.py calls `build_tiny_model` directly.

Text:
- `telecom_sentences`, `other_sentences`: short sentences from fixed grammars (two unrelated domains).
- `mixed_corpus`: words, numbers, code, whitespace runs and non-Latin scripts, for the export tokenizers
  whose llama.cpp conversions must agree with transformers on every kind of string.

Tokenizers (trained on the fly, saved with `save_pretrained`):
- `train_bpe_tokenizer`: byte-level BPE (optionally per-digit, optionally BOS-prepending, optional chat template).
- `train_sentencepiece_tokenizer`: SentencePiece BPE with byte fallback (tokenizer.model + tokenizer.json).

Models (random init, float32, `torch.manual_seed(seed)` first):
- `TINY_SHAPE`: hidden 64, 4 heads / 2 kv heads, intermediate 128, 4 layers, 512 positions.
- `tiny_config(arch, **overrides)`: the config of llama, mistral, qwen2 or gemma3 at `TINY_SHAPE`.
- `tiny_model(arch, seed=, noise=, **overrides)`: that model in memory (no tokenizer: pass `vocab_size`).
- `build_tiny_model(arch, out_dir, tokenizer_dir, seed=, noise=, **overrides)`: the model sized to the
  tokenizer's vocabulary, with its special-token ids, saved into `out_dir` next to the tokenizer.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Gemma3TextConfig,
    LlamaConfig,
    MistralConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

# ---------------------------------------------------------------- text

_SUBJECTS = ("the UE", "the gNB", "the eNodeB", "the AMF", "the SMF", "the UPF", "the core network",
             "the base station", "the cell", "the scheduler", "the RRC layer", "the MAC layer")
_VERBS = ("sends", "receives", "measures", "schedules", "releases", "configures", "reports", "encodes",
          "forwards", "monitors", "requests", "allocates")
_OBJECTS = ("the SSB burst", "a paging message", "the RSRP", "uplink grants", "a PDU session",
            "the handover command", "resource blocks", "the timing advance", "a random access preamble",
            "the QoS flow", "system information", "the beam report")
_TAILS = ("every twenty ms", "after a radio link failure", "in RRC_CONNECTED", "on the PDCCH",
          "over the N2 interface", "when the signal drops below -110 dBm", "in Release 15", "for 5G NR",
          "in LTE", "within 10 ms")

_OTHER = ("the market", "an investor", "the bank", "a bond", "the index", "inflation", "a portfolio",
          "the rate", "rain", "the wind", "a storm", "sunshine", "quarterly earnings", "the central bank")

WORDS = [
    "the", "network", "base", "station", "signal", "antenna", "handover", "latency", "throughput", "user",
    "equipment", "core", "packet", "frequency", "band", "carrier", "modulation", "spectrum", "power", "cell",
    "tower", "router", "protocol", "layer", "def", "return", "class", "import", "for", "while", "if", "else",
    "print", "self", "value", "list", "dict", "string", "number", "café", "naïve", "résumé", "über", "straße",
    "größe", "東京", "日本語", "中文", "русский", "язык", "ελληνικά", "emoji", "🙂", "🚀",
]
"""The vocabulary of `mixed_corpus`: telecom and code words, accented Latin, CJK, Cyrillic, Greek, emoji."""


def telecom_sentences(n: int = 400, seed: int = 0) -> list[str]:
    """`n` short telecom sentences from a fixed grammar; Q/A shaped every third."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}."
        s = s[0].upper() + s[1:]
        if i % 3 == 0:
            s = f"Question: what does {rng.choice(_SUBJECTS)} do?\nAnswer: {s}"
        out.append(s)
    return out


def other_sentences(n: int = 300, seed: int = 1) -> list[str]:
    """`n` finance/weather sentences: text sharing little with `telecom_sentences` (another vocabulary)."""
    rng = random.Random(seed)
    return [f"{rng.choice(_OTHER)} moved {rng.randint(1, 99)} points on day {rng.randint(1, 31)}; "
            f"{rng.choice(_OTHER)} followed." for _ in range(n)]


def mixed_corpus(n: int = 3000, seed: int = 0) -> list[str]:
    """`n` lines of `WORDS` with numbers, small Python functions and irregular whitespace mixed in."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        line = " ".join(rng.choices(WORDS, k=rng.randint(3, 12)))
        if i % 3 == 0:
            line += f" {rng.randint(0, 99999)} {rng.random():.3f}"
        if i % 5 == 0:
            line = f"def f_{i}(x):\n    return x * {i}  # {line}"
        if i % 7 == 0:
            line = "  " + line.replace(" ", "   ", 2) + "\t\n"
        lines.append(line)
    return lines


# ---------------------------------------------------------------- tokenizers

def train_bpe_tokenizer(
    out_dir: Path, texts: Iterable[str], vocab_size: int, specials: dict[str, str], *,
    digits: bool = False, prepend_bos: bool = True, chat_template: str | None = None,
) -> Path:
    """Byte-level BPE trained on `texts`, saved into `out_dir` (returned).

    `specials` maps role (unk, bos, eos, pad) -> token; the distinct tokens get ids 0, 1, ... in the
    order given (a token may serve two roles, e.g. pad = eos). Byte-level so every string encodes and
    decodes losslessly. `digits`: split numbers into single digits first (SmolLM2's pre-tokenizer);
    `prepend_bos`: add BOS to every encoding like llama tokenizers; `chat_template`: a Jinja template.
    """
    tk = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tk.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level]) if digits else byte_level
    )
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(dict.fromkeys(specials.values())), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tk.train_from_iterator(texts, trainer)
    if prepend_bos:
        bos = specials["bos"]
        tk.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1", special_tokens=[(bos, tk.token_to_id(bos))]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk, clean_up_tokenization_spaces=False, model_max_length=512,
        **{f"{role}_token": tok for role, tok in specials.items()},
    )
    if chat_template is not None:
        fast.chat_template = chat_template
    fast.save_pretrained(out_dir)
    return out_dir


def train_sentencepiece_tokenizer(out_dir: Path, texts: Iterable[str], vocab_size: int = 500) -> Path:
    """SentencePiece BPE with byte fallback and per-digit splits (unk 0, BOS 1, EOS 2, no pad), as llama and
    gemma ship it: tokenizer.model plus the fast tokenizer.json, saved into `out_dir` (returned)."""
    import sentencepiece as spm
    from transformers import LlamaTokenizerFast

    out_dir.mkdir(parents=True, exist_ok=True)
    text = out_dir / "corpus.txt"
    text.write_text("\n".join(texts))
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(out_dir / "tokenizer"), vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, split_digits=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        bos_id=1, eos_id=2, unk_id=0, pad_id=-1, character_coverage=1.0, minloglevel=2,
        allow_whitespace_only_pieces=True,
    )
    text.unlink()
    (out_dir / "tokenizer.vocab").unlink()
    LlamaTokenizerFast(vocab_file=str(out_dir / "tokenizer.model"), legacy=True).save_pretrained(out_dir)
    return out_dir


# ---------------------------------------------------------------- models

TINY_SHAPE: dict[str, Any] = dict(
    hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
    num_hidden_layers=4, max_position_embeddings=512,
)
"""The default shape; 4 layers so that students of 2 can be cut from it and layers pruned."""


def _gemma3_config(**kw: Any) -> PretrainedConfig:
    """Gemma-3 with head_dim 16 and an 8-token window; layers alternate sliding/full unless `layer_types`
    is given (None: transformers' own pattern, five sliding then one full)."""
    n = kw.get("num_hidden_layers", TINY_SHAPE["num_hidden_layers"])
    kw.setdefault("layer_types", ["full_attention" if i % 2 else "sliding_attention" for i in range(n)])
    kw.setdefault("head_dim", 16)
    kw.setdefault("query_pre_attn_scalar", 16)
    kw.setdefault("sliding_window", 8)
    return Gemma3TextConfig(**kw)


TINY_CONFIGS: dict[str, Callable[..., PretrainedConfig]] = {
    "llama": LlamaConfig,
    "mistral": MistralConfig,
    "qwen2": Qwen2Config,
    "gemma3": _gemma3_config,
}


def tiny_config(arch: str = "llama", **overrides: Any) -> PretrainedConfig:
    """The `arch` config at `TINY_SHAPE`, `overrides` applied last (vocab_size defaults to the library's)."""
    if arch not in TINY_CONFIGS:
        raise ValueError(f"unknown tiny arch {arch!r}; known: {sorted(TINY_CONFIGS)}")
    return TINY_CONFIGS[arch](**{**TINY_SHAPE, **overrides})


def tiny_model(
    arch: str = "llama", *, seed: int = 0, noise: dict[str, float] | None = None, **overrides: Any
) -> PreTrainedModel:
    """A random float32 `arch` model of `tiny_config(arch, **overrides)`, initialised after
    `torch.manual_seed(seed)`.

    `noise` maps a parameter-name suffix to a standard deviation: after the init, every parameter whose
    name ends with it is redrawn from N(0, std), in `named_parameters` order. Norm weights and attention
    biases start at constants, which a conversion could get wrong unnoticed; noise makes them count.
    """
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, **overrides), dtype=torch.float32)
    if noise:
        with torch.no_grad():
            for name, p in model.named_parameters():
                std = next((s for suffix, s in noise.items() if name.endswith(suffix)), None)
                if std is not None:
                    p.normal_(0.0, std)
    return model


def build_tiny_model(
    arch: str, out_dir: Path, tokenizer_dir: Path, *, seed: int = 0, noise: dict[str, float] | None = None,
    **overrides: Any,
) -> Path:
    """`tiny_model` sized to the tokenizer in `tokenizer_dir` (vocab_size = len(tokenizer); bos, eos and pad
    ids from it, unless overridden), saved into `out_dir` (returned) with the tokenizer copied beside it
    when `out_dir` is another folder."""
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = tiny_model(arch, seed=seed, noise=noise, **{"vocab_size": len(tok), **ids, **overrides})
    model.save_pretrained(out_dir)
    if Path(out_dir).resolve() != Path(tokenizer_dir).resolve():
        tok.save_pretrained(out_dir)
    return out_dir
