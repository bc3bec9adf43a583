"""Recipe schema, `texts.NAME`: a file of unlabelled domain text a distillation heals the student on.

Full-sequence KD (`positions: all`) learns from every position of a sequence, so it needs no question or
answer: a user's manuals, specifications or notes in plain text widen what the student is healed on beyond
the QA set's few contexts. A distillation adds a file's passages to its training split with
`extra_data: [text.NAME]`; validation and test stay the recipe's QA splits.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from distill2edge.schema.base import Strict


class TextSourceConfig(Strict):
    """One file of unlabelled text (stage `text.NAME`), cut into passages.

    `txt` (any other suffix too): paragraphs separated by blank lines. `jsonl`: one JSON object per line,
    its `field` holding the text. Whitespace is collapsed; a paragraph longer than `max_words` words is cut
    into consecutive passages of at most that many, so the training length (`data.max_length`) cuts off
    little; passages under `min_words` words are dropped (headings, table debris)."""

    path: str
    """The file, relative to the directory the command runs in (as `data.source`)."""
    format: Literal["auto", "txt", "jsonl"] = "auto"
    """`auto`: `jsonl` for a `.jsonl` file, else `txt`."""
    field: str = "text"
    """`jsonl`: the key of each object that holds its text."""
    min_words: int = Field(20, ge=1)
    max_words: int = Field(160, ge=8)
    """Words per passage at most: ~160 words is ~220 tokens of English technical text, inside the default
    `data.max_length` of 256 (a longer passage is cut at the end when encoded)."""
    max_passages: int | None = Field(None, ge=1)
    """Keep only the first N passages (in file order); empty: all."""
