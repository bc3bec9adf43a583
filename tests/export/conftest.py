"""Tiny random llama/mistral/qwen2/gemma3 HF folders for the export tests, built with tests/factory.py
(tokenizers trained on the fly over `mixed_corpus`, weights drawn with `initializer_range` 0.1).

- `tiny_llama`: hidden 64, byte-level BPE (GPT-2 pre-tokenizer), tied embeddings, ChatML template.
- `tiny_llama_digits`: as above but with SmolLM2's per-digit pre-tokenizer ("smollm" in llama.cpp).
- `tiny_mistral`: hidden 64, SentencePiece BPE with byte fallback (tokenizer.model + tokenizer.json).
- `tiny_qwen2`: hidden 64, q/k/v biases, byte-level BPE.
- `tiny_gemma3`: hidden 64, 7 layers (one global), sliding window 8, SentencePiece tokenizer.
- `tiny_llama_256`: hidden 256 so K-quants apply to every weight.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tests.factory import (
    WORDS,
    build_tiny_model,
    mixed_corpus,
    train_bpe_tokenizer,
    train_sentencepiece_tokenizer,
)


def tokenizer_test_strings() -> list[str]:
    """>= 200 strings: unicode, code, numbers, whitespace runs, special tokens."""
    base = [
        "",
        " ",
        "  ",
        "\n",
        "\n\n\n",
        "\t",
        " \t \n ",
        "hello",
        " hello",
        "hello ",
        "  hello  world  ",
        "Hello World!",
        "HELLO",
        "don't won't it's we've I'm you'll he'd",
        "3.14159",
        "1234567890",
        "12 345 6789",
        "x=1+2*3/4-5",
        "0x1F 0b1010 1e-5 -42",
        "$100.00 and 50%",
        "def f(x):\n    return x ** 2\n",
        "for (int i = 0; i < n; ++i) { a[i] = b[i]; }",
        "import numpy as np\nnp.zeros((3, 4))",
        "<html><body>hi</body></html>",
        "a\u00a0b",
        "tab\tseparated\tvalues",
        "café naïve résumé",
        "Über Straße größe",
        "東京は日本の首都です",
        "中文测试",
        "русский язык",
        "ελληνικά",
        "emoji 🙂🚀👍🏽",
        "mixed 東京 and english 123",
        "zero\u200bwidth",
        "combining e\u0301",
        "<|im_start|>user\nhi<|im_end|>",
        "<|im_start|>assistant\n",
        "text<|im_end|>more",
        "<s>",
        "</s>",
        "<s> hello</s>",
        "   leading spaces",
        "trailing spaces   ",
        "multiple     spaces",
        "new\nline",
        "CRLF\r\nline",
        "....",
        "!!!???",
        "--==++",
        "\"quoted\" 'single'",
        "path/to/file.txt",
        "user@example.com",
        "https://example.com/a?b=c&d=e",
        "snake_case_name",
        "camelCaseName",
        "UPPER_CASE",
        "3GPP TS 38.300",
    ]
    rng = random.Random(1)
    extra = []
    for _ in range(220 - len(base)):
        parts = rng.choices(
            WORDS + ["  ", "\n", "\t", "123", "4.5", "!", "(", ")", "  \n  "], k=rng.randint(1, 9)
        )
        sep = rng.choice([" ", "", "  ", "\n"])
        extra.append(sep.join(parts))
    return base + extra


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _byte_level_tokenizer(folder: Path, digits: bool) -> None:
    """600-token byte-level BPE over `mixed_corpus` with ChatML specials (no BOS prepended)."""
    specials = {"unk": "<|endoftext|>", "bos": "<|im_start|>", "eos": "<|im_end|>", "pad": "<|im_end|>"}
    train_bpe_tokenizer(folder, mixed_corpus(), 600, specials, digits=digits, prepend_bos=False, chat_template=CHATML)


EXPORT_SHAPE: dict[str, Any] = dict(
    num_hidden_layers=2, max_position_embeddings=256, rope_theta=100000.0,
    initializer_range=0.1,  # weights well away from zero, so the logits the parity gates compare are not flat
    pad_token_id=None,  # no padding row (gemma3 aside): every embedding row is random, none zeroed
)
ARCH_OVERRIDES: dict[str, dict[str, Any]] = {
    "llama": dict(tie_word_embeddings=True),
    "mistral": dict(tie_word_embeddings=False, sliding_window=None),
    "qwen2": dict(tie_word_embeddings=True, use_sliding_window=False),
    # 7 layers in transformers' own pattern so layer 5 is global; a window of 8 tokens so the sample prompts
    # cross it; pad id 0 (its row zeroed) as Gemma ships it.
    "gemma3": dict(num_hidden_layers=7, layer_types=None, head_dim=16, query_pre_attn_scalar=16, sliding_window=8,
                   rope_theta=1000000.0, tie_word_embeddings=True, pad_token_id=0),
}
NOISE: dict[str, dict[str, float]] = {
    "gemma3": {"norm.weight": 0.3},  # non-trivial norm weights, so the (1 + w) convention is checked
    # random q/k/v biases, so the bias path is really exercised
    "qwen2": {"q_proj.bias": 0.1, "k_proj.bias": 0.1, "v_proj.bias": 0.1},
}


def _save_model(folder: Path, arch: str, hidden: int, seed: int) -> None:
    """A 2-layer `arch` model (gemma3: 7) of hidden size `hidden` beside the tokenizer already in `folder`."""
    build_tiny_model(arch, folder, folder, seed=seed, noise=NOISE.get(arch), hidden_size=hidden,
                     intermediate_size=2 * hidden, **{**EXPORT_SHAPE, **ARCH_OVERRIDES[arch]})


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_llama")
    _byte_level_tokenizer(folder, digits=False)
    _save_model(folder, "llama", 64, seed=0)
    return folder


@pytest.fixture(scope="session")
def tiny_llama_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_llama_digits")
    _byte_level_tokenizer(folder, digits=True)
    _save_model(folder, "llama", 64, seed=1)
    return folder


@pytest.fixture(scope="session")
def tiny_mistral(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_mistral")
    train_sentencepiece_tokenizer(folder, mixed_corpus())
    _save_model(folder, "mistral", 64, seed=2)
    return folder


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_qwen2")
    _byte_level_tokenizer(folder, digits=False)
    _save_model(folder, "qwen2", 64, seed=4)
    return folder


@pytest.fixture(scope="session")
def tiny_gemma3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_gemma3")
    train_sentencepiece_tokenizer(folder, mixed_corpus())
    _save_model(folder, "gemma3", 64, seed=5)
    return folder


@pytest.fixture(scope="session")
def tiny_llama_256(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_llama_256")
    _byte_level_tokenizer(folder, digits=False)
    _save_model(folder, "llama", 256, seed=3)
    return folder


@pytest.fixture(scope="session")
def test_strings() -> list[str]:
    return tokenizer_test_strings()
