"""Text classification (`data.task: classification`): each label is a verbalizer word scored by
log-likelihood after the prompt.

Data: `data.classify` (embedded finance sentiment, Financial PhraseBank, JSONL, CSV; split per label).
Training target: the gold label's verbalizer. Evaluation: accuracy, macro-F1, per-label shares and the
latency per sentence (`evaluate.classify`). The torch-side module is imported by the members that use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill2edge.data.classify import (
    ClassExample,
    label_counts,
    load_class_jsonl,
    prepare_class_splits,
    write_class_jsonl,
)
from distill2edge.data.examples import examples_of
from distill2edge.tasks.base import Log, Rows, Task, param_count
from distill2edge.tasks.spec import task_spec

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from distill2edge.evaluate.probe import ProbeFactory
    from distill2edge.schema.data import DataConfig
    from distill2edge.schema.recipe import EvaluateConfig


class ClassificationTask(Task):
    """Text classification: `ClassExample` splits, verbalizer targets, label accuracy."""

    spec = task_spec("classification")

    def prepare_data(self, cfg: DataConfig, out: Path, log: Log | None) -> dict[str, Any]:
        """Stratified split; per split the example count and the count of each label."""
        splits = prepare_class_splits(cfg)
        for name, rows in splits.items():
            write_class_jsonl(rows, out / f"{name}.jsonl")
        metrics: dict[str, Any] = {f"{name}_examples": len(rows) for name, rows in splits.items()}
        metrics.update({f"{name}_labels": label_counts(rows) for name, rows in splits.items()})
        return metrics

    def read_split(self, path: Path) -> list[ClassExample]:
        return load_class_jsonl(path)

    def encode(self, tok: PreTrainedTokenizerBase, examples: Sequence[Any], data: DataConfig) -> Rows:
        from distill2edge.evaluate.classify import verbalizer_targets

        return verbalizer_targets(
            tok, examples_of(examples, ClassExample, self.name), labels=data.label_set(),
            template=data.prompt_template, verbalizers=data.verbalizers, max_length=data.max_length,
        )

    def train_labels(self, examples: Sequence[Any]) -> list[str] | None:
        return [ex.label for ex in examples_of(examples, ClassExample, self.name)]

    def answer_probe(
        self, examples: Sequence[Any], count: int, data: DataConfig, ecfg: EvaluateConfig, device: torch.device,
    ) -> ProbeFactory | None:
        """None: labels are scored, not generated (`train.eval_answers` does not apply)."""
        return None

    def evaluate(
        self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, examples: Sequence[Any], out: Path,
        data: DataConfig, ecfg: EvaluateConfig, *, device: torch.device, progress: bool, desc: str,
    ) -> dict[str, Any]:
        """Accuracy, macro-F1, per-label recall and predicted share, latency per sentence, then `params`."""
        from distill2edge.evaluate.classify import evaluate_classifier

        summary: dict[str, Any] = evaluate_classifier(
            model, tok, examples, out, labels=data.label_set(), template=data.prompt_template,
            verbalizers=data.verbalizers, max_length=data.max_length, batch_size=ecfg.batch_size,
            device=device, progress=progress,
        )
        summary["params"] = param_count(model)
        return summary

    def answer_ce(
        self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, examples: Sequence[Any], data: DataConfig,
        *, batch_size: int, device: torch.device,
    ) -> float | None:
        """None: the labels' log-likelihoods are the evaluation itself."""
        return None

    def data_line(self, data: DataConfig, metrics: dict[str, Any]) -> str:
        d = metrics
        counts = d.get("train_labels", {})
        return (f"Data: `{data.source}` — {d.get('train_examples')} training / {d.get('validation_examples')} "
                f"validation / {d.get('test_examples')} test sentences, split per label; training labels "
                + ", ".join(f"{c} {n}" for c, n in counts.items()) + ". Labels are scored as verbalizers by log-likelihood.")

    def report_labels(self, data: DataConfig) -> list[str] | None:
        return data.label_set()
