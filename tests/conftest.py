"""Shared fixtures over the one tiny-model/tokenizer factory, tests/factory.py (no hub, deterministic).

- `tiny_tokenizer_dir` (session): byte-level BPE, 448 tokens, trained on generated telecom sentences;
  specials <unk>=0, <s>=1 (BOS, prepended), </s>=2 (EOS), <pad>=3.
- `tiny_tokenizer_b_dir` (session): a *different* vocabulary (320 tokens, other text, other special
  ids) for the different-vocabulary tests.
- `tiny_llama_dir` (session): random `LlamaForCausalLM` of `TINY_SHAPE` (4 layers, hidden 64, 4 heads /
  2 kv heads, intermediate 128, 512 positions), vocab = len(tokenizer), seed 0, saved with the tokenizer.
- `tiny_teacher_b_dir` (session): random gemma3, hidden 48, tokenizer B: the different-vocabulary teacher.
- `make_tiny_model(arch="llama", *, tokenizer_dir=None, seed=0, **config_overrides) -> Path`: the same
  shape for llama, mistral, qwen2 or gemma3 (head_dim 16, sliding window 8, layers alternating
  sliding/full), with `tiny_tokenizer_dir` unless another is given, in a fresh folder under tmp_path.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.factory import build_tiny_model, other_sentences, telecom_sentences, train_bpe_tokenizer


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    specials = {"unk": "<unk>", "bos": "<s>", "eos": "</s>", "pad": "<pad>"}
    return train_bpe_tokenizer(tmp_path_factory.mktemp("tiny-tokenizer"), telecom_sentences(), 448, specials)


@pytest.fixture(scope="session")
def tiny_tokenizer_b_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    specials = {"pad": "[PAD]", "unk": "[UNK]", "bos": "[BOS]", "eos": "[EOS]"}
    return train_bpe_tokenizer(tmp_path_factory.mktemp("tiny-tokenizer-b"), other_sentences(), 320, specials)


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
    """`make_tiny_model(arch="llama", *, tokenizer_dir=None, **overrides) -> Path` of a fresh folder under
    tmp_path: `build_tiny_model` with `tiny_tokenizer_dir` unless `tokenizer_dir` names another."""
    counter = itertools.count()

    def make(arch: str = "llama", *, tokenizer_dir: Path | None = None, **overrides: Any) -> Path:
        out = tmp_path / f"tiny-{arch}-{next(counter)}"
        return build_tiny_model(arch, out, tokenizer_dir or tiny_tokenizer_dir, **overrides)

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
