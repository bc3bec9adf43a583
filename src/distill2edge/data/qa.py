"""Question-answering data: loaders for the embedded set, TeleQuAD/SQuAD JSON, JSONL and HF datasets,
and a deterministic split by context so no context is seen in two splits.
"""

from __future__ import annotations

import hashlib
import json
import random
import urllib.request
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path

from distill2edge.atomic import write_file_atomic
from distill2edge.config import DataConfig, SplitConfig
from distill2edge.data.examples import DataError, QAExample
from distill2edge.data.qa_checks import check_answers_in_context, warn_stderr

__all__ = [
    "DataError", "QAExample", "load_embedded", "load_examples", "load_hf", "load_jsonl", "load_squad_json",
    "prepare_splits", "read_jsonl_located", "read_split", "read_squad_located", "split_by_context", "write_jsonl",
]


def _context_id(text: str) -> str:
    return "ctx-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


# ----------------------------------------------------------------------------------- loaders
def load_embedded() -> list[QAExample]:
    """The telecom QA set written for this project (ships inside the package)."""
    path = resources.files("distill2edge") / "data" / "embedded" / "telecom_qa.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for ctx in doc["contexts"]:
        for q in ctx["questions"]:
            out.append(
                QAExample(
                    id=q["id"], context_id=ctx["id"], context=ctx["text"], question=q["question"],
                    answers=(q["answer"],), title=ctx.get("title", ""),
                )
            )
    return out


def load_squad_json(path: Path, include_impossible: bool = True) -> list[QAExample]:
    """SQuAD-style JSON (see `read_squad_located`)."""
    return [ex for ex, _where in read_squad_located(path, include_impossible)]


def read_squad_located(path: Path, include_impossible: bool = True) -> list[tuple[QAExample, str]]:
    """SQuAD-style JSON, TeleQuAD's extractive files included, each example with its JSON path.

    TeleQuAD quirks handled: questions flagged `is_impossible` that nevertheless carry answers are
    kept as answerable (`include_impossible`), questions with no answer at all are skipped, and answer
    offsets that do not match their context are ignored (only the answer text is used; the mismatch is
    recorded in `meta["offset_mismatch"]`).
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(f"{path}: expected a SQuAD/TeleQuAD object with a 'data' list")
    out: list[tuple[QAExample, str]] = []
    for a_i, article in enumerate(doc["data"]):
        title = str(article.get("title", ""))
        for p_i, para in enumerate(article.get("paragraphs", [])):
            context = para.get("context")
            if not isinstance(context, str) or not context.strip():
                raise DataError(f"{path}: data[{a_i}].paragraphs[{p_i}]: missing 'context'")
            cid = _context_id(context)
            for q_i, qa in enumerate(para.get("qas", [])):
                where = f"{path}: data[{a_i}].paragraphs[{p_i}].qas[{q_i}]"
                if "question" not in qa:
                    raise DataError(f"{where}: missing 'question'")
                answers = [a for a in qa.get("answers", []) if str(a.get("text", "")).strip()]
                impossible = str(qa.get("is_impossible", False)).lower() == "true"
                if not answers or (impossible and not include_impossible):
                    continue
                mismatch = any(
                    isinstance(a.get("answer_start"), int)
                    and context[a["answer_start"] : a["answer_start"] + len(a["text"])] != a["text"]
                    for a in answers
                )
                texts = tuple(dict.fromkeys(str(a["text"]).strip() for a in answers))
                out.append((
                    QAExample(
                        id=str(qa.get("id", f"{cid}-{q_i}")), context_id=cid, context=context,
                        question=str(qa["question"]).strip(), answers=texts, title=title,
                        meta={"is_impossible": impossible, "offset_mismatch": mismatch},
                    ),
                    where,
                ))
    return out


def load_jsonl(path: Path) -> list[QAExample]:
    """One JSON object per line (see `read_jsonl_located`)."""
    return [ex for ex, _where in read_jsonl_located(path)]


def read_jsonl_located(path: Path) -> list[tuple[QAExample, str]]:
    """One JSON object per line: `context`, `question`, and `answer` (str) or `answers` (list);
    optional `id`, `context_id`, `title`. Each example comes with its `file:line`; errors name them too.
    An empty or whitespace-only answer is refused: it would become an empty reference."""
    out: list[tuple[QAExample, str]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON: {e.msg} (column {e.colno})") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object")
            missing = [k for k in ("context", "question") if not isinstance(rec.get(k), str)]
            answers = rec.get("answers", [rec["answer"]] if "answer" in rec else None)
            if isinstance(answers, str):
                answers = [answers]
            texts: list[str] = list(answers) if answers and all(isinstance(a, str) for a in answers) else []
            if not texts:
                missing.append("answer")
            if missing:
                raise DataError(f"{path}:{lineno}: missing or non-string field(s): {', '.join(missing)}")
            if not all(a.strip() for a in texts):
                raise DataError(f"{path}:{lineno}: empty or whitespace-only answer {answers!r}: "
                                "every answer must have text")
            out.append((
                QAExample(
                    id=str(rec.get("id", f"{path.stem}-{lineno}")),
                    context_id=str(rec.get("context_id") or _context_id(rec["context"])),
                    context=rec["context"], question=rec["question"].strip(),
                    answers=tuple(a.strip() for a in texts), title=str(rec.get("title", "")),
                ),
                f"{path}:{lineno}",
            ))
    return out


def load_hf(spec: str) -> list[QAExample]:
    """`NAME[:CONFIG]` through `datasets.load_dataset`, SQuAD columns (context, question, answers.text).

    Every split of the dataset is read; our own split by context decides train/validation/test.
    """
    import datasets

    name, _, config = spec.partition(":")
    try:
        dsd = datasets.load_dataset(name, config or None)
    except Exception as e:  # datasets raises many types for "not found" / offline
        raise DataError(f"could not load the dataset {spec!r} with datasets: {e}") from None
    out: list[QAExample] = []
    for split_name, ds in dsd.items():
        for i, row in enumerate(ds):
            answers = row.get("answers", {})
            texts = answers.get("text", []) if isinstance(answers, dict) else answers
            texts = [t for t in texts if t and t.strip()]
            if not texts:
                continue
            out.append(
                QAExample(
                    id=str(row.get("id", f"{split_name}-{i}")), context_id=_context_id(row["context"]),
                    context=row["context"], question=row["question"].strip(),
                    answers=tuple(dict.fromkeys(t.strip() for t in texts)), title=str(row.get("title", "")),
                )
            )
    return out


def _fetch_url(url: str) -> Path:
    """Download a data file once into the cache (atomic rename)."""
    from distill2edge.models.embedded import cache_dir

    target = cache_dir() / "data" / (hashlib.sha1(url.encode()).hexdigest()[:16] + "-" + Path(url).name)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            write_file_atomic(target, lambda tmp: urllib.request.urlretrieve(url, tmp))
        except OSError as e:
            raise DataError(f"could not download {url}: {e}") from None
    return target


def load_examples(cfg: DataConfig, warn: Callable[[str], None] = warn_stderr) -> list[QAExample]:
    """Read `cfg.source` in `cfg.format` (auto-detected from the name when `auto`), and check that the
    answers occur in their contexts (`data.answers_in_context`; warnings go to `warn`)."""
    source = cfg.source
    located: list[tuple[QAExample, str]]
    if source.startswith("embedded:"):
        if source != "embedded:telecom-qa":
            raise DataError(f"unknown embedded data set {source!r}; available: embedded:telecom-qa")
        located = [(ex, f"{source}: {ex.id}") for ex in load_embedded()]
    elif source.startswith("hf:") or cfg.format == "hf":
        located = [(ex, f"{source}: {ex.id}") for ex in load_hf(source.removeprefix("hf:"))]
    else:
        path = _fetch_url(source) if source.startswith(("http://", "https://")) else Path(source).expanduser()
        if not path.is_file():
            raise DataError(f"data file not found: {path} (data.source)")
        fmt = cfg.format
        if fmt == "auto":
            fmt = "jsonl" if path.suffix == ".jsonl" else "squad"
        located = read_jsonl_located(path) if fmt == "jsonl" else read_squad_located(path, cfg.include_impossible)
    if not located:
        raise DataError(f"{source}: no usable question/answer pairs found")
    check_answers_in_context(located, cfg.answers_in_context, warn)
    return [ex for ex, _where in located]


# ------------------------------------------------------------------------------------ splits
def split_by_context(examples: Iterable[QAExample], cfg: SplitConfig) -> dict[str, list[QAExample]]:
    """Assign whole contexts to train/validation/test by a seeded shuffle of the context ids.

    Deterministic for a given data set and seed, independent of the order examples were read in.
    """
    by_ctx: dict[str, list[QAExample]] = {}
    for ex in examples:
        by_ctx.setdefault(ex.context_id, []).append(ex)
    ids = sorted(by_ctx)
    random.Random(cfg.seed).shuffle(ids)
    n = len(ids)
    n_test = round(n * cfg.test)
    n_val = round(n * cfg.validation)
    if cfg.test > 0:
        n_test = max(n_test, 1)
    if cfg.validation > 0:
        n_val = max(n_val, 1)
    if n - n_test - n_val < 1:
        raise DataError(f"only {n} contexts: too few to split into train/validation/test")
    parts = {"test": ids[:n_test], "validation": ids[n_test : n_test + n_val], "train": ids[n_test + n_val :]}
    return {name: [ex for cid in cids for ex in by_ctx[cid]] for name, cids in parts.items()}


def prepare_splits(cfg: DataConfig, warn: Callable[[str], None] = warn_stderr) -> dict[str, list[QAExample]]:
    """Load, split by context and cap each split. Empty splits are errors (naming the split)."""
    splits = split_by_context(load_examples(cfg, warn), cfg.split)
    caps = {"train": cfg.max_train, "validation": cfg.max_validation, "test": cfg.max_test}
    for name, cap in caps.items():
        if cap is not None:
            splits[name] = splits[name][:cap]
    for name in ("train", "test"):
        if not splits[name]:
            raise DataError(f"{cfg.source}: the {name} split is empty (data.split / data.max_{name})")
    return splits


def write_jsonl(examples: Iterable[QAExample], path: Path) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(ex.to_json(), ensure_ascii=False) + "\n")


def read_split(path: Path) -> list[QAExample]:
    with path.open(encoding="utf-8") as fh:
        return [QAExample.from_json(json.loads(line)) for line in fh if line.strip()]
