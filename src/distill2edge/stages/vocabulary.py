"""Stages `vocabulary.ROLE`: every trained student's vocabulary trimmed to its domain (`student.vocabulary`).

They run after all training (a later distillation may start from an earlier one's untrimmed student) and
before evaluation, so the model evaluated, exported and benchmarked under `student_sft` and
`distilled.NAME` is the trimmed one; the untrimmed weights stay in the training stage's folder. The
tokens kept are those of the recipe's training examples, encoded as training encodes them, plus every
`teacher_data` example the run wrote, plus the tokenizer's first `keep_first` ids (`models.vocab_trim`).
Validation and test text are never read.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from distill2edge.models.vocab_trim import trim_vocabulary
from distill2edge.runs import StageResult
from distill2edge.stages.context import Context
from distill2edge.train.trainers import encode_all


def vocabulary_stages(ctx: Context, roles: list[str]) -> dict[str, StageResult]:
    """Trim the students `roles` (each made by a stage of this run) when the recipe sets
    `student.vocabulary`; re-points each role at its trimmed model. Returns the stages by role."""
    cfg = ctx.recipe.student.vocabulary
    if cfg is None:
        return {}
    examples = [*ctx.splits["train"], *(ex for _stage, extra in ctx.extra.values() for ex in extra)]
    data_cfg = ctx.recipe.data

    def encode(tok: Any) -> list[list[int]]:
        return [row["input_ids"] for row in encode_all(tok, examples, data_cfg)]

    out: dict[str, StageResult] = {}
    for role in roles:
        producer = ctx.producers[role]
        if producer is None:
            continue  # not made by this run (a student used as is): nothing to trim
        source = Path(ctx.models[role])

        def trim(o: Path, _w: Path, _source: Path = source) -> dict[str, Any]:
            return asdict(trim_vocabulary(_source, o / "model", encode, cfg.keep_first))

        inputs = {"data": ctx.data, producer.name: producer, **{name: st for name, (st, _ex) in ctx.extra.items()}}
        stage = ctx.run.stage(f"vocabulary.{role}", {"vocabulary": cfg.model_dump(mode="json"), "model": role},
                              trim, inputs=inputs, log=ctx.log)
        if not stage.reused:
            m = stage.metrics
            ctx.log(f"[vocabulary.{role}] kept {m['kept']:,} of {m['original_size']:,} tokens "
                    f"({m['used_tokens']:,} used by the training data, the first {m['keep_first']:,}, "
                    f"{m['added_as_parents']} merge parents): {m['parameters_before'] / 1e6:.1f}M -> "
                    f"{m['parameters_after'] / 1e6:.1f}M parameters")
        ctx.add_model(role, stage)
        out[role] = stage
    return out
