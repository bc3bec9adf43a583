"""Answer questions with a causal LM (greedy) and score the answers per question.

Outputs of `evaluate_model`: `predictions.jsonl` (id, question, reference, prediction, latency) and
`scores.csv` (question x metric) in `out_dir`, plus the summary it returns.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distill2edge.data.qa import QAExample
from distill2edge.data.tokenize import collate, encode_for_generation
from distill2edge.evaluate.metrics import score_predictions, summarize


def clean_answer(text: str) -> str:
    """The answer is the first line of the continuation (models tend to go on with a new question)."""
    return text.strip().split("\n", 1)[0].strip()


@torch.no_grad()
def generate_answers(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, examples: Sequence[QAExample], *, template: str,
    max_length: int, max_new_tokens: int, batch_size: int = 8, device: torch.device | str = "cpu",
    progress: bool = True, desc: str = "generate",
) -> list[dict[str, Any]]:
    """Greedy answers, batched with left padding. Latency is per batch, divided by its size."""
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
        out = model.generate(
            **batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, stop_strings=["\n"], tokenizer=tok,
        )
        elapsed = time.perf_counter() - t0
        new_tokens = out[:, batch["input_ids"].shape[1] :]
        for row, i in enumerate(idx):
            text = tok.decode(new_tokens[row], skip_special_tokens=True)
            results[i] = {
                "raw": text, "prediction": clean_answer(text), "prompt_tokens": len(prompts[i]),
                "latency_s": elapsed / len(idx),
            }
    return [results[i] for i in range(len(examples))]


def evaluate_model(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, examples: Sequence[QAExample], out_dir: Path, *,
    template: str, max_length: int, max_new_tokens: int, metrics: Sequence[str], batch_size: int = 8,
    device: torch.device | str = "cpu", progress: bool = True, desc: str = "evaluate",
) -> dict[str, float]:
    """Generate, score, and write predictions.jsonl and scores.csv. Returns metric means (and latency)."""
    gens = generate_answers(
        model, tok, examples, template=template, max_length=max_length, max_new_tokens=max_new_tokens,
        batch_size=batch_size, device=device, progress=progress, desc=desc,
    )
    preds = [g["prediction"] for g in gens]
    scores = score_predictions(preds, [list(ex.answers) for ex in examples], metrics)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "predictions.jsonl").open("w", encoding="utf-8") as fh:
        for ex, g in zip(examples, gens):
            rec = {"id": ex.id, "question": ex.question, "references": list(ex.answers), **g}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    with (out_dir / "scores.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", *metrics])
        for i, ex in enumerate(examples):
            writer.writerow([ex.id, *(f"{scores[m][i]:.6f}" for m in metrics)])
    summary = summarize(scores)
    summary["latency_ms"] = 1000 * sum(g["latency_s"] for g in gens) / len(gens)
    summary["n"] = len(examples)
    return summary
