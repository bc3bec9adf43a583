"""Answer probes: greedy answers to a few validation questions, scored while a model trains.

A falling loss does not say whether the model answers. A probe answers the first N validation
questions at each validation and records their token F1 and exact match next to the validation loss
(`train.eval_answers`), so a stage's learning curve has accuracy against steps and wall time.
The training loop only sees a callable (model -> {metric: value}); this module, on the evaluation side,
builds it, so training code does not import evaluation code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distill2edge.data.qa import QAExample
from distill2edge.evaluate.generate import generate_answers
from distill2edge.evaluate.metrics import score_predictions

Probe = Callable[[nn.Module], dict[str, float]]
ProbeFactory = Callable[[PreTrainedTokenizerBase], Probe | None]
PROBE_METRICS = ("token_f1", "exact_match")


def answer_probe(
    tok: PreTrainedTokenizerBase, examples: Sequence[QAExample], *, template: str, max_length: int,
    max_new_tokens: int, batch_size: int = 16, device: torch.device | str = "cpu",
) -> Probe:
    """A probe answering `examples` greedily (as `evaluate` does) and returning their mean token F1 and
    exact match (best over each question's references). The model's train/eval mode is restored."""
    if not examples:
        raise ValueError("an answer probe needs at least one question")
    references = [list(ex.answers) for ex in examples]

    def probe(model: nn.Module) -> dict[str, float]:
        was_training = model.training
        try:
            rows = generate_answers(
                cast(PreTrainedModel, model), tok, examples, template=template, max_length=max_length, max_new_tokens=max_new_tokens,
                batch_size=batch_size, device=device, progress=False,
            )
        finally:
            model.train(was_training)
        scores = score_predictions([r["prediction"] for r in rows], references, PROBE_METRICS)
        return {name: sum(values) / len(values) for name, values in scores.items()}

    return probe


def probe_factory(
    examples: Sequence[QAExample], count: int, *, template: str, max_length: int, max_new_tokens: int,
    batch_size: int = 16, device: torch.device | str = "cpu",
) -> ProbeFactory:
    """What a training stage calls with its student's tokenizer: a probe on the first `count` of
    `examples`, or None when `count` is 0 or there are no examples."""
    chosen = list(examples[:count])

    def make(tok: PreTrainedTokenizerBase) -> Probe | None:
        if not chosen:
            return None
        return answer_probe(tok, chosen, template=template, max_length=max_length, max_new_tokens=max_new_tokens,
                            batch_size=batch_size, device=device)

    return make
