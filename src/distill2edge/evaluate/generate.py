"""Answer questions with a causal LM (greedy) and score the answers per question.

Outputs of `evaluate_model`: `predictions.jsonl` (id, prompt, question, reference(s), prediction,
latency) and `scores.csv` (question x metric) in `out_dir`, plus the summary it returns (metric means,
latency, and for Oracle-LLM metrics the judge that scored them).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from tqdm.auto import tqdm
from transformers import GenerationMixin, PreTrainedModel, PreTrainedTokenizerBase

from distill2edge.data.qa import QAExample
from distill2edge.data.qa_checks import answer_cut
from distill2edge.data.tokenize import collate, encode_for_generation
from distill2edge.evaluate.metrics import summarize


def clean_answer(text: str) -> str:
    """The answer is the first line of the continuation (models tend to go on with a new question)."""
    return text.strip().split("\n", 1)[0].strip()


@torch.no_grad()
def generate_answers(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, examples: Sequence[QAExample], *, template: str,
    max_length: int, max_new_tokens: int, batch_size: int = 8, device: torch.device | str = "cpu",
    progress: bool = True, desc: str = "generate",
) -> list[dict[str, Any]]:
    """Greedy answers, batched with left padding. Latency is per batch, divided by its size.

    Each result holds the prompt as the model saw it (context possibly cut), the raw continuation, the
    cleaned prediction, the prompt length in tokens and the latency in seconds.
    """
    model.eval()
    prompts = [encode_for_generation(tok, ex, template, max_length, max_new_tokens) for ex in examples]
    # Sorting by length keeps padding small; results are put back in the input order.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: dict[int, dict[str, Any]] = {}
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, dynamic_ncols=True):
        idx = order[start : start + batch_size]
        batch = collate([{"input_ids": prompts[i]} for i in idx], tok.pad_token_id, padding_side="left")
        batch = {k: v.to(device) for k, v in batch.items()}
        t0 = time.perf_counter()
        # A causal LM (`AutoModelForCausalLM`) generates; `PreTrainedModel` itself no longer has `generate`.
        out = cast(GenerationMixin, model).generate(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],  # collate's only keys here
            max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, stop_strings=["\n"], tokenizer=tok,
        )
        elapsed = time.perf_counter() - t0
        new_tokens = out[:, batch["input_ids"].shape[1] :]
        for row, i in enumerate(idx):
            text = tok.decode(new_tokens[row], skip_special_tokens=True)
            results[i] = {
                "prompt": tok.decode(prompts[i], skip_special_tokens=True), "raw": text,
                "prediction": clean_answer(text), "prompt_tokens": len(prompts[i]), "latency_s": elapsed / len(idx),
            }
    return [results[i] for i in range(len(examples))]


@torch.no_grad()
def sample_lines(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, prompt_ids: list[int], *, n: int, temperature: float,
    top_p: float, max_new_tokens: int, seed: int, device: torch.device | str = "cpu", first_line: bool = True,
    min_new_tokens: int = 0,
) -> list[tuple[str, bool]]:
    """`n` sampled continuations of one prompt, each cut to its first line, with whether it ended (a new
    line or EOS) within `max_new_tokens`. For a teacher writing new questions (`teacher_data`); answers
    stay greedy (`generate_answers`). `first_line=False` samples across new lines (passages): the whole
    continuation comes back, ended only by EOS, which `min_new_tokens` holds off that long. Draws from
    `seed` inside a forked RNG, so the result depends on the seed alone and the caller's random state is
    left as it was."""
    model.eval()
    ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    cuda = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        out = cast(GenerationMixin, model).generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=temperature, top_p=top_p,
            top_k=0, num_return_sequences=n, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
            stop_strings=["\n"] if first_line else None, tokenizer=tok,
        )
    results = []
    for row in out[:, ids.shape[1] :].tolist():
        text = tok.decode(row, skip_special_tokens=True)
        eos = tok.eos_token_id is not None and tok.eos_token_id in row
        results.append((clean_answer(text), "\n" in text or eos) if first_line else (text.strip(), eos))
    return results


def write_scores_csv(path: Path, ids: Sequence[str], scores: dict[str, list[float]]) -> None:
    """`scores.csv`: one row per question (id first), one column per metric, 6 decimals."""
    names = list(scores)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", *names])
        for i, qid in enumerate(ids):
            writer.writerow([qid, *(f"{scores[m][i]:.6f}" for m in names)])


def read_scores_csv(path: Path) -> tuple[list[str], dict[str, list[float]]]:
    """(question ids, {metric: per-question scores}) from a `scores.csv`; ValueError naming the file."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or not rows[0] or rows[0][0] != "id":
        raise ValueError(f"{path}: not a scores.csv (first column must be 'id')")
    names = rows[0][1:]
    try:
        values = [[float(v) for v in row[1:]] for row in rows[1:]]
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return [row[0] for row in rows[1:]], {m: [v[j] for v in values] for j, m in enumerate(names)}


def answers_cut(examples: Sequence[QAExample], gens: Sequence[dict[str, Any]]) -> int:
    """How many questions have a reference answer in their context but none in the prompt the model saw:
    contexts longer than `max_length` are cut at their end, so on long documents the answer is often
    gone (TeleQuAD: 346 of its 818 test questions at 256 tokens, 51 at 1024); see `data.qa_checks.answer_cut`."""
    return sum(answer_cut(ex, g["prompt"]) for ex, g in zip(examples, gens))


def evaluate_model(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, examples: Sequence[QAExample], out_dir: Path, *,
    template: str, max_length: int, max_new_tokens: int, metrics: Sequence[str], batch_size: int = 8,
    device: torch.device | str = "cpu", progress: bool = True, desc: str = "evaluate", judge: Any = None,
    metric_batch_size: int = 32,
) -> dict[str, Any]:
    """Generate, score, and write predictions.jsonl and scores.csv. Returns metric means (and latency).

    `metrics` may name groups ("ngram", "paper", "all", ...). Oracle-LLM metrics use `judge` (a `Judge`,
    or a `make_judge` spec built when first needed; the default judge when None); the summary then names
    it under "judge".
    """
    from distill2edge.evaluate.registry import EvalRecord, ScoringContext, metric_group, score_records

    gens = generate_answers(
        model, tok, examples, template=template, max_length=max_length, max_new_tokens=max_new_tokens,
        batch_size=batch_size, device=device, progress=progress, desc=desc,
    )
    records = [EvalRecord(g["prediction"], tuple(ex.answers), ex.question, ex.context) for ex, g in zip(examples, gens)]
    ctx = ScoringContext(judge=judge, batch_size=metric_batch_size, device=str(device), progress=progress)
    scores = score_records(records, metrics, context=ctx)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "predictions.jsonl").open("w", encoding="utf-8") as fh:
        for ex, g in zip(examples, gens):
            rec = {"id": ex.id, "question": ex.question, "reference": ex.answers[0] if ex.answers else "",
                   "references": list(ex.answers), **g}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    write_scores_csv(out_dir / "scores.csv", [ex.id for ex in examples], scores)
    summary: dict[str, Any] = dict(summarize(scores))
    summary["latency_ms"] = 1000 * sum(g["latency_s"] for g in gens) / len(gens)
    summary["n"] = len(examples)
    summary["answers_cut"] = answers_cut(examples, gens)
    if any(metric_group(m) == "llm" for m in scores):
        summary["judge"] = ctx.judge.name
        summary["judge_unparsed"] = ctx.judge.stats.get("unparsed", 0)
    summary["metric_time_s"] = {m: round(t, 3) for m, t in ctx.timings.items()}
    return summary
