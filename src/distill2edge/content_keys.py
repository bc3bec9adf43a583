"""Content digests of the files and folders a stage reads, so a stage's key changes when they do.

A stage key made from the config alone would reuse a stage after its input file was edited in place.
`Run.stage(..., content=...)` mixes these digests into the key instead:

- a local **file** (a JSONL data source, a profile YAML): sha256 of its bytes;
- a local **model folder**: `teacher_cache.fingerprint_model_dir` (its weights and config.json, the
  digest the teacher cache keys on) plus the small files beside them (tokenizer, generation config,
  weights index);
- anything else (`embedded:NAME`, a hub id, a URL) has no local content here and adds nothing: embedded
  models and data change only with the package, hub ids name what they name.

Hashing a large folder reads every weight byte (about a second per GB), so digests are remembered in a
memo file per path, and reused while every file keeps its size and mtime.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from distill2edge.atomic import write_json_atomic

SMALL_FILE_BYTES = 64 << 20
"""Non-weight files of a model folder up to this size enter its digest (tokenizers, configs, indexes)."""
_WEIGHT_SUFFIXES = {".safetensors", ".bin"}


def _stamp(files: list[Path]) -> list[list[object]]:
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def _memo_get(memo: Path | None, key: str, stamp: list[list[object]]) -> str | None:
    if memo is None or not memo.exists():
        return None
    try:
        entry = json.loads(memo.read_text()).get(key)
    except (OSError, ValueError):
        return None
    return entry["sha256"] if entry is not None and entry.get("files") == stamp else None


def _memo_put(memo: Path | None, key: str, stamp: list[list[object]], digest: str) -> None:
    if memo is None:
        return
    try:
        known = json.loads(memo.read_text()) if memo.exists() else {}
    except (OSError, ValueError):
        known = {}
    known[key] = {"files": stamp, "sha256": digest}
    memo.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(memo, known, indent=1)  # concurrent writers: the last one wins, none half-written


def file_digest(path: Path, memo: Path | None = None) -> str:
    """sha256 of one file's bytes (remembered in `memo` while its size and mtime stay the same)."""
    key, stamp = f"file:{path.resolve()}", _stamp([path])
    cached = _memo_get(memo, key, stamp)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    digest = h.hexdigest()
    _memo_put(memo, key, stamp, digest)
    return digest


def folder_digest(path: Path, memo: Path | None = None) -> str:
    """sha256 of a model folder: the teacher cache's weight fingerprint plus its small other files."""
    from distill2edge.train.teacher_cache import fingerprint_model_dir

    files = sorted(p for p in path.iterdir() if p.is_file())
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in files):  # not a model folder: every file counts
        h = hashlib.sha256()
        for p in files:
            h.update(p.name.encode() + b"\0" + file_digest(p, memo).encode())
        return h.hexdigest()
    h = hashlib.sha256(fingerprint_model_dir(path, memo=memo).encode())
    for p in files:
        if p.suffix not in _WEIGHT_SUFFIXES and p.name != "config.json" and p.stat().st_size <= SMALL_FILE_BYTES:
            h.update(p.name.encode() + b"\0" + file_digest(p, memo).encode())
    return h.hexdigest()


def ref_digest(ref: str | os.PathLike[str] | None, memo: Path | None = None) -> str | None:
    """The content digest of a reference that names a local file or folder; None for anything else."""
    if ref is None:
        return None
    text = str(ref)
    if text.startswith(("embedded:", "hf:", "http://", "https://")):
        return None
    path = Path(text).expanduser()
    if path.is_file():
        return file_digest(path, memo)
    if path.is_dir():
        return folder_digest(path, memo)
    return None


def content_of(refs: dict[str, str | os.PathLike[str] | None], memo: Path | None = None) -> dict[str, str]:
    """`{what: digest}` for the references that are local files or folders (the others are left out)."""
    out = {}
    for what, ref in refs.items():
        digest = ref_digest(ref, memo)
        if digest is not None:
            out[what] = digest[:16]
    return out
