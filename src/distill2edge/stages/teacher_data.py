"""Stage `teacher_data.TEACHER`: the SFT teacher writes extra training examples about the training contexts.

The embedded telecom-qa set has 282 training questions over 33 contexts and the student memorises them.
Here the fine-tuned teacher asks new questions about each training context (sampled from the prompt
template cut before the question) and answers them greedily (`evaluate.generate`, as the evaluation
does). A question survives only when it is new and its answer is a span of the context (extractive QA)
but not of the question; the rest are counted by reason. With `passages_per_context` the teacher also
writes new paragraphs, each continuing a training context's opening words: unlabelled text that widens
what full-sequence KD heals the student on. Only training contexts are ever shown: validation and test
stay unseen.

Outputs, in the stage folder: `train.jsonl` (the kept examples, the data stage's format), `passages.jsonl`
(the kept passages), `stats.json` (asked, kept, rejections by reason, passage tokens, seconds) and
`candidates.jsonl` (every question with its answer and why it was rejected, for reading what the teacher
wrote).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from distill2edge.atomic import write_json_atomic, write_text_atomic
from distill2edge.config import DataConfig, TeacherDataConfig
from distill2edge.data.examples import TextExample
from distill2edge.data.qa import QAExample, read_split
from distill2edge.data.qa_checks import normalize_text
from distill2edge.data.text import read_passages_jsonl, write_passages_jsonl
from distill2edge.runs import StageResult
from distill2edge.stages.context import Context

REASONS = ("empty_question", "unfinished_question", "duplicate_question", "training_question",
           "empty_answer", "answer_not_in_context", "answer_in_question")
"""Why a written example is rejected, in the order the rules are checked."""

PASSAGE_REASONS = ("short_passage", "repetitive_passage", "duplicate_passage")
"""Why a written passage is rejected, in the order the rules are checked."""


def question_template(template: str) -> str:
    """The prompt template cut before the question: `Context: {context}\\nQuestion: {question}\\nAnswer:`
    -> `Context: {context}\\nQuestion:`, which the teacher continues with a question of its own."""
    head, found, _ = template.partition("{question}")
    if not found or "{context}" not in head:
        raise ValueError("data.prompt_template: teacher_data needs {context} before {question}")
    return head.rstrip()


def normalize_question(question: str) -> str:
    """Lower case, single spaces, no trailing punctuation: two questions that differ only so are the same."""
    return normalize_text(question).rstrip(" ?.!")


def question_reason(question: str, ended: bool, seen: set[str], training: set[str]) -> str | None:
    """Why a sampled question is rejected (None: kept). `seen`: the normalised questions already kept on its
    context; `training`: the normalised training questions of that context."""
    norm = normalize_question(question)
    if not norm:
        return "empty_question"
    if not ended:
        return "unfinished_question"  # cut by max_question_tokens: likely half a question
    if norm in seen:
        return "duplicate_question"
    if norm in training:
        return "training_question"
    return None


def answer_reason(answer: str, context: str, question: str) -> str | None:
    """Why a greedy answer is rejected (None: kept): empty, not a span of its context (case and spacing
    ignored, as the data stage checks the recipe's own answers), or a span of its own question ("what is
    the 5G core" -> "the 5G core": it would teach the student to copy the question)."""
    norm = normalize_text(answer)
    if not norm:
        return "empty_answer"
    if norm not in normalize_text(context):
        return "answer_not_in_context"
    if norm in normalize_text(question):
        return "answer_in_question"
    return None


def finish_passage(text: str, ended: bool) -> str:
    """A sampled passage as kept: spaces collapsed and blank lines dropped (its lines kept); whole when it
    ended (EOS), else cut after its last full sentence (a stop, "?" or "!" before a space, a new line or
    the end), or empty when it has none."""
    text = "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())
    if ended:
        return text
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", text)]
    return text[: ends[-1]] if ends else ""


def passage_reason(text: str, seen: set[str], min_words: int) -> str | None:
    """Why a finished passage is rejected (None: kept): under `min_words` words, repetitive (under half of
    its word trigrams distinct: a sampler caught in a loop), or a repeat of a passage in `seen` (normalised)."""
    words = normalize_text(text).split()
    if len(words) < min_words:
        return "short_passage"
    trigrams = list(zip(words, words[1:], words[2:]))
    if len(set(trigrams)) < 0.5 * len(trigrams):
        return "repetitive_passage"
    if " ".join(words) in seen:
        return "duplicate_passage"
    return None


def sample_passages(
    model: Any, tok: Any, contexts: Sequence[tuple[QAExample, set[str]]], cfg: TeacherDataConfig, name: str,
    device: torch.device | str, rejected: Counter[str], progress: bool,
) -> list[TextExample]:
    """`passages_per_context` sampled continuations of each training context's opening words, finished by
    `finish_passage` and filtered by `passage_reason` (rejections counted in `rejected`)."""
    from tqdm.auto import tqdm

    from distill2edge.evaluate.generate import sample_lines

    out: list[TextExample] = []
    seen: set[str] = set()
    for i, (ctx, _) in enumerate(tqdm(contexts, desc=f"{name} passages", disable=not progress)):
        opening = " ".join(ctx.context.split()[: cfg.passage_seed_words])
        prompt = tok(opening, add_special_tokens=True)["input_ids"]
        samples = sample_lines(
            model, tok, prompt, n=cfg.passages_per_context, temperature=cfg.temperature, top_p=cfg.top_p,
            max_new_tokens=cfg.max_passage_tokens, seed=cfg.seed + 100_003 + i, device=device, first_line=False,
            min_new_tokens=cfg.max_passage_tokens,  # no EOS: the SFT teacher learned to stop after short answers
        )
        for k, (tail, ended) in enumerate(samples):
            glue = "" if tail[:1] in ",.;:)!?" else " "
            text = finish_passage(f"{opening}{glue}{tail}", ended)
            reason = passage_reason(text, seen, cfg.min_passage_words)
            if reason is None:
                seen.add(" ".join(normalize_text(text).split()))
                out.append(TextExample(id=f"{name}.{ctx.context_id}.p{k}", text=text,
                                       meta={"source": name, "context_id": ctx.context_id}))
            else:
                rejected[reason] += 1
    return out


def training_contexts(
    splits: dict[str, list[QAExample]], max_contexts: int | None = None,
) -> list[tuple[QAExample, set[str]]]:
    """One example per training context (in split order) with the normalised training questions of that
    context. A context that also occurs in validation or test (by id or text) is left out."""
    held_out = {key for split in ("validation", "test") for ex in splits.get(split, []) for key in (ex.context_id, ex.context)}
    out: dict[str, tuple[QAExample, set[str]]] = {}
    for ex in splits["train"]:
        if ex.context_id in held_out or ex.context in held_out:
            continue
        out.setdefault(ex.context_id, (ex, set()))[1].add(normalize_question(ex.question))
    return list(out.values())[:max_contexts]


def _sample_questions(
    model: Any, tok: Any, contexts: Sequence[tuple[QAExample, set[str]]], data: DataConfig, cfg: TeacherDataConfig,
    name: str, device: torch.device | str, rejected: Counter[str], records: list[dict[str, Any]], progress: bool,
) -> list[QAExample]:
    """Sample `questions_per_context` questions per context; returns those that pass `question_reason` as
    examples without an answer yet, and counts (and records) the others."""
    from tqdm.auto import tqdm

    from distill2edge.data.tokenize import encode_for_generation
    from distill2edge.evaluate.generate import sample_lines

    template = question_template(data.prompt_template)
    out: list[QAExample] = []
    for i, (ctx, training) in enumerate(tqdm(contexts, desc=f"{name} questions", disable=not progress)):
        prompt = encode_for_generation(tok, ctx, template, data.max_length, cfg.max_question_tokens)
        samples = sample_lines(
            model, tok, prompt, n=cfg.questions_per_context, temperature=cfg.temperature, top_p=cfg.top_p,
            max_new_tokens=cfg.max_question_tokens, seed=cfg.seed + i, device=device,
        )
        seen: set[str] = set()
        for k, (question, ended) in enumerate(samples):
            ex = replace(ctx, id=f"{name}.{ctx.context_id}.{k}", question=question, answers=(), meta={"source": name})
            reason = question_reason(question, ended, seen, training)
            if reason is None:
                seen.add(normalize_question(question))
                out.append(ex)
            else:
                rejected[reason] += 1
                records.append({"id": ex.id, "context_id": ex.context_id, "question": question, "answer": None,
                                "rejected": reason})
    return out


def write_teacher_data(
    model_ref: str, dtype: str, splits: dict[str, list[QAExample]], data: DataConfig, cfg: TeacherDataConfig,
    out_dir: Path, *, name: str, device: torch.device | str = "cpu", batch_size: int = 8, progress: bool = True,
) -> dict[str, Any]:
    """Write `train.jsonl`, `stats.json` and `candidates.jsonl` into `out_dir` (see the module); returns the
    stats. `name` (`teacher_data.TEACHER`) prefixes the example ids and is their `meta.source`."""
    from distill2edge.evaluate.generate import generate_answers
    from distill2edge.models import DTYPES, load_model

    t0 = time.perf_counter()
    model, tok = load_model(model_ref, dtype=DTYPES[dtype], device=device)
    contexts = training_contexts(splits, cfg.max_contexts)
    rejected: Counter[str] = Counter()
    records: list[dict[str, Any]] = []
    passages = sample_passages(model, tok, contexts, cfg, name, device, rejected, progress) if cfg.passages_per_context else []
    questions = _sample_questions(model, tok, contexts, data, cfg, name, device, rejected, records, progress) \
        if cfg.questions_per_context else []
    answers = generate_answers(
        model, tok, questions, template=data.prompt_template, max_length=data.max_length,
        max_new_tokens=cfg.max_answer_tokens, batch_size=batch_size, device=device, progress=progress,
        desc=f"{name} answers",
    ) if questions else []
    kept: list[QAExample] = []
    for ex, gen in zip(questions, answers):
        reason = answer_reason(gen["prediction"], ex.context, ex.question)
        records.append({"id": ex.id, "context_id": ex.context_id, "question": ex.question,
                        "answer": gen["prediction"], "rejected": reason})
        if reason is None:
            kept.append(replace(ex, answers=(gen["prediction"],)))
        else:
            rejected[reason] += 1
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "train.jsonl", "".join(json.dumps(ex.to_json(), ensure_ascii=False) + "\n" for ex in kept))
    write_text_atomic(out_dir / "candidates.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    write_passages_jsonl(passages, out_dir / "passages.jsonl")
    per_context = Counter(ex.context_id for ex in kept)
    stats: dict[str, Any] = {
        "contexts": len(contexts), "asked": len(contexts) * cfg.questions_per_context, "kept": len(kept),
        "rejected": {r: rejected[r] for r in (*REASONS, *PASSAGE_REASONS) if rejected[r]},
        "passages_asked": len(contexts) * cfg.passages_per_context, "passages_kept": len(passages),
        "passage_tokens": sum(len(tok(p.text, add_special_tokens=False)["input_ids"]) for p in passages),
        "kept_per_context": {"min": min((per_context[c.context_id] for c, _ in contexts), default=0),
                             "max": max(per_context.values(), default=0)},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    write_json_atomic(out_dir / "stats.json", stats)
    return stats


def read_teacher_data(stage: StageResult) -> list[QAExample | TextExample]:
    """The examples a `teacher_data.TEACHER` stage kept: its questions and answers, then its passages (a
    folder written before passages existed has none)."""
    path = stage.out_dir / "passages.jsonl"
    return [*read_split(stage.out_dir / "train.jsonl"), *(read_passages_jsonl(path) if path.exists() else [])]


def teacher_data_stages(ctx: Context, names: set[str]) -> None:
    """Run (or reuse) the stages `teacher_data.TEACHER` in `names`, after that teacher's SFT stage, into
    `ctx.extra` with their kept examples. The key holds the stage's config, the data stage and the SFT stage."""
    recipe = ctx.recipe
    for teacher, cfg in recipe.teacher_data.items():
        name = f"teacher_data.{teacher}"
        if name not in names:
            continue
        role = f"teacher_sft.{teacher}"
        sft = ctx.producers.get(role)
        if sft is None:
            raise ValueError(f"{name}: needs {role}, which this run did not train (sft.teacher.enabled)")
        model_ref, dtype = ctx.models[role], recipe.teachers[teacher].dtype

        def fn(o: Path, _w: Path, _c: TeacherDataConfig = cfg, _n: str = name, _m: str = model_ref, _d: str = dtype) -> dict[str, Any]:
            return write_teacher_data(_m, _d, ctx.splits, recipe.data, _c, o, name=_n, device=ctx.device,
                                      batch_size=recipe.evaluate.batch_size, progress=ctx.progress)

        config = {"teacher_data": cfg.model_dump(mode="json"), "teacher": role}
        stage = ctx.run.stage(name, config, fn, inputs={"data": ctx.data, sft.name: sft}, log=ctx.log)
        if not stage.reused:
            m = stage.metrics
            ctx.log(f"[{name}] kept {m['kept']} of {m['asked']} questions and {m.get('passages_kept', 0)} of "
                    f"{m.get('passages_asked', 0)} passages on {m['contexts']} training contexts "
                    f"(rejected: {m['rejected'] or 'none'})")
        ctx.extra[name] = (stage, read_teacher_data(stage))
