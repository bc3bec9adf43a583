"""Checks on the embedded telecom QA set (src/distill2edge/data/embedded/telecom_qa.json).

The set is original text written for this project. The last test makes sure no context shares a
10-word sequence with TeleQuAD (CC BY-ND, never to be copied here) when TeleQuAD is available locally.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest

MIN_CONTEXTS = 40
MIN_QUESTIONS = 300
CONTEXT_WORDS = (90, 170)
ANSWER_WORDS = (1, 12)
ANSWER_MAX_CHARS = 80
NGRAM = 10

TELEQUAD = Path(__file__).resolve().parents[3] / "shared/data/telequad/extractive/v4/TeleQuAD-v4-full.json"


@pytest.fixture(scope="module")
def doc() -> dict:
    path = resources.files("distill2edge") / "data/embedded/telecom_qa.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _questions(doc: dict):
    for ctx in doc["contexts"]:
        for q in ctx["questions"]:
            yield ctx, q


def test_header(doc):
    assert doc["name"] == "distill2edge-telecom-qa"
    assert doc["license"] == "Apache-2.0"
    assert doc["version"]
    assert "distill2edge" in doc["description"]


def test_sizes(doc):
    assert len(doc["contexts"]) >= MIN_CONTEXTS
    assert sum(len(c["questions"]) for c in doc["contexts"]) >= MIN_QUESTIONS
    assert all(c["questions"] for c in doc["contexts"])


def test_ids_unique(doc):
    ctx_ids = [c["id"] for c in doc["contexts"]]
    q_ids = [q["id"] for _, q in _questions(doc)]
    assert len(set(ctx_ids)) == len(ctx_ids)
    assert len(set(q_ids)) == len(q_ids)
    assert not set(ctx_ids) & set(q_ids)


def test_questions_unique(doc):
    texts = [" ".join(q["question"].lower().split()) for _, q in _questions(doc)]
    dupes = {t for t in texts if texts.count(t) > 1}
    assert not dupes


def test_contexts_unique_and_titled(doc):
    texts = [c["text"] for c in doc["contexts"]]
    titles = [c["title"] for c in doc["contexts"]]
    assert len(set(texts)) == len(texts)
    assert len(set(titles)) == len(titles)
    assert all(t.strip() for t in titles)


def test_offsets_match(doc):
    bad = [
        q["id"]
        for ctx, q in _questions(doc)
        if not isinstance(q["answer_start"], int)
        or q["answer_start"] < 0
        or ctx["text"][q["answer_start"] : q["answer_start"] + len(q["answer"])] != q["answer"]
    ]
    assert not bad


def test_answer_lengths(doc):
    lo, hi = ANSWER_WORDS
    bad = [
        q["id"]
        for _, q in _questions(doc)
        if q["answer"] != q["answer"].strip()
        or not lo <= len(q["answer"].split()) <= hi
        or len(q["answer"]) > ANSWER_MAX_CHARS
    ]
    assert not bad


def test_context_lengths(doc):
    lo, hi = CONTEXT_WORDS
    bad = {c["id"]: len(c["text"].split()) for c in doc["contexts"] if not lo <= len(c["text"].split()) <= hi}
    assert not bad


def test_questions_well_formed(doc):
    bad = [q["id"] for _, q in _questions(doc) if not q["question"].strip().endswith("?")]
    assert not bad


def _ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@pytest.mark.skipif(not TELEQUAD.exists(), reason="TeleQuAD not available locally")
def test_no_shared_text_with_telequad(doc):
    ours: dict[tuple[str, ...], str] = {}
    for ctx in doc["contexts"]:
        for g in _ngrams(ctx["text"]):
            ours[g] = ctx["id"]
    tq = json.loads(TELEQUAD.read_text(encoding="utf-8"))
    shared = set()
    for article in tq["data"]:
        for para in article["paragraphs"]:
            shared |= _ngrams(para["context"]) & ours.keys()
    assert not shared, sorted({ours[g] for g in shared})
