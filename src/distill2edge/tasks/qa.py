"""Extractive QA (`data.task: qa`): a question over a context, answered by generated text.

Data: `data.qa` (TeleQuAD, SQuAD, JSONL, hf; split by context, answers checked against their context).
Training target: the first reference answer after the prompt. Evaluation: generated answers scored by
the recipe's metrics (`evaluate.generate`) plus the gold answers' cross-entropy (`evaluate.likelihood`).
The torch-side modules are imported by the members that use them, so the report and data code stay light.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill2edge.data.examples import QAExample, examples_of
from distill2edge.data.qa import prepare_splits, read_split, write_jsonl
from distill2edge.data.qa_checks import warn_stderr
from distill2edge.tasks.base import Log, Rows, Task, param_count
from distill2edge.tasks.spec import task_spec

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from distill2edge.evaluate.probe import ProbeFactory
    from distill2edge.schema.data import DataConfig
    from distill2edge.schema.recipe import EvaluateConfig


class QATask(Task):
    """Extractive QA: `QAExample` splits, generated answers, answer cross-entropy."""

    spec = task_spec("qa")

    def prepare_data(self, cfg: DataConfig, out: Path, log: Log | None) -> dict[str, Any]:
        """Split by context; per split the question and context counts, plus `warnings` (answers not in
        their context), each also sent to `log` as `[data] warning: ...` (default: stderr)."""
        warnings: list[str] = []

        def warn(message: str) -> None:
            warnings.append(message)
            if log is None:
                warn_stderr(message)
            else:
                log(f"[data] warning: {message}")

        splits = prepare_splits(cfg, warn)
        for name, examples in splits.items():
            write_jsonl(examples, out / f"{name}.jsonl")
        return ({"warnings": warnings} if warnings else {}) | {
            f"{name}_{what}": n
            for name, examples in splits.items()
            for what, n in (("questions", len(examples)), ("contexts", len({e.context_id for e in examples})))
        }

    def read_split(self, path: Path) -> list[QAExample]:
        return read_split(path)

    def encode(self, tok: PreTrainedTokenizerBase, examples: Sequence[Any], data: DataConfig) -> Rows:
        from distill2edge.data.tokenize import encode_for_training

        return [encode_for_training(tok, ex, data.prompt_template, data.max_length, data.context_window)
                for ex in examples_of(examples, QAExample, self.name)]

    def train_labels(self, examples: Sequence[Any]) -> list[str] | None:
        return None

    def answer_probe(
        self, examples: Sequence[Any], count: int, data: DataConfig, ecfg: EvaluateConfig, device: torch.device,
    ) -> ProbeFactory | None:
        """Greedy answers to the first `count` questions, generated as the evaluation does (its
        `max_new_tokens` and batch size); None when `count` is 0 or there are no questions."""
        if count == 0 or not examples:
            return None
        from distill2edge.evaluate.probe import probe_factory

        return probe_factory(
            examples_of(examples, QAExample, self.name), count, template=data.prompt_template,
            max_length=data.max_length, max_new_tokens=ecfg.max_new_tokens, batch_size=ecfg.batch_size, device=device,
        )

    def evaluate(
        self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, examples: Sequence[Any], out: Path,
        data: DataConfig, ecfg: EvaluateConfig, *, device: torch.device, progress: bool, desc: str,
    ) -> dict[str, Any]:
        """Generated answers scored by `ecfg.metrics` (a judge is built if an llm metric asks), then
        `params` and the gold answers' cross-entropy `answer_ce`."""
        from distill2edge.evaluate.generate import evaluate_model

        summary: dict[str, Any] = evaluate_model(
            model, tok, examples, out, template=data.prompt_template, max_length=data.max_length,
            max_new_tokens=ecfg.max_new_tokens, metrics=ecfg.metrics, batch_size=ecfg.batch_size,
            device=device, progress=progress, desc=desc, judge=ecfg.judge,
        )
        summary["params"] = param_count(model)
        summary["answer_ce"] = self.answer_ce(model, tok, examples, data, batch_size=ecfg.batch_size, device=device)
        return summary

    def answer_ce(
        self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, examples: Sequence[Any], data: DataConfig,
        *, batch_size: int, device: torch.device,
    ) -> float | None:
        from distill2edge.evaluate.likelihood import answer_cross_entropy

        return answer_cross_entropy(
            model, tok, examples, template=data.prompt_template, max_length=data.max_length,
            batch_size=batch_size, device=device,
        )

    def data_line(self, data: DataConfig, metrics: dict[str, Any]) -> str:
        d = metrics
        return (f"Data: `{data.source}` — {d.get('train_questions')} training / {d.get('validation_questions')} "
                f"validation / {d.get('test_questions')} test questions, split by context "
                f"({d.get('train_contexts')}/{d.get('validation_contexts')}/{d.get('test_contexts')} contexts).")

    def report_labels(self, data: DataConfig) -> list[str] | None:
        return None
