"""Read a file of unlabelled text (`texts.NAME` in a recipe) into passages (`TextExample`), and the
`passages.jsonl` that the `text.NAME` and `teacher_data.TEACHER` stages keep them in.

Errors name the file and, for JSONL, the line. The passage ids are `NAME.<index>`, stable for an unchanged
file, so a distillation's teacher cache and stage keys are reused across runs."""

from __future__ import annotations

import json
from pathlib import Path

from distill2edge.atomic import write_text_atomic
from distill2edge.data.examples import DataError, TextExample
from distill2edge.schema.texts import TextSourceConfig


def _paragraphs(path: Path, cfg: TextSourceConfig) -> list[str]:
    """The raw texts of `path`: blank-line separated paragraphs, or each JSONL object's `cfg.field`."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (texts path)") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    fmt = cfg.format if cfg.format != "auto" else "jsonl" if path.suffix == ".jsonl" else "txt"
    if fmt == "txt":
        blocks, current = [], []
        for line in raw.splitlines():
            if line.strip():
                current.append(line)
            elif current:
                blocks.append(" ".join(current))
                current = []
        return blocks + ([" ".join(current)] if current else [])
    out = []
    for i, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{i}: not JSON ({e.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get(cfg.field), str):
            raise DataError(f"{path}:{i}: expected an object with a string {cfg.field!r} (texts field)")
        out.append(record[cfg.field])
    return out


def read_passages(path: str | Path, cfg: TextSourceConfig, name: str) -> list[TextExample]:
    """The passages of `path`: whitespace collapsed, paragraphs over `cfg.max_words` words cut into
    consecutive windows of at most that many, windows under `cfg.min_words` dropped, the first
    `cfg.max_passages` kept. DataError when none is left."""
    path = Path(path)
    passages: list[TextExample] = []
    for text in _paragraphs(path, cfg):
        words = text.split()
        for start in range(0, len(words), cfg.max_words):
            window = words[start : start + cfg.max_words]
            if len(window) >= cfg.min_words:
                passages.append(TextExample(id=f"{name}.{len(passages)}", text=" ".join(window), meta={"source": name}))
    if not passages:
        raise DataError(f"{path}: no passage of at least {cfg.min_words} words (texts min_words)")
    return passages[: cfg.max_passages]


def write_passages_jsonl(passages: list[TextExample], path: Path) -> None:
    """`path` (atomically): one passage per line, as `TextExample.to_json`."""
    write_text_atomic(path, "".join(json.dumps(p.to_json(), ensure_ascii=False) + "\n" for p in passages))


def read_passages_jsonl(path: Path) -> list[TextExample]:
    """The passages `write_passages_jsonl` wrote."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [TextExample.from_json(json.loads(line)) for line in lines if line.strip()]
