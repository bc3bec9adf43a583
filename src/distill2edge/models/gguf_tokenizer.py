"""Build a Hugging Face fast tokenizer from the vocabulary inside a GGUF file, tokenizing as llama.cpp does.

Why not transformers' own GGUF tokenizer loader (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`)?
Measured with transformers 4.57 against llama.cpp on the 461 contexts and questions of the embedded
telecom QA set plus 9 hard strings (470 texts):
- SmolLM2 (byte-level BPE): it makes `<|im_start|>` both BOS and EOS (the GGUF says EOS is id 2,
  `<|im_end|>`), adds a BOS that the GGUF (`add_bos_token = false`) and llama.cpp do not, and drops the
  `smollm` pre-tokenizer's digit split (1 text of 470 differs: " ½" is a digit to llama.cpp).
- Gemma-3 (SentencePiece BPE): it builds a *Unigram* model from the merge ranks, which segments words
  differently from llama.cpp (" eNodeB" -> "▁e|No|de|B" instead of "▁e|Node|B"): 468 texts of 470 differ.
The tokenizer built here gives llama.cpp's ids on all 470 texts for both models (text that spells a
control token, such as "<bos>", aside: HF always parses it as the token, llama.cpp only when asked);
`conversion.json` records the same check on the verification texts for every conversion.

Supported `tokenizer.ggml.model` values: `gpt2` (byte-level BPE with stored merges) and `llama`
(SentencePiece BPE: merges are rebuilt from the vocabulary, ranked by the merged token's score, which
is the order in which llama.cpp's SPM tokenizer applies them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gguf import GGUFReader, TokenType
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

_MISSING = object()


def gguf_field(reader: GGUFReader, key: str, default: Any = _MISSING) -> Any:
    """The decoded value of metadata field `key` (str, number, bool or list); `default` if absent."""
    field = reader.fields.get(key)
    if field is None:
        if default is _MISSING:
            raise ValueError(f"GGUF metadata field {key} is missing")
        return default
    return field.contents()


# Byte-level pre-tokenizers keyed by `tokenizer.ggml.pre` (llama.cpp's name for the split regex).
# Only the ones verified against llama.cpp are listed; add more with a parity check.
_BYTE_LEVEL_PRE: dict[str, Callable[[], pre_tokenizers.PreTokenizer]] = {
    "gpt-2": lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    # SmolLM: every digit is its own pre-token, then the GPT-2 regex.
    "smollm": lambda: pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    ),
}


def _byte_level_bpe(reader: GGUFReader, tokens: list[str]) -> Tokenizer:
    """GPT-2 style: merges are stored in the file as "left right" strings."""
    pre = gguf_field(reader, "tokenizer.ggml.pre", "gpt-2")
    if pre not in _BYTE_LEVEL_PRE:
        raise ValueError(
            f"GGUF field tokenizer.ggml.pre = {pre!r} is not supported for byte-level BPE; "
            f"supported: {sorted(_BYTE_LEVEL_PRE)}"
        )
    merges = [tuple(m.split(" ", 1)) for m in gguf_field(reader, "tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tk.pre_tokenizer = _BYTE_LEVEL_PRE[pre]()
    tk.decoder = decoders.ByteLevel()
    return tk


def _sentencepiece_bpe(reader: GGUFReader, tokens: list[str], types: list[int]) -> Tokenizer:
    """SentencePiece BPE: scores are merge priorities (higher first); spaces are written as "▁".

    llama.cpp repeatedly merges the adjacent pair whose concatenation is the best-scoring token. A BPE
    model whose merge list holds every split of every normal token into two vocabulary pieces, ranked
    by the score of the merged token, makes the same choices.
    """
    scores = gguf_field(reader, "tokenizer.ggml.scores")
    vocab = {t: i for i, t in enumerate(tokens)}
    ranked: list[tuple[float, int, str, str]] = []
    for piece, i in vocab.items():
        if types[i] != TokenType.NORMAL:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                ranked.append((-scores[i], cut, left, right))
    ranked.sort(key=lambda r: (r[0], r[1]))
    unk_id = gguf_field(reader, "tokenizer.ggml.unknown_token_id", None)
    tk = Tokenizer(
        models.BPE(
            vocab=vocab, merges=[(left, right) for _, _, left, right in ranked], byte_fallback=True,
            unk_token=tokens[unk_id] if unk_id is not None else None, fuse_unk=True,
        )
    )
    norm: list[normalizers.Normalizer] = []
    if gguf_field(reader, "tokenizer.ggml.add_space_prefix", True):
        # llama.cpp prefixes only the text's first fragment; HF prefixes each fragment between added
        # tokens. Same ids for text without special tokens, which is what the models see in training.
        norm.append(normalizers.Prepend("▁"))
    norm.append(normalizers.Replace(" ", "▁"))
    tk.normalizer = normalizers.Sequence(norm)
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    return tk


_BUILDERS = {"gpt2": "byte-level BPE", "llama": "SentencePiece BPE"}


def tokenizer_from_gguf(reader: GGUFReader) -> PreTrainedTokenizerFast:
    """A `PreTrainedTokenizerFast` with the GGUF's vocabulary, special tokens, BOS/EOS policy, chat template.

    Control tokens become special added tokens; user-defined tokens (Gemma's "\\n\\n", runs of spaces,
    HTML tags) become non-special added tokens matched on the raw text, as llama.cpp matches them.
    `pad_token` is the GGUF's padding token, else EOS.
    """
    kind = gguf_field(reader, "tokenizer.ggml.model")
    arch = gguf_field(reader, "general.architecture")
    tokens: list[str] = gguf_field(reader, "tokenizer.ggml.tokens")
    types: list[int] = gguf_field(reader, "tokenizer.ggml.token_type", [TokenType.NORMAL] * len(tokens))
    if kind == "gpt2":
        tk = _byte_level_bpe(reader, tokens)
    elif kind == "llama":
        tk = _sentencepiece_bpe(reader, tokens, types)
    else:
        raise ValueError(
            f"GGUF field tokenizer.ggml.model = {kind!r} is not supported; supported: "
            + ", ".join(f"{k} ({v})" for k, v in _BUILDERS.items())
        )
    tk.add_special_tokens(
        [AddedToken(tokens[i], special=True, normalized=False)
         for i, t in enumerate(types) if t == TokenType.CONTROL]
    )
    tk.add_tokens(
        [AddedToken(tokens[i], special=False, normalized=False)
         for i, t in enumerate(types) if t == TokenType.USER_DEFINED]
    )

    def special(key: str) -> tuple[str | None, int | None]:
        i = gguf_field(reader, f"tokenizer.ggml.{key}_token_id", None)
        return (tokens[i], int(i)) if i is not None and 0 <= i < len(tokens) else (None, None)

    (bos, bos_id), (eos, eos_id), (unk, _) = special("bos"), special("eos"), special("unknown")
    if eos is None:
        raise ValueError("GGUF field tokenizer.ggml.eos_token_id is missing: cannot tell where answers end")
    pad = special("padding")[0] or eos
    add_bos = bool(gguf_field(reader, "tokenizer.ggml.add_bos_token", False)) and bos is not None
    add_eos = bool(gguf_field(reader, "tokenizer.ggml.add_eos_token", False))
    if add_bos or add_eos:
        head, tail = ([bos] if add_bos else []), ([eos] if add_eos else [])
        tk.post_processor = processors.TemplateProcessing(
            single=head + ["$A"] + tail,
            pair=head + ["$A"] + tail + [f"{t}:1" for t in head] + ["$B:1"] + [f"{t}:1" for t in tail],
            special_tokens=[(bos, bos_id)] * add_bos + [(eos, eos_id)] * add_eos,
        )
    elif kind == "gpt2":
        tk.post_processor = processors.ByteLevel(trim_offsets=False)

    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token=bos, eos_token=eos, unk_token=unk, pad_token=pad,
        clean_up_tokenization_spaces=False,
        model_max_length=int(gguf_field(reader, f"{arch}.context_length", 2048)),
    )
    template = gguf_field(reader, "tokenizer.chat_template", None)
    if template:
        tok.chat_template = template
    return tok
