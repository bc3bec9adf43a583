"""Classification data: the embedded finance-sentiment set (written for this project: fictional
companies, original sentences), PhraseBank / JSONL / CSV loaders, label validation, stratified split."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from pathlib import Path

import pytest

from distill2edge.data.classify import (
    FINANCE_LABELS,
    ClassExample,
    label_counts,
    load_class_csv,
    load_class_jsonl,
    load_classification,
    load_finance_sentiment,
    load_phrasebank,
    stratified_split,
    validate_labels,
    write_class_jsonl,
)
from distill2edge.data.qa import DataError

# PhraseBank's all-agree file is about 61% neutral, 25% positive, 13% negative (Malo et al., 2014).
SHARE_RANGES = {"neutral": (0.55, 0.65), "positive": (0.24, 0.32), "negative": (0.09, 0.15)}


@pytest.fixture(scope="module")
def finance() -> list[ClassExample]:
    return load_finance_sentiment()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def test_embedded_size_and_label_shares(finance):
    assert len(finance) >= 300
    counts = label_counts(finance)
    assert set(counts) == set(FINANCE_LABELS)
    for label, (lo, hi) in SHARE_RANGES.items():
        assert lo <= counts[label] / len(finance) <= hi, (label, counts)
    validate_labels(finance, FINANCE_LABELS, where="embedded")


def test_embedded_has_no_duplicates_or_templates(finance):
    norm = [" ".join(_words(ex.text)) for ex in finance]
    assert len(set(norm)) == len(norm), "duplicate sentences"
    assert len({ex.id for ex in finance}) == len(finance)
    # No two sentences share most of their words (a template with the names swapped would).
    words = [set(_words(ex.text)) for ex in finance]
    worst = max(len(a & b) / len(a | b) for a, b in itertools.combinations(words, 2))
    assert worst < 0.5
    # No 6-word sequence is repeated more than twice across the set.
    grams = Counter(g for w in map(_words, (ex.text for ex in finance))
                    for g in {tuple(w[i : i + 6]) for i in range(len(w) - 5)})
    assert max(grams.values()) <= 2
    # Sentence openings are varied: no 3-word start opens more than 3% of the sentences.
    starts = Counter(tuple(_words(ex.text)[:3]) for ex in finance)
    assert max(starts.values()) <= 0.03 * len(finance)


def test_phrasebank_latin1_and_errors(tmp_path):
    p = tmp_path / "Sentences_AllAgree.txt"
    lines = [
        "Operating profit rose to EUR 3.1 mn from EUR 2.0 mn .@positive",
        "The company is based in Espoo , Finland .@neutral",
        "Net sales fell 5 % in Ålesund @ the harbour .@negative",  # '@' inside the sentence
        "The company is based in Espoo , Finland .@neutral",  # repeated line: kept once
    ]
    p.write_bytes(("\r\n".join(lines) + "\r\n").encode("latin-1"))
    exs = load_phrasebank(p)
    assert [e.label for e in exs] == ["positive", "neutral", "negative"]
    assert exs[2].text == "Net sales fell 5 % in Ålesund @ the harbour ."
    assert exs[0].id == "Sentences_AllAgree-1"

    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine .@neutral\nno label separator here\n")
    with pytest.raises(DataError, match=r"bad.txt:2: expected 'sentence@label'"):
        load_phrasebank(bad)
    bad.write_bytes(b"fine .@neutral\n\nodd .@bullish\n")
    with pytest.raises(DataError, match=r"bad.txt:3: unknown label 'bullish'"):
        load_phrasebank(bad)


def test_jsonl_and_csv_loaders(tmp_path):
    exs = [ClassExample("a", "Sales rose.", "positive"), ClassExample("b", "Office moved.", "neutral")]
    jp = tmp_path / "d.jsonl"
    write_class_jsonl(exs, jp)
    assert load_class_jsonl(jp) == exs
    assert load_classification(str(jp)) == exs

    cp = tmp_path / "d.csv"
    cp.write_text('text,label\n"Sales rose, again.",positive\nOffice moved.,neutral\n', encoding="utf-8")
    got = load_classification(str(cp))
    assert [(e.id, e.text, e.label) for e in got] == [("d-2", "Sales rose, again.", "positive"),
                                                     ("d-3", "Office moved.", "neutral")]

    cp.write_text("sentence,label\nx,neutral\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d.csv:1: the header must name the columns text and label"):
        load_class_csv(cp)
    cp.write_text("text,label\nx,neutral\n,positive\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d.csv:3: empty text or label"):
        load_class_csv(cp)
    jp.write_text('{"text": "x", "label": "neutral"}\n{"text": "y"}\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: missing or empty string field\(s\): label"):
        load_class_jsonl(jp)
    with pytest.raises(DataError, match="data file not found"):
        load_classification(str(tmp_path / "missing.jsonl"))
    with pytest.raises(DataError, match="unknown embedded data set"):
        load_classification("embedded:nope")
    assert len(load_classification("embedded:finance-sentiment")) >= 300


def test_validate_labels():
    exs = [ClassExample("a", "x", "positive"), ClassExample("b", "y", "neutral")]
    with pytest.raises(DataError, match="no example has the label.*negative"):
        validate_labels(exs, FINANCE_LABELS)
    with pytest.raises(DataError, match="example c: label 'bullish'"):
        validate_labels([*exs, ClassExample("c", "z", "bullish")], FINANCE_LABELS)
    with pytest.raises(DataError, match="duplicate example id"):
        validate_labels([*exs, ClassExample("a", "z", "negative")], FINANCE_LABELS)
    with pytest.raises(DataError, match="at least 2 distinct labels"):
        validate_labels(exs, ["positive", "positive"])


def test_stratified_split_is_deterministic_and_stratified(finance):
    splits = stratified_split(finance, validation=0.1, test=0.2, seed=7)
    ids = [e.id for part in splits.values() for e in part]
    assert sorted(ids) == sorted(e.id for e in finance)  # a partition
    total = label_counts(finance)
    for name, frac in (("test", 0.2), ("validation", 0.1)):
        counts = label_counts(splits[name])
        for label, n in total.items():
            assert counts[label] == round(n * frac)  # per class, not just overall
    # Order of input does not matter; the seed does.
    again = stratified_split(list(reversed(finance)), validation=0.1, test=0.2, seed=7)
    def ids(parts):
        return {k: [e.id for e in v] for k, v in parts.items()}

    assert ids(again) == ids(splits)
    other = stratified_split(finance, validation=0.1, test=0.2, seed=8)
    assert [e.id for e in other["test"]] != [e.id for e in splits["test"]]


def test_stratified_split_small_classes_and_bad_fractions():
    exs = [ClassExample(f"n{i}", f"n {i}", "neutral") for i in range(20)]
    exs += [ClassExample(f"p{i}", f"p {i}", "positive") for i in range(3)]
    splits = stratified_split(exs, validation=0.1, test=0.1, seed=0)
    for part in splits.values():
        assert "positive" in label_counts(part)  # 3 examples: one in each split
    with pytest.raises(DataError, match="split fractions"):
        stratified_split(exs, validation=0.6, test=0.5)


def test_embedded_file_is_packaged():
    path = Path(__file__).resolve().parents[2] / "src/distill2edge/data/embedded/finance_sentiment.jsonl"
    assert path.is_file()
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"data/embedded/*.jsonl"' in pyproject


# ------------------------------------------------------------------ the classification data stage
def test_classification_data_config_defaults_and_errors():
    from pydantic import ValidationError

    from distill2edge.config import CLASSIFY_TEMPLATE, QA_TEMPLATE, DataConfig

    cfg = DataConfig(task="classification", source="embedded:finance-sentiment")
    assert cfg.prompt_template == CLASSIFY_TEMPLATE and cfg.label_set() == ["negative", "neutral", "positive"]
    assert DataConfig().prompt_template == QA_TEMPLATE and "task" not in DataConfig().model_dump()
    assert cfg.model_dump()["task"] == "classification"
    bad = [
        ({"task": "classification", "prompt_template": "{question}", "labels": ["a", "b"]}, "must contain {text}"),
        ({"task": "classification", "format": "telequad", "labels": ["a", "b"]}, "classification reads auto, jsonl, csv, phrasebank"),
        ({"task": "classification", "labels": ["a", "a"]}, "at least 2 distinct labels"),
        ({"task": "classification", "labels": ["a", "b"], "verbalizers": {"a": " A"}}, r"missing \['b'\]"),
        ({"labels": ["a", "b"]}, "belong to task: classification"),
        ({"format": "phrasebank"}, "is for classification data"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValidationError, match=message):
            DataConfig(**kwargs)
    with pytest.raises(ValidationError, match="set data.labels"):
        DataConfig(task="classification", source="mine.jsonl")


def test_prepare_class_splits_caps_keep_every_label(tmp_path):
    from distill2edge.config import DataConfig
    from distill2edge.data.classify import prepare_class_splits
    from distill2edge.data.splits import prepare_data, read_data

    full = prepare_class_splits(DataConfig(task="classification", source="embedded:finance-sentiment"))
    assert [len(full[s]) for s in ("train", "validation", "test")] == [252, 37, 72]
    cfg = DataConfig(task="classification", source="embedded:finance-sentiment", max_train=20, max_test=10)
    capped = prepare_class_splits(cfg)
    assert len(capped["train"]) == 20 and len(capped["test"]) == 10
    counts = label_counts(capped["train"])
    assert counts["neutral"] > counts["positive"] > counts["negative"] >= 1  # proportions kept, rare label kept
    metrics = prepare_data(cfg, tmp_path)
    assert metrics["train_examples"] == 20 and metrics["test_labels"] == label_counts(capped["test"])
    back = read_data(cfg, tmp_path)
    assert back["train"] == capped["train"] and back["validation"] == full["validation"]
