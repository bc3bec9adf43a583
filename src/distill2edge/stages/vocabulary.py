"""Stages `vocabulary.ROLE`: every trained student's vocabulary trimmed to its domain (`student.vocabulary`).

They run after all training (a later distillation may start from an earlier one's untrimmed student) and
before evaluation, so the model evaluated, exported and benchmarked under `student_sft` and
`distilled.NAME` is the trimmed one; the untrimmed weights stay in the training stage's folder. The
tokens kept are those of the recipe's training examples, encoded as training encodes them, plus every
`teacher_data` example the run wrote, plus the training split of each distillation's own `data:` on the
student's way (the distillation that made it and those it started from), plus the tokenizer's first
`keep_first` ids (`models.vocab_trim`). Validation and test text are never read.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from distill2edge.config import DataConfig, DistillConfig
from distill2edge.data.examples import QAExample
from distill2edge.data.tokenize import window_reads
from distill2edge.models.vocab_trim import trim_vocabulary
from distill2edge.runs import StageResult
from distill2edge.stages.context import Context
from distill2edge.stages.data import DistillData
from distill2edge.stages.distill import with_upstream
from distill2edge.train.trainers import encode_all

OwnData = tuple[StageResult, list[Any], DataConfig]
"""A distillation's own data stage (`data.NAME`), its training examples and its data config."""


def own_data_by_role(ctx: Context, distills: dict[str, DistillConfig],
                     data: dict[str, DistillData]) -> dict[str, list[OwnData]]:
    """For each `distilled.NAME`: the own data (`distill.NAME.data`) of that distillation and of those it
    started from (`with_upstream`), each data stage once. The recipe's data is not listed."""
    out: dict[str, list[OwnData]] = {}
    for name in distills:
        own: dict[str, OwnData] = {}
        for step, dcfg in with_upstream(ctx.recipe, [name]).items():
            stage, splits = data[step]
            if stage is not ctx.data and dcfg.data is not None:
                own.setdefault(stage.name, (stage, splits["train"], dcfg.data))
        out[f"distilled.{name}"] = list(own.values())
    return out


def _trim_texts(tok: Any, examples: list[Any], dcfg: DataConfig) -> list[list[int]]:
    """The token ids a trim keeps for `examples`: their training rows and, under `data.context_window:
    answer`, each question's whole prompt and context, which place its window (`window_reads`)."""
    rows = [row["input_ids"] for row in encode_all(tok, examples, dcfg)]
    if dcfg.task != "qa" or dcfg.context_window != "answer":
        return rows
    return rows + [ids for ex in examples if isinstance(ex, QAExample) for ids in window_reads(tok, ex, dcfg.prompt_template)]


def vocabulary_stages(ctx: Context, roles: list[str],
                      own_data: dict[str, list[OwnData]] | None = None) -> dict[str, StageResult]:
    """Trim the students `roles` (each made by a stage of this run) when the recipe sets
    `student.vocabulary`; re-points each role at its trimmed model. `own_data[role]`: the own data of the
    distillations on that student's way, whose training text the trim keeps too. Returns the stages by role."""
    cfg = ctx.recipe.student.vocabulary
    if cfg is None:
        return {}
    examples = [*ctx.splits["train"], *(ex for _stage, extra in ctx.extra.values() for ex in extra)]
    out: dict[str, StageResult] = {}
    for role in roles:
        producer = ctx.producers[role]
        if producer is None:
            continue  # not made by this run (a student used as is): nothing to trim
        source = Path(ctx.models[role])
        groups = [(examples, ctx.recipe.data)] + [(ex, dcfg) for _st, ex, dcfg in (own_data or {}).get(role, [])]

        def encode(tok: Any, _groups: list[tuple[list[Any], DataConfig]] = groups) -> list[list[int]]:
            return [ids for ex, dcfg in _groups for ids in _trim_texts(tok, ex, dcfg)]

        def trim(o: Path, _w: Path, _source: Path = source, _encode: Any = encode) -> dict[str, Any]:
            return asdict(trim_vocabulary(_source, o / "model", _encode, cfg.keep_first))

        inputs = {"data": ctx.data, producer.name: producer, **{name: st for name, (st, _ex) in ctx.extra.items()},
                  **{st.name: st for st, _ex, _cfg in (own_data or {}).get(role, [])}}
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
