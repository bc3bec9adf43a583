"""Classification with causal LMs: each label is a verbalizer (e.g. " positive") scored by its
log-likelihood after the prompt, so no free text is parsed; plus accuracy and macro-F1.

Training and scoring share one answer format: `verbalizer_targets` builds SFT/KD examples as
prompt ids + verbalizer ids (+ EOS), and `score_labels` scores exactly those prompt ids followed by
each verbalizer's ids (tokenized separately, then concatenated, as `data.tokenize.encode_for_training`
does for QA answers).

Score = **sum** of the verbalizer tokens' log-probabilities, i.e. log P(verbalizer | prompt): the
probability of the exact answer string the model was trained to emit. `reduction="mean"` (per-token
average) is offered for zero-shot use of verbalizers of very different lengths, where the sum
penalises the longer one for its length alone.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distill2edge.config import CLASSIFY_TEMPLATE
from distill2edge.data.classify import ClassExample
from distill2edge.data.tokenize import IGNORE_INDEX, pad_token_id

DEFAULT_CLASSIFY_TEMPLATE = CLASSIFY_TEMPLATE
"""`{text}` is the example; `{labels}` lists the labels ("negative, neutral or positive")."""


def default_verbalizers(labels: Sequence[str]) -> dict[str, str]:
    """Each label as its own answer word after one space: {"positive": " positive", ...}."""
    return {c: " " + c for c in labels}


def render_prompt(template: str, text: str, labels: Sequence[str]) -> str:
    if "{text}" not in template:
        raise ValueError("a classification prompt template must contain {text}")
    listed = ", ".join(labels[:-1]) + " or " + labels[-1] if len(labels) > 1 else "".join(labels)
    return template.format(text=text, labels=listed)


def encode_prompt(
    tok: PreTrainedTokenizerBase, template: str, text: str, labels: Sequence[str], budget: int
) -> list[int]:
    """Prompt ids (tokenizer's BOS convention) in at most `budget` tokens; the text is cut at its end."""
    ids = tok(render_prompt(template, text, labels), add_special_tokens=True)["input_ids"]
    text_ids = tok(text, add_special_tokens=False)["input_ids"]
    keep = len(text_ids)
    for _ in range(8):
        if len(ids) <= budget:
            return ids
        keep -= len(ids) - budget
        if keep <= 0:
            raise ValueError(f"the prompt without its text needs more than {budget} tokens; raise max_length")
        cut = tok.decode(text_ids[:keep], skip_special_tokens=True)
        ids = tok(render_prompt(template, cut, labels), add_special_tokens=True)["input_ids"]
    raise ValueError(f"could not fit the prompt into {budget} tokens")


def encode_verbalizers(
    tok: PreTrainedTokenizerBase, labels: Sequence[str], verbalizers: Mapping[str, str] | None = None
) -> list[list[int]]:
    """Token ids of each label's verbalizer, in `labels` order.

    Refused: a label without a verbalizer, an empty one, two with the same ids, or one whose ids are a
    prefix of another's (scored without EOS, the shorter one would be a part of the longer).
    """
    verbalizers = dict(verbalizers or default_verbalizers(labels))
    missing = [c for c in labels if c not in verbalizers]
    if missing:
        raise ValueError(f"no verbalizer for label(s) {missing}")
    out = [tok(verbalizers[c], add_special_tokens=False)["input_ids"] for c in labels]
    for c, ids in zip(labels, out):
        if not ids:
            raise ValueError(f"the verbalizer of {c!r} ({verbalizers[c]!r}) encodes to no tokens")
    for i, a in enumerate(out):
        for j, b in enumerate(out):
            if i != j and b[: len(a)] == a:
                raise ValueError(
                    f"the verbalizer tokens of {labels[i]!r} {a} are a prefix of those of {labels[j]!r} {b}"
                )
    return out


def first_token_ids(
    tok: PreTrainedTokenizerBase, labels: Sequence[str], verbalizers: Mapping[str, str] | None = None
) -> list[int]:
    """Each label's first verbalizer token (for training-time class scores); they must be distinct."""
    firsts = [ids[0] for ids in encode_verbalizers(tok, labels, verbalizers)]
    if len(set(firsts)) != len(firsts):
        raise ValueError(f"verbalizers of {list(labels)} share a first token ({firsts}); choose other words")
    return firsts


def verbalizer_targets(
    tok: PreTrainedTokenizerBase, examples: Sequence[ClassExample], *, labels: Sequence[str],
    template: str = DEFAULT_CLASSIFY_TEMPLATE, verbalizers: Mapping[str, str] | None = None,
    max_length: int = 256, add_eos: bool = True,
) -> list[dict[str, list[int]]]:
    """SFT/KD examples whose answer is the gold label's verbalizer: {input_ids, labels}, labels = -100
    on the prompt (the format of `encode_for_training`, ready for `data.tokenize.collate`)."""
    encoded = encode_verbalizers(tok, labels, verbalizers)
    verbs, budget = dict(zip(labels, encoded)), _prompt_budget(max_length, encoded)
    eos = [tok.eos_token_id] if add_eos and tok.eos_token_id is not None else []
    out = []
    for ex in examples:
        if ex.label not in verbs:
            raise ValueError(f"example {ex.id}: label {ex.label!r} is not one of {list(labels)}")
        answer = verbs[ex.label] + eos
        prompt = encode_prompt(tok, template, ex.text, labels, budget)
        out.append({"input_ids": prompt + answer, "labels": [IGNORE_INDEX] * len(prompt) + answer})
    return out


def _prompt_budget(max_length: int, verbs: Sequence[Sequence[int]]) -> int:
    """Prompt tokens allowed: room for the longest verbalizer and an EOS, whatever the label, so training
    and scoring cut a long text at the same place."""
    budget = max_length - max(len(v) for v in verbs) - 1
    if budget < 1:
        raise ValueError(f"max_length {max_length} leaves no room for a prompt")
    return budget


@dataclass(frozen=True)
class LabelScores:
    """labels [C]; log_probs [N, C] float32 (score of each label); predictions [N]; latency_s [N]."""

    labels: tuple[str, ...]
    log_probs: torch.Tensor
    predictions: list[str]
    latency_s: list[float]


def _left_pad(rows: list[list[int]], pad_id: int, device: torch.device | str) -> dict[str, torch.Tensor]:
    """Left-padded input_ids, attention_mask and position_ids (counting real tokens only), [R, W]."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": pos}


@torch.no_grad()
def score_labels(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, examples: Sequence[ClassExample], *,
    labels: Sequence[str], template: str = DEFAULT_CLASSIFY_TEMPLATE,
    verbalizers: Mapping[str, str] | None = None, max_length: int = 256, batch_size: int = 8,
    reduction: Literal["sum", "mean"] = "sum", device: torch.device | str = "cpu", progress: bool = False,
) -> LabelScores:
    """Score every label's verbalizer after each example's prompt; predict the highest-scoring label.

    Rows are left-padded (with explicit position ids) so every verbalizer ends in the last column and
    only the last `max verbalizer length + 1` positions' logits are computed. When every verbalizer is
    one token, one row per example (the prompt) serves all labels. Ties go to the earlier label.
    Latency is each batch's forward time divided by its number of examples.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    model.eval()
    verbs = encode_verbalizers(tok, labels, verbalizers)
    n_lab, max_v = len(labels), max(len(v) for v in verbs)
    pad_id = pad_token_id(tok)
    budget = _prompt_budget(max_length, verbs)
    prompts = [encode_prompt(tok, template, ex.text, labels, budget) for ex in examples]
    single = max_v == 1
    scores = torch.empty(len(examples), n_lab, dtype=torch.float32)
    latency = [0.0] * len(examples)
    for start in tqdm(range(0, len(examples), batch_size), disable=not progress, desc="classify"):
        idx = list(range(start, min(start + batch_size, len(examples))))
        rows = [prompts[i] for i in idx] if single else [prompts[i] + v for i in idx for v in verbs]
        batch = _left_pad(rows, pad_id, device)
        t0 = time.perf_counter()
        logits = model(**batch, logits_to_keep=1 if single else max_v + 1).logits
        logp = torch.log_softmax(logits.float(), dim=-1)  # [R, K, V]
        if single:
            ids = torch.tensor([v[0] for v in verbs], device=logp.device)
            block = logp[:, -1, ids]  # [n, C]
        else:
            per_row = []
            for r in range(len(rows)):
                v = verbs[r % n_lab]
                cols = torch.arange(max_v - len(v), max_v, device=logp.device)  # kept positions predicting v
                tok_lp = logp[r, cols, torch.tensor(v, device=logp.device)]
                per_row.append(tok_lp.sum() if reduction == "sum" else tok_lp.mean())
            block = torch.stack(per_row).view(len(idx), n_lab)
        elapsed = time.perf_counter() - t0
        scores[idx] = block.cpu()
        for i in idx:
            latency[i] = elapsed / len(idx)
    preds = [labels[j] for j in scores.argmax(dim=1).tolist()]
    return LabelScores(tuple(labels), scores, preds, latency)


# ------------------------------------------------------------------------------------ metrics
def accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Fraction of exact label matches."""
    if len(y_true) != len(y_pred) or not y_true:
        raise ValueError(f"need two equally long non-empty label lists, got {len(y_true)} and {len(y_pred)}")
    return float(np.mean(np.asarray(y_true, dtype=object) == np.asarray(y_pred, dtype=object)))


def per_class(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]
) -> dict[str, dict[str, float]]:
    """precision, recall, f1, support (true count) and predicted (predicted count) per label.

    A ratio with a zero denominator is 0 (scikit-learn's `zero_division=0`).
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"label lists differ in length: {len(y_true)} and {len(y_pred)}")
    t, p = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    out: dict[str, dict[str, float]] = {}
    for c in labels:
        tp = float(np.sum((t == c) & (p == c)))
        n_true, n_pred = float(np.sum(t == c)), float(np.sum(p == c))
        prec = tp / n_pred if n_pred else 0.0
        rec = tp / n_true if n_true else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        out[c] = {"precision": prec, "recall": rec, "f1": f1, "support": n_true, "predicted": n_pred}
    return out


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None = None) -> float:
    """Unweighted mean of per-class F1 over `labels` (default: every label seen in either list).

    Plain numpy rather than scikit-learn: sklearn is not a dependency of the project, and this is the
    same definition as `f1_score(average="macro", labels=labels, zero_division=0)` (the tests compare).
    """
    if not y_true:
        raise ValueError("macro_f1 of an empty list")
    labels = list(labels) if labels is not None else sorted(set(y_true) | set(y_pred))
    return float(np.mean([v["f1"] for v in per_class(y_true, y_pred, labels).values()]))


def evaluate_classifier(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, examples: Sequence[ClassExample], out_dir: Path, *,
    labels: Sequence[str], template: str = DEFAULT_CLASSIFY_TEMPLATE,
    verbalizers: Mapping[str, str] | None = None, max_length: int = 256, batch_size: int = 8,
    device: torch.device | str = "cpu", progress: bool = False,
) -> dict[str, float]:
    """Score, then write `predictions.jsonl` (id, text, label, prediction, log_probs, latency_s) and
    `scores.csv` (id, correct) in `out_dir`. Returns accuracy, macro_f1, per-class recall
    (`recall/<label>`), the predicted-class share (`predicted/<label>`), latency_ms and n."""
    res = score_labels(
        model, tok, examples, labels=labels, template=template, verbalizers=verbalizers,
        max_length=max_length, batch_size=batch_size, device=device, progress=progress,
    )
    gold = [ex.label for ex in examples]
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "predictions.jsonl").open("w", encoding="utf-8") as fh:
        for i, ex in enumerate(examples):
            rec = {
                "id": ex.id, "text": ex.text, "label": ex.label, "prediction": res.predictions[i],
                "log_probs": dict(zip(labels, res.log_probs[i].tolist())), "latency_s": res.latency_s[i],
            }
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    with (out_dir / "scores.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "correct"])
        for ex, pred in zip(examples, res.predictions):
            writer.writerow([ex.id, int(pred == ex.label)])
    summary = {
        "accuracy": accuracy(gold, res.predictions),
        "macro_f1": macro_f1(gold, res.predictions, labels),
    }
    for c, v in per_class(gold, res.predictions, labels).items():
        summary[f"recall/{c}"] = v["recall"]
        summary[f"predicted/{c}"] = v["predicted"] / len(examples)
    summary["latency_ms"] = 1000 * sum(res.latency_s) / len(examples)
    summary["n"] = float(len(examples))
    return summary
