"""Tiny random llama/mistral HF folders for the export tests, with tokenizers trained on the fly.

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

_WORDS = [
    "the",
    "network",
    "base",
    "station",
    "signal",
    "antenna",
    "handover",
    "latency",
    "throughput",
    "user",
    "equipment",
    "core",
    "packet",
    "frequency",
    "band",
    "carrier",
    "modulation",
    "spectrum",
    "power",
    "cell",
    "tower",
    "router",
    "protocol",
    "layer",
    "def",
    "return",
    "class",
    "import",
    "for",
    "while",
    "if",
    "else",
    "print",
    "self",
    "value",
    "list",
    "dict",
    "string",
    "number",
    "café",
    "naïve",
    "résumé",
    "über",
    "straße",
    "größe",
    "東京",
    "日本語",
    "中文",
    "русский",
    "язык",
    "ελληνικά",
    "emoji",
    "🙂",
    "🚀",
]


def corpus(n: int = 3000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        words = rng.choices(_WORDS, k=rng.randint(3, 12))
        line = " ".join(words)
        if i % 3 == 0:
            line += f" {rng.randint(0, 99999)} {rng.random():.3f}"
        if i % 5 == 0:
            line = f"def f_{i}(x):\n    return x * {i}  # {line}"
        if i % 7 == 0:
            line = "  " + line.replace(" ", "   ", 2) + "\t\n"
        lines.append(line)
    return lines


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
            _WORDS + ["  ", "\n", "\t", "123", "4.5", "!", "(", ")", "  \n  "], k=rng.randint(1, 9)
        )
        sep = rng.choice([" ", "", "  ", "\n"])
        extra.append(sep.join(parts))
    return base + extra


def _byte_level_tokenizer(folder: Path, digits: bool) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tk.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
        if digits
        else byte_level
    )
    tk.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
    )
    fast.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    fast.save_pretrained(folder)


def _sentencepiece_tokenizer(folder: Path) -> None:
    import sentencepiece as spm
    from transformers import LlamaTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "corpus.txt"
    text.write_text("\n".join(corpus()))
    spm.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=500,
        model_type="bpe",
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        bos_id=1,
        eos_id=2,
        unk_id=0,
        pad_id=-1,
        character_coverage=1.0,
        minloglevel=2,
        allow_whitespace_only_pieces=True,
    )
    text.unlink()
    (folder / "tokenizer.vocab").unlink()
    tok = LlamaTokenizerFast(vocab_file=str(folder / "tokenizer.model"), legacy=True)
    tok.save_pretrained(folder)


def _save_model(folder: Path, arch: str, vocab: int, hidden: int, seed: int) -> None:
    import torch
    from transformers import (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    torch.manual_seed(seed)
    common: dict[str, Any] = dict(  # noqa: C408 - keyword form reads like a config
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rope_theta=100000.0,
        initializer_range=0.1,
        bos_token_id=1,
        eos_token_id=2,
    )
    if arch == "mistral":
        model = MistralForCausalLM(MistralConfig(**common, tie_word_embeddings=False, sliding_window=None))
    elif arch == "gemma3":
        # 7 layers so layer 5 is global; a window of 8 tokens so the sample prompts cross it.
        common.update(
            num_hidden_layers=7, head_dim=16, query_pre_attn_scalar=16, sliding_window=8, rope_theta=1000000.0
        )
        model = Gemma3ForCausalLM(Gemma3TextConfig(**common, tie_word_embeddings=True))
        with torch.no_grad():  # non-trivial norm weights, so the (1 + w) convention is checked
            for name, p in model.named_parameters():
                if name.endswith("norm.weight"):
                    p.normal_(0.0, 0.3)
    elif arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=True, use_sliding_window=False))
        with torch.no_grad():  # random q/k/v biases, so the bias path is really exercised
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0.0, 0.1)
    else:
        model = LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=True))
    model.save_pretrained(folder)


def _vocab(folder: Path) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(folder))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_llama")
    _byte_level_tokenizer(folder, digits=False)
    _save_model(folder, "llama", _vocab(folder), 64, seed=0)
    return folder


@pytest.fixture(scope="session")
def tiny_llama_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_llama_digits")
    _byte_level_tokenizer(folder, digits=True)
    _save_model(folder, "llama", _vocab(folder), 64, seed=1)
    return folder


@pytest.fixture(scope="session")
def tiny_mistral(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_mistral")
    _sentencepiece_tokenizer(folder)
    _save_model(folder, "mistral", _vocab(folder), 64, seed=2)
    return folder


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_qwen2")
    _byte_level_tokenizer(folder, digits=False)
    _save_model(folder, "qwen2", _vocab(folder), 64, seed=4)
    return folder


@pytest.fixture(scope="session")
def tiny_gemma3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_gemma3")
    _sentencepiece_tokenizer(folder)
    _save_model(folder, "gemma3", _vocab(folder), 64, seed=5)
    return folder


@pytest.fixture(scope="session")
def tiny_llama_256(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_llama_256")
    _byte_level_tokenizer(folder, digits=False)
    _save_model(folder, "llama", _vocab(folder), 256, seed=3)
    return folder


@pytest.fixture(scope="session")
def test_strings() -> list[str]:
    return tokenizer_test_strings()
