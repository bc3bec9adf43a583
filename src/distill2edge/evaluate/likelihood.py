"""Teacher-forced likelihood of the gold answers: a graded score for models whose greedy answers
all miss (a cut student early in training scores 0 EM/F1 whether it is close or far)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distill2edge.data.qa import QAExample
from distill2edge.data.tokenize import IGNORE_INDEX, collate, encode_for_training


@torch.no_grad()
def answer_cross_entropy(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, examples: Sequence[QAExample], *, template: str,
    max_length: int, batch_size: int = 8, device: torch.device | str = "cpu",
) -> float:
    """Mean cross-entropy (nats per answer token, EOS included) of each example's first gold answer
    given its prompt, over all answer tokens of `examples`. Lower is better; exp() is the perplexity."""
    model.eval()
    feats = [encode_for_training(tok, ex, template, max_length) for ex in examples]
    total, count = 0.0, 0
    for i in range(0, len(feats), batch_size):
        batch = {k: v.to(device) for k, v in collate(feats[i : i + batch_size], tok.pad_token_id).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        targets = batch["labels"][:, 1:]
        mask = targets != IGNORE_INDEX
        total += float(F.cross_entropy(logits[mask].float(), targets[mask], reduction="sum"))
        count += int(mask.sum())
    return total / max(count, 1)
