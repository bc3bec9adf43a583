"""Classification with causal LMs: verbalizer scoring against a manual per-label loop, the training
format it shares with scoring, accuracy and macro-F1 against hand computations."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from distill2edge.data.classify import FINANCE_LABELS, ClassExample
from distill2edge.data.tokenize import collate
from distill2edge.evaluate.classify import (
    DEFAULT_CLASSIFY_TEMPLATE,
    accuracy,
    encode_prompt,
    encode_verbalizers,
    evaluate_classifier,
    first_token_ids,
    macro_f1,
    per_class,
    render_prompt,
    score_labels,
    verbalizer_targets,
)
from distill2edge.losses import causal_lm_ce

EXAMPLES = [
    ClassExample("a", "The cell reports the RSRP every twenty ms.", "positive"),
    ClassExample("b", "The AMF releases a PDU session.", "neutral"),
    ClassExample("c", "The gNB schedules uplink grants after a radio link failure.", "negative"),
    ClassExample("d", "Paging.", "neutral"),
    ClassExample("e", "The UE measures the SSB burst on the PDCCH.", "positive"),
]


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    return model, AutoTokenizer.from_pretrained(tiny_llama_dir)


def _manual_scores(model, tok, examples, labels, verbalizers, max_length=256):
    """One unpadded forward per (example, label), the reference `score_labels` must reproduce.
    Returns {"sum": [N, C], "mean": [N, C]}."""
    verbs = encode_verbalizers(tok, labels, verbalizers)
    out = {"sum": torch.empty(len(examples), len(labels)), "mean": torch.empty(len(examples), len(labels))}
    for i, ex in enumerate(examples):
        budget = max_length - max(map(len, verbs)) - 1  # room for the longest answer and EOS
        prompt = encode_prompt(tok, DEFAULT_CLASSIFY_TEMPLATE, ex.text, labels, budget)
        for j, v in enumerate(verbs):
            ids = torch.tensor([prompt + v])
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            lp = [logp[len(prompt) - 1 + k, tok_id].item() for k, tok_id in enumerate(v)]
            out["sum"][i, j], out["mean"][i, j] = sum(lp), sum(lp) / len(lp)
    return out


@pytest.fixture(scope="module")
def manual_finance(tiny):
    model, tok = tiny
    return _manual_scores(model, tok, EXAMPLES, FINANCE_LABELS, None)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_multi_token_scoring_equals_manual_loop(tiny, manual_finance, reduction):
    model, tok = tiny
    verbalizers = {c: " " + c for c in FINANCE_LABELS}  # 7-8 tokens each in the tiny vocabulary
    assert len({len(v) for v in encode_verbalizers(tok, FINANCE_LABELS, verbalizers)}) == 2
    res = score_labels(model, tok, EXAMPLES, labels=FINANCE_LABELS, verbalizers=verbalizers, batch_size=2,
                       reduction=reduction)
    manual = manual_finance[reduction]
    torch.testing.assert_close(res.log_probs, manual, atol=2e-4, rtol=1e-4)
    assert res.predictions == [FINANCE_LABELS[j] for j in manual.argmax(1).tolist()]
    assert res.labels == FINANCE_LABELS and len(res.latency_s) == len(EXAMPLES)
    assert all(t > 0 for t in res.latency_s)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_single_token_fast_path_equals_manual_loop(tiny_tokenizer_dir, make_tiny_model, arch):
    model = AutoModelForCausalLM.from_pretrained(make_tiny_model(arch)).eval()
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    labels = ("up", "down", "same")
    verbalizers = {"up": " the", "down": " cell", "same": " UE"}  # one token each
    assert all(len(v) == 1 for v in encode_verbalizers(tok, labels, verbalizers))
    res = score_labels(model, tok, EXAMPLES, labels=labels, verbalizers=verbalizers, batch_size=3)
    manual = _manual_scores(model, tok, EXAMPLES, labels, verbalizers)["sum"]
    torch.testing.assert_close(res.log_probs, manual, atol=2e-4, rtol=1e-4)
    firsts = first_token_ids(tok, labels, verbalizers)
    assert firsts == [tok(verbalizers[c], add_special_tokens=False)["input_ids"][0] for c in labels]


def test_training_targets_share_the_scoring_format(tiny):
    """-CE·n of a `verbalizer_targets` example is exactly the gold label's score."""
    model, tok = tiny
    feats = verbalizer_targets(tok, EXAMPLES, labels=FINANCE_LABELS, add_eos=False)
    res = score_labels(model, tok, EXAMPLES, labels=FINANCE_LABELS)
    for ex, feat, row in zip(EXAMPLES, feats, res.log_probs):
        n_answer = sum(1 for v in feat["labels"] if v != -100)
        gold = tok(" " + ex.label, add_special_tokens=False)["input_ids"]
        assert feat["input_ids"][-n_answer:] == gold and feat["labels"][-n_answer:] == gold
        assert feat["labels"][: len(feat["labels"]) - n_answer] == [-100] * (len(feat["labels"]) - n_answer)
        batch = collate([feat], tok.pad_token_id)
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            ce = causal_lm_ce(logits, batch["labels"])
        assert -ce.item() * n_answer == pytest.approx(row[FINANCE_LABELS.index(ex.label)].item(), abs=1e-3)
    with_eos = verbalizer_targets(tok, EXAMPLES[:1], labels=FINANCE_LABELS)[0]
    assert with_eos["input_ids"][-1] == tok.eos_token_id == with_eos["labels"][-1]
    with pytest.raises(ValueError, match="label 'bullish' is not one of"):
        verbalizer_targets(tok, [ClassExample("x", "t", "bullish")], labels=FINANCE_LABELS)


def test_prompts_and_verbalizer_checks(tiny):
    _, tok = tiny
    assert render_prompt("{text} ({labels})", "x", ["a", "b", "c"]) == "x (a, b or c)"
    with pytest.raises(ValueError, match=r"must contain \{text\}"):
        render_prompt("no slot", "x", ["a", "b"])
    long_text = " ".join(["The scheduler allocates resource blocks in LTE."] * 40)
    feats = verbalizer_targets(
        tok, [ClassExample("l", long_text, "neutral")], labels=FINANCE_LABELS, max_length=128
    )
    assert len(feats[0]["input_ids"]) <= 128 and feats[0]["labels"][-1] == tok.eos_token_id
    n_answer = sum(1 for v in feats[0]["labels"] if v != -100)
    prompt = tok.decode(feats[0]["input_ids"][:-n_answer], skip_special_tokens=True)
    # the text is cut, never the template around it
    assert prompt.startswith("Sentence: The scheduler") and prompt.endswith("\nAnswer:")
    with pytest.raises(ValueError, match="are a prefix of those of"):
        encode_verbalizers(tok, ["a", "b"], {"a": " cell", "b": " cells"})
    with pytest.raises(ValueError, match=r"no verbalizer for label\(s\) \['b'\]"):
        encode_verbalizers(tok, ["a", "b"], {"a": " cell"})
    with pytest.raises(ValueError, match="encodes to no tokens"):
        encode_verbalizers(tok, ["a", "b"], {"a": "", "b": " cell"})
    with pytest.raises(ValueError, match="share a first token"):
        first_token_ids(tok, ["a", "b"], {"a": " up", "b": " negative"})


def test_evaluate_classifier_writes_predictions(tiny, tmp_path):
    model, tok = tiny
    summary = evaluate_classifier(model, tok, EXAMPLES, tmp_path, labels=FINANCE_LABELS, batch_size=4)
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [ex.id for ex in EXAMPLES]
    assert set(rows[0]["log_probs"]) == set(FINANCE_LABELS)
    with (tmp_path / "scores.csv").open() as fh:
        correct = [int(r["correct"]) for r in csv.DictReader(fh)]
    assert summary["accuracy"] == pytest.approx(sum(correct) / len(EXAMPLES))
    gold, pred = [ex.label for ex in EXAMPLES], [r["prediction"] for r in rows]
    assert summary["macro_f1"] == pytest.approx(macro_f1(gold, pred, FINANCE_LABELS))
    assert sum(summary[f"predicted/{c}"] for c in FINANCE_LABELS) == pytest.approx(1.0)
    assert summary["n"] == 5 and summary["latency_ms"] > 0


# ------------------------------------------------------------------------------------ metrics
GOLD = ["pos", "pos", "neg", "neu", "neu", "neu"]
PRED = ["pos", "neu", "neg", "neu", "pos", "neu"]


def test_accuracy_and_macro_f1_by_hand():
    assert accuracy(GOLD, PRED) == pytest.approx(4 / 6)
    # pos: P = 1/2, R = 1/2 -> F1 1/2; neg: P = R = 1 -> 1; neu: P = 2/3, R = 2/3 -> 2/3
    assert macro_f1(GOLD, PRED) == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    # A label in the label set that never occurs nor is predicted counts as F1 0.
    assert macro_f1(GOLD, PRED, ["pos", "neg", "neu", "mixed"]) == pytest.approx((0.5 + 1 + 2 / 3) / 4)
    # Always answering the majority class: accuracy 1/2, but macro-F1 only (0 + 0 + 2/3) / 3.
    collapsed = ["neu"] * 6
    assert accuracy(GOLD, collapsed) == 0.5
    assert macro_f1(GOLD, collapsed) == pytest.approx((2 * 0.5 * 1 / 1.5) / 3)
    report = per_class(GOLD, collapsed, ["pos", "neg", "neu"])
    assert report["neu"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 3.0,
                             "predicted": 6.0}
    with pytest.raises(ValueError, match="equally long"):
        accuracy(GOLD, PRED[:-1])


def test_macro_f1_agrees_with_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = torch.Generator().manual_seed(0)
    names = ["a", "b", "c", "d"]
    gold = [names[i] for i in torch.randint(0, 4, (200,), generator=rng).tolist()]
    pred = [names[i] for i in torch.randint(0, 3, (200,), generator=rng).tolist()]  # never predicts d
    want = metrics.f1_score(gold, pred, labels=names, average="macro", zero_division=0)
    assert macro_f1(gold, pred, names) == pytest.approx(want)
    assert accuracy(gold, pred) == pytest.approx(metrics.accuracy_score(gold, pred))
