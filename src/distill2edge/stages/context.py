"""What every stage of one recipe run reads and adds to: the recipe, the run folder, the data, and the
models made so far (by role), with the stage that made each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from distill2edge.config import DataConfig, Recipe, TrainConfig
from distill2edge.data.examples import QAExample
from distill2edge.runs import Run, StageResult
from distill2edge.tasks import get_task
from distill2edge.train.trainers import ProbeFactory

Log = Callable[[str], None]


@dataclass
class Context:
    """The state the pipeline threads through its stages.

    `models` maps a role (`teacher.NAME`, `teacher_sft.NAME`, `student_base`, `student_sft`,
    `distilled.NAME`) to a model reference (a folder, or the recipe's reference for a model the run did not
    make); `producers` maps the same role to the stage that made it (None for a model from outside the run:
    its content, not a stage key, is then part of the downstream keys). `extra` holds the `teacher_data.NAME`
    stages run, with their examples."""

    recipe: Recipe
    run: Run
    device: torch.device
    progress: bool
    log: Log
    data: StageResult
    splits: dict[str, list]
    models: dict[str, str] = field(default_factory=dict)
    producers: dict[str, StageResult | None] = field(default_factory=dict)
    extra: dict[str, tuple[StageResult, list]] = field(default_factory=dict)

    def add_model(self, role: str, stage: StageResult) -> None:
        """Record the model a stage made (in its `model/` folder) under `role`."""
        self.models[role], self.producers[role] = str(stage.out_dir / "model"), stage

    def with_extra(self, splits: dict[str, list], refs: list[str]) -> dict[str, list]:
        """`splits` with the examples of the `teacher_data` stages `refs` added to the training split (only)."""
        if not refs:
            return splits
        return {**splits, "train": [*splits["train"], *(ex for ref in refs for ex in self.extra[ref][1])]}

    def warn_answers_cut(self, stage: str, tok_ref: str, train: list, data_cfg: DataConfig) -> None:
        """Log how many QA training prompts lost their reference answer to `data.max_length`'s cut of the
        context (none is lost with `data.context_window: answer`): the model then learns to answer from a
        context that lacks the answer."""
        questions = [ex for ex in train if isinstance(ex, QAExample)]
        if data_cfg.task != "qa" or data_cfg.context_window != "head" or not questions:
            return
        from distill2edge.data.tokenize import training_answers_cut
        from distill2edge.models.loading import load_tokenizer

        n = training_answers_cut(load_tokenizer(tok_ref), questions, data_cfg.prompt_template, data_cfg.max_length)
        if n:
            self.log(f"[{stage}] warning: cutting the contexts to max_length {data_cfg.max_length} dropped the "
                     f"reference answer from {n} of {len(questions)} training prompts; data.context_window: "
                     "answer keeps a window that holds it")

    def answer_probe(self, train_cfg: TrainConfig, splits: dict[str, list], data_cfg: DataConfig) -> ProbeFactory | None:
        """`train.eval_answers` > 0 on a task that generates answers (QA): greedy answers to that many
        validation questions at each validation, generated as the evaluate stage does."""
        return get_task(data_cfg.task).answer_probe(
            splits.get("validation") or [], train_cfg.eval_answers, data_cfg, self.recipe.evaluate, self.device,
        )
