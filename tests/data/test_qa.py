import json
from pathlib import Path

import pytest

from distill2edge.config import DataConfig, SplitConfig
from distill2edge.data.qa import (
    DataError,
    QAExample,
    load_embedded,
    load_jsonl,
    load_squad_json,
    prepare_splits,
    split_by_context,
)

TELEQUAD = Path(__file__).resolve().parents[3] / "shared/data/telequad/extractive/v4/TeleQuAD-v4-full.json"


def _squad(tmp_path: Path) -> Path:
    ctx = "The AMF handles registration. The SMF manages sessions."
    doc = {"data": [{"title": "core", "paragraphs": [{"context": ctx, "qas": [
        {"id": "a", "question": "What handles registration?", "is_impossible": False,
         "answers": [{"text": "The AMF", "answer_start": 0}]},
        {"id": "b", "question": "What manages sessions?", "is_impossible": "True",
         "answers": [{"text": "The SMF", "answer_start": 3}]},  # flagged impossible, wrong offset
        {"id": "c", "question": "No answer?", "is_impossible": True, "answers": []},
    ]}]}]}
    p = tmp_path / "d.json"
    p.write_text(json.dumps(doc))
    return p


def test_squad_quirks(tmp_path):
    exs = {e.id: e for e in load_squad_json(_squad(tmp_path))}
    assert set(exs) == {"a", "b"}  # the question with no answer is skipped
    assert exs["b"].answers == ("The SMF",) and exs["b"].meta == {"is_impossible": True, "offset_mismatch": True}
    assert exs["a"].meta["offset_mismatch"] is False
    assert {e.id for e in load_squad_json(_squad(tmp_path), include_impossible=False)} == {"a"}


def test_jsonl_errors_name_file_and_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"context": "c", "question": "q", "answer": "a"}\n\n{"context": "c", "question": \n')
    with pytest.raises(DataError, match=r"x.jsonl:3: not valid JSON"):
        load_jsonl(p)
    p.write_text('{"context": "c", "question": "q"}\n')
    with pytest.raises(DataError, match=r"x.jsonl:1: missing .*answer"):
        load_jsonl(p)
    p.write_text('{"context": "c", "question": "q", "answers": ["a", "b"]}\n')
    assert load_jsonl(p)[0].answers == ("a", "b")


def test_missing_file_and_empty_split(tmp_path):
    with pytest.raises(DataError, match="data file not found: .*nope.json"):
        prepare_splits(DataConfig(source=str(tmp_path / "nope.json")))
    p = tmp_path / "x.jsonl"
    p.write_text("".join(json.dumps({"context": f"c{i}", "question": "q", "answer": "a"}) + "\n" for i in range(2)))
    with pytest.raises(DataError, match="too few to split"):
        prepare_splits(DataConfig(source=str(p)))


def _examples(n_ctx: int, per: int) -> list[QAExample]:
    return [QAExample(f"{c}-{q}", f"ctx{c}", f"context {c}", f"q{q}", ("a",)) for c in range(n_ctx) for q in range(per)]


def test_split_by_context_is_disjoint_and_deterministic():
    exs = _examples(40, 5)
    cfg = SplitConfig(validation=0.1, test=0.2, seed=7)
    a = split_by_context(exs, cfg)
    b = split_by_context(list(reversed(exs)), cfg)
    ctx = {k: {e.context_id for e in v} for k, v in a.items()}
    assert ctx == {k: {e.context_id for e in v} for k, v in b.items()}
    assert not (ctx["train"] & ctx["test"]) and not (ctx["train"] & ctx["validation"]) and not (ctx["test"] & ctx["validation"])
    assert (len(ctx["train"]), len(ctx["validation"]), len(ctx["test"])) == (28, 4, 8)
    assert sum(len(v) for v in a.values()) == 200
    assert split_by_context(exs, SplitConfig(validation=0.1, test=0.2, seed=8)) != a


def test_embedded_default_splits():
    splits = prepare_splits(DataConfig())
    assert all(splits[k] for k in ("train", "validation", "test"))
    assert len(load_embedded()) == sum(len(v) for v in splits.values())


@pytest.mark.skipif(not TELEQUAD.exists(), reason="TeleQuAD is not beside the repository")
def test_telequad_loads_with_its_quirks():
    exs = load_squad_json(TELEQUAD)
    # 4,485 questions; 9 of the 223 flagged `is_impossible` have only an empty answer string and are
    # skipped, the other 214 carry real answers and are kept.
    assert len(exs) == 4485 - 9
    assert sum(e.meta["is_impossible"] for e in exs) == 214
    assert sum(e.meta["offset_mismatch"] for e in exs) == 2
    splits = prepare_splits(DataConfig(source=str(TELEQUAD)))
    assert not ({e.context_id for e in splits["train"]} & {e.context_id for e in splits["test"]})
