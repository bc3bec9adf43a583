"""Text-classification data: the embedded finance-sentiment set, Financial PhraseBank files, JSONL and
CSV, label-set validation and a deterministic stratified split.

Financial PhraseBank (Malo et al., 2014) is not shipped (its licence forbids redistribution here); a
recipe points at a local `Sentences_*Agree.txt` file. Those files hold one `sentence@label` per line
in Latin-1.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from distill2edge.config import DataConfig
from distill2edge.data.qa import DataError

FINANCE_LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
"""Label set of the finance-sentiment recipes (embedded set and PhraseBank), in a fixed order."""

EMBEDDED_CLASSIFICATION = {"embedded:finance-sentiment": "finance_sentiment.jsonl"}


@dataclass(frozen=True)
class ClassExample:
    """One labelled text."""

    id: str
    text: str
    label: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


# ----------------------------------------------------------------------------------- loaders
def _read_jsonl(lines: Iterable[str], where: str) -> list[ClassExample]:
    out: list[ClassExample] = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}:{lineno}: not valid JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{where}:{lineno}: expected a JSON object")
        bad = [k for k in ("text", "label") if not isinstance(rec.get(k), str) or not rec[k].strip()]
        if bad:
            raise DataError(f"{where}:{lineno}: missing or empty string field(s): {', '.join(bad)}")
        stem = Path(where).stem
        ex_id = str(rec.get("id", f"{stem}-{lineno}"))
        out.append(ClassExample(ex_id, rec["text"].strip(), rec["label"].strip()))
    return out


def load_embedded_classification(name: str = "embedded:finance-sentiment") -> list[ClassExample]:
    """A labelled set shipped inside the package (written for this project)."""
    if name not in EMBEDDED_CLASSIFICATION:
        known = ", ".join(EMBEDDED_CLASSIFICATION)
        raise DataError(f"unknown embedded data set {name!r}; available: {known}")
    path = resources.files("distill2edge") / "data" / "embedded" / EMBEDDED_CLASSIFICATION[name]
    return _read_jsonl(path.read_text(encoding="utf-8").splitlines(), str(path))


def load_finance_sentiment() -> list[ClassExample]:
    """The embedded 3-class financial-news sentiment set (labels `FINANCE_LABELS`)."""
    return load_embedded_classification("embedded:finance-sentiment")


def load_class_jsonl(path: Path) -> list[ClassExample]:
    """One JSON object per line with `text` and `label` (optional `id`). Errors name file and line."""
    with path.open(encoding="utf-8") as fh:
        return _read_jsonl(fh, str(path))


def load_class_csv(path: Path) -> list[ClassExample]:
    """A CSV file with a header holding `text` and `label` columns (optional `id`)."""
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("text", "label") if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(
                f"{path}:1: the header must name the columns text and label (missing: {', '.join(missing)})"
            )
        out = []
        for row in reader:
            line = reader.line_num
            text, label = (row.get("text") or "").strip(), (row.get("label") or "").strip()
            if not text or not label:
                raise DataError(f"{path}:{line}: empty text or label")
            out.append(ClassExample(str(row.get("id") or f"{path.stem}-{line}"), text, label))
    return out


def load_phrasebank(path: Path, encoding: str = "latin-1") -> list[ClassExample]:
    """Financial PhraseBank `sentence@label` lines (label positive/negative/neutral).

    The label follows the *last* `@` (a sentence may contain one). A sentence repeated with the same
    label is kept once (the agreement files hold a few repeats, which would otherwise straddle splits).
    """
    out: list[ClassExample] = []
    seen: set[tuple[str, str]] = set()
    with path.open(encoding=encoding, newline="") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            text, sep, label = line.rpartition("@")
            label = label.strip().lower()
            if not sep or not text.strip():
                raise DataError(f"{path}:{lineno}: expected 'sentence@label', got {line[:60]!r}")
            if label not in FINANCE_LABELS:
                raise DataError(
                    f"{path}:{lineno}: unknown label {label!r}; expected one of {', '.join(FINANCE_LABELS)}"
                )
            key = (text.strip(), label)
            if key in seen:
                continue
            seen.add(key)
            out.append(ClassExample(f"{path.stem}-{lineno}", text.strip(), label))
    return out


def load_classification(source: str, fmt: str = "auto") -> list[ClassExample]:
    """`embedded:NAME`, or a file read as `phrasebank` (.txt), `jsonl` or `csv` (`auto`: by suffix)."""
    if source.startswith("embedded:"):
        examples = load_embedded_classification(source)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise DataError(f"data file not found: {path} (data.source)")
        if fmt == "auto":
            fmt = {".txt": "phrasebank", ".jsonl": "jsonl", ".csv": "csv"}.get(path.suffix.lower(), "")
            if not fmt:
                raise DataError(f"{path}: cannot tell the format from the suffix; set data.format")
        loaders = {"phrasebank": load_phrasebank, "jsonl": load_class_jsonl, "csv": load_class_csv}
        if fmt not in loaders:
            raise DataError(f"unknown classification format {fmt!r}; known: {', '.join(loaders)}")
        examples = loaders[fmt](path)
    if not examples:
        raise DataError(f"{source}: no labelled examples found")
    return examples


# -------------------------------------------------------------------------------- validation
def validate_labels(examples: Sequence[ClassExample], labels: Sequence[str], where: str = "data") -> None:
    """Every example's label is in `labels`, ids are unique, and every label occurs at least once."""
    allowed = set(labels)
    if len(allowed) != len(labels) or len(labels) < 2:
        raise DataError(f"{where}: the label set must hold at least 2 distinct labels, got {list(labels)}")
    for ex in examples:
        if ex.label not in allowed:
            raise DataError(f"{where}: example {ex.id}: label {ex.label!r} is not one of {', '.join(labels)}")
    ids = Counter(ex.id for ex in examples)
    dup = [i for i, n in ids.items() if n > 1]
    if dup:
        raise DataError(f"{where}: duplicate example id(s): {', '.join(sorted(dup)[:5])}")
    absent = [c for c in labels if c not in {ex.label for ex in examples}]
    if absent:
        raise DataError(f"{where}: no example has the label(s) {', '.join(absent)}")


def label_counts(examples: Iterable[ClassExample]) -> dict[str, int]:
    """Label -> count, most frequent first."""
    return dict(Counter(ex.label for ex in examples).most_common())


# ------------------------------------------------------------------------------------ splits
def stratified_split(
    examples: Sequence[ClassExample], validation: float = 0.1, test: float = 0.2, seed: int = 1234
) -> dict[str, list[ClassExample]]:
    """Split each label's examples by the same fractions, so every split keeps the label proportions.

    Deterministic for a data set and seed, whatever order the examples were read in: each class is
    sorted by id, then shuffled with a seed derived from `seed` and the label. A split with a fraction
    > 0 gets at least one example of every class that has at least 3 examples. Each split is returned
    sorted by id.
    """
    if not (0 <= validation < 1 and 0 <= test < 1 and validation + test < 1):
        raise DataError(
            f"split fractions must be in [0, 1) and sum below 1, got validation={validation}, test={test}"
        )
    by_label: dict[str, list[ClassExample]] = {}
    for ex in examples:
        by_label.setdefault(ex.label, []).append(ex)
    parts: dict[str, list[ClassExample]] = {"train": [], "validation": [], "test": []}
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda e: e.id)
        random.Random(f"{seed}:{label}").shuffle(group)
        n = len(group)
        n_test, n_val = round(n * test), round(n * validation)
        if n >= 3:
            n_test = max(n_test, 1) if test > 0 else 0
            n_val = max(n_val, 1) if validation > 0 else 0
        n_test, n_val = min(n_test, n - 1), min(n_val, max(n - 1 - n_test, 0))
        parts["test"] += group[:n_test]
        parts["validation"] += group[n_test : n_test + n_val]
        parts["train"] += group[n_test + n_val :]
    return {k: sorted(v, key=lambda e: e.id) for k, v in parts.items()}


def write_class_jsonl(examples: Iterable[ClassExample], path: Path) -> None:
    """The format `load_class_jsonl` reads (used for the run folder's split files)."""
    with path.open("w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(ex.to_json(), ensure_ascii=False) + "\n")


def prepare_class_splits(cfg: DataConfig) -> dict[str, list[ClassExample]]:
    """Load `cfg.source`, check its labels against `cfg.label_set()`, split by label and cap each split."""
    examples = load_classification(cfg.source, cfg.format)
    labels = cfg.label_set()
    validate_labels(examples, labels, where=cfg.source)
    s = cfg.split
    splits = stratified_split(examples, validation=s.validation, test=s.test, seed=s.seed)
    for name, cap in (("train", cfg.max_train), ("validation", cfg.max_validation), ("test", cfg.max_test)):
        if cap is not None:
            splits[name] = _stratified_head(splits[name], cap, labels)
    for name in ("train", "test"):
        if not splits[name]:
            raise DataError(f"{cfg.source}: the {name} split is empty (data.split / data.max_{name})")
    return splits


def _stratified_head(examples: list[ClassExample], n: int, labels: Sequence[str]) -> list[ClassExample]:
    """`n` examples keeping the label proportions: each label's examples are spread evenly over [0, 1)
    (the i-th of m at (i + 0.5) / m) and the `n` earliest are kept, so a cap keeps rare labels too."""
    groups = {c: [e for e in examples if e.label == c] for c in labels}
    ranked = sorted(
        ((i + 0.5) / len(g), labels.index(c), e) for c, g in groups.items() for i, e in enumerate(g)
    )
    return sorted((e for _, _, e in ranked[:n]), key=lambda e: e.id)
