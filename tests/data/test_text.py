"""Files of unlabelled text (`texts.NAME`): paragraphs and JSONL, long paragraphs cut into windows,
short ones dropped, and errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill2edge.data.examples import DataError
from distill2edge.data.text import read_passages
from distill2edge.schema.texts import TextSourceConfig


def _cfg(path: Path, **kw: object) -> TextSourceConfig:
    return TextSourceConfig(path=str(path), **kw)


def test_paragraphs_are_passages_and_long_ones_are_cut(tmp_path: Path) -> None:
    long = " ".join(f"w{i}" for i in range(25))
    f = tmp_path / "notes.txt"
    f.write_text(f"The AMF  handles\nregistration and paging.\n\n\nshort\n\n{long}\n", encoding="utf-8")
    passages = read_passages(f, _cfg(f, min_words=3, max_words=10), "text.notes")
    assert [p.text for p in passages] == [
        "The AMF handles registration and paging.",
        " ".join(f"w{i}" for i in range(10)), " ".join(f"w{i}" for i in range(10, 20)),
        " ".join(f"w{i}" for i in range(20, 25)),
    ]
    assert [p.id for p in passages] == [f"text.notes.{i}" for i in range(4)]
    assert passages[0].meta == {"source": "text.notes"}
    assert len(read_passages(f, _cfg(f, min_words=3, max_words=10, max_passages=2), "t")) == 2


def test_jsonl_reads_the_named_field(tmp_path: Path) -> None:
    f = tmp_path / "docs.jsonl"
    f.write_text('{"body": "one two three four"}\n\n{"body": "five six seven eight"}\n', encoding="utf-8")
    assert [p.text for p in read_passages(f, _cfg(f, field="body", min_words=2), "t")] == [
        "one two three four", "five six seven eight"]


@pytest.mark.parametrize(("content", "kw", "message"), [
    ('{"text": "fine words here"}\n{"text": 3}\n', {"format": "jsonl"}, r"docs.x:2: expected an object with a string 'text'"),
    ('{"text": "fine"}\nnot json\n', {"format": "jsonl"}, r"docs.x:2: not JSON"),
    ("tiny\n\nalso tiny\n", {}, r"docs.x: no passage of at least 20 words \(texts min_words\)"),
])
def test_errors_name_the_file_and_line(tmp_path: Path, content: str, kw: dict, message: str) -> None:
    f = tmp_path / "docs.x"
    f.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_passages(f, _cfg(f, **kw), "t")


def test_a_missing_or_binary_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere.txt: no such file"):
        read_passages(tmp_path / "nowhere.txt", _cfg(tmp_path / "nowhere.txt"), "t")
    f = tmp_path / "blob.txt"
    f.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match=r"blob.txt: not UTF-8"):
        read_passages(f, _cfg(f), "t")
