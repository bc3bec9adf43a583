"""Oracle-LLM metrics of the telecom-qa paper, in the sense of RAGAS, scored by a judge (judge.py).

RAGAS computes these with multi-step pipelines (claim extraction, NLI, generated questions and
embeddings). Here each is one grading prompt, written for this project, asking for a score from 1 to
5 that is mapped to [0, 1] as (score - 1) / 4:

- answer_correctness: is the answer right, judged against the reference, for this question?
- answer_relevance: does the answer address the question (whether true or not)?
- faithfulness: is every statement in the answer supported by the context?
- factual_correctness: do the answer's facts agree with the reference's, none missing, none false?

An empty prediction scores 0 without asking the judge. A reply the judge gave without a readable
score (only possible with the HTTP judge) scores 0 and is counted in `judge.stats["unparsed"]`.
Contexts longer than `MAX_CONTEXT_CHARS` are cut at the end (the judge's window is small).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from distill2edge.evaluate.registry import EvalRecord, ScoringContext, register_batch_metric

MAX_CONTEXT_CHARS = 2000

PROMPTS: dict[str, str] = {
    "answer_correctness": (
        "Grade the candidate answer to a question about telecommunications.\n"
        "Question: {question}\nReference answer: {reference}\nCandidate answer: {prediction}\n"
        "How correct is the candidate answer, taking the reference answer as the truth? "
        "1 = wrong or unrelated, 3 = partly right, 5 = fully right with nothing false added. "
        "Reply with one number from 1 to 5."
    ),
    "answer_relevance": (
        "Grade whether an answer addresses its question; do not judge whether it is true.\n"
        "Question: {question}\nAnswer: {prediction}\n"
        "1 = does not address the question, 3 = partly on topic, 5 = addresses exactly what was asked. "
        "Reply with one number from 1 to 5."
    ),
    "faithfulness": (
        "Grade whether an answer is supported by a passage.\n"
        "Passage: {context}\nAnswer: {prediction}\n"
        "1 = contradicts the passage or is not found in it, 3 = partly supported, "
        "5 = every statement in the answer can be found in the passage. Reply with one number from 1 to 5."
    ),
    "factual_correctness": (
        "Compare the facts stated in an answer with the facts in a reference.\n"
        "Reference: {reference}\nAnswer: {prediction}\n"
        "1 = its facts are false or the reference's facts are missing, 3 = some facts match, "
        "5 = it states the reference's facts and no false ones. Reply with one number from 1 to 5."
    ),
}


def build_prompt(metric: str, record: EvalRecord) -> str:
    """The grading prompt of `metric` for one record (several references are joined with " | ")."""
    context = record.context
    if len(context) > MAX_CONTEXT_CHARS:
        context = context[:MAX_CONTEXT_CHARS] + " ..."
    return PROMPTS[metric].format(
        question=record.question.strip(), reference=" | ".join(r.strip() for r in record.references),
        prediction=record.prediction.strip(), context=context.strip(),
    )


def judge_metric(metric: str, records: Sequence[EvalRecord], ctx: ScoringContext) -> list[float]:
    """Scores in [0, 1] for `metric`, asking the context's judge about non-empty predictions only."""
    judge = ctx.get_judge()
    lo, hi = judge.scale
    todo = [i for i, r in enumerate(records) if r.prediction.strip()]
    out = [0.0] * len(records)
    if todo:
        raw = judge.score([build_prompt(metric, records[i]) for i in todo])
        for i, value in zip(todo, raw):
            out[i] = 0.0 if math.isnan(value) else min(max((value - lo) / (hi - lo), 0.0), 1.0)
    return out


def _register(metric: str, needs: tuple[str, ...]) -> None:
    def fn(records: Sequence[EvalRecord], ctx: ScoringContext) -> list[float]:
        return judge_metric(metric, records, ctx)

    fn.__name__ = metric
    fn.__doc__ = f"Oracle-LLM {metric.replace('_', ' ')} in [0, 1] (see the module docstring)."
    register_batch_metric(metric, group="llm", needs=needs)(fn)


_register("answer_correctness", ("question",))
_register("answer_relevance", ("question",))
_register("faithfulness", ("context",))
_register("factual_correctness", ())
