"""Shared fixtures: tokenizers trained on the fly and tiny random models (no hub, deterministic).

- `tiny_tokenizer_dir` (session): byte-level BPE, 448 tokens, trained on generated telecom sentences;
  specials <unk>=0, <s>=1 (BOS, prepended), </s>=2 (EOS), <pad>=3.
- `tiny_tokenizer_b_dir` (session): a *different* vocabulary (320 tokens, other text, other special
  ids) for the different-vocabulary tests.
- `tiny_llama_dir` (session): random `LlamaForCausalLM`, 4 layers, hidden 64, 4 heads / 2 kv heads,
  intermediate 128, vocab = len(tokenizer), 512 positions, seed 0, saved with the tokenizer.
- `tiny_teacher_b_dir` (session): random gemma3, hidden 48, tokenizer B: the different-vocabulary teacher.
- `make_tiny_model(arch="llama", **config_overrides) -> Path`: the same shape for llama, mistral,
  qwen2 or gemma3 (head_dim 16, sliding window 8, layers alternating sliding/full), in tmp_path.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Gemma3TextConfig,
    LlamaConfig,
    MistralConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

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
    rng = random.Random(seed)
    return [f"{rng.choice(_OTHER)} moved {rng.randint(1, 99)} points on day {rng.randint(1, 31)}; "
            f"{rng.choice(_OTHER)} followed." for _ in range(n)]


def train_tokenizer(texts: list[str], vocab_size: int, specials: dict[str, str], out_dir: Path) -> Path:
    """Byte-level BPE trained on `texts`; `specials` maps role (unk, bos, eos, pad) -> token, in id order.

    Byte-level so every string encodes and decodes losslessly; BOS is prepended like llama tokenizers.
    """
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(specials.values()), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tk.train_from_iterator(texts, trainer)
    bos = specials["bos"]
    tk.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1", special_tokens=[(bos, tk.token_to_id(bos))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk, clean_up_tokenization_spaces=False, model_max_length=512,
        **{f"{role}_token": tok for role, tok in specials.items()},
    )
    fast.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    specials = {"unk": "<unk>", "bos": "<s>", "eos": "</s>", "pad": "<pad>"}
    return train_tokenizer(telecom_sentences(), 448, specials, tmp_path_factory.mktemp("tiny-tokenizer"))


@pytest.fixture(scope="session")
def tiny_tokenizer_b_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    specials = {"pad": "[PAD]", "unk": "[UNK]", "bos": "[BOS]", "eos": "[EOS]"}
    return train_tokenizer(other_sentences(), 320, specials, tmp_path_factory.mktemp("tiny-tokenizer-b"))


TINY_SHAPE: dict[str, Any] = dict(
    hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
    num_hidden_layers=4, max_position_embeddings=512,
)


def _gemma3_config(**kw: Any) -> PretrainedConfig:
    n = kw.get("num_hidden_layers", 4)
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


def build_tiny_model(
    arch: str, out_dir: Path, tokenizer_dir: Path, *, seed: int = 0, **overrides: Any
) -> Path:
    """Random-init `arch` model of `TINY_SHAPE` (plus `overrides`) saved with the tokenizer into `out_dir`."""
    if arch not in TINY_CONFIGS:
        raise ValueError(f"unknown tiny arch {arch!r}; known: {sorted(TINY_CONFIGS)}")
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cfg = TINY_CONFIGS[arch](**{"vocab_size": len(tok), **TINY_SHAPE, **ids, **overrides})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer_dir: Path) -> Path:
    return build_tiny_model("llama", tmp_path_factory.mktemp("tiny-llama"), tiny_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_teacher_b_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer_b_dir: Path) -> Path:
    """A teacher that shares nothing with `tiny_llama_dir`: gemma3 architecture, hidden size 48,
    tokenizer B (another vocabulary), as Gemma-3 is to SmolLM2 in the embedded default."""
    return build_tiny_model(
        "gemma3", tmp_path_factory.mktemp("tiny-teacher-b"), tiny_tokenizer_b_dir, hidden_size=48, seed=1
    )


@pytest.fixture
def make_tiny_model(tmp_path: Path, tiny_tokenizer_dir: Path) -> Callable[..., Path]:
    """`make_tiny_model(arch="llama", **config_overrides) -> Path` of a fresh folder under tmp_path."""
    counter = itertools.count()

    def make(arch: str = "llama", **overrides: Any) -> Path:
        out = tmp_path / f"tiny-{arch}-{next(counter)}"
        return build_tiny_model(arch, out, tiny_tokenizer_dir, **overrides)

    return make


# ---------------------------------------------------------------- recipes over the tiny models

@pytest.fixture
def qa_jsonl(tmp_path: Path) -> Path:
    """10 small contexts x 3 questions."""
    p = tmp_path / "qa.jsonl"
    with p.open("w") as fh:
        for c in range(10):
            ctx = f"cell {c} uses band n{70 + c} and the amf {c} serves slice {c * 3}."
            for q, (question, answer) in enumerate([
                (f"which band does cell {c} use?", f"n{70 + c}"),
                (f"which amf serves cell {c}?", f"amf {c}"),
                (f"which slice is served in cell {c}?", f"slice {c * 3}"),
            ]):
                fh.write(json.dumps({"id": f"{c}-{q}", "context": ctx, "question": question, "answer": answer}) + "\n")
    return p


@pytest.fixture
def tiny_recipe(tmp_path: Path, tiny_llama_dir: Path, qa_jsonl: Path):
    """Write a recipe over the tiny model; `make(**sections)` overrides top-level sections."""

    def make(**sections) -> Path:
        train = {"epochs": 1, "batch_size": 4, "max_steps": 2, "checkpoint_every": 1, "lr": 1e-3}
        recipe = {
            "name": "tiny",
            "teachers": {"tiny": {"path": str(tiny_llama_dir)}},
            "student": {"init_from": str(tiny_llama_dir), "num_layers": 2},
            "data": {"source": str(qa_jsonl), "max_length": 96, "split": {"validation": 0.2, "test": 0.2}},
            "sft": {"teacher": {"lora": {"r": 4, "alpha": 8}, "train": train},
                    "student": {"lora": None, "train": train}},
            "distill": {"kd": {"train": train}},
            "evaluate": {"max_new_tokens": 4, "batch_size": 4},
            **sections,
        }
        p = tmp_path / "tiny.yaml"
        p.write_text(yaml.safe_dump(recipe, sort_keys=False))
        return p

    return make
