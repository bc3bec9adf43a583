"""One registry over every metric, pairwise or batched, with named groups.

Two kinds of metric exist. Pairwise ones (`metrics.METRICS`: `(prediction, reference) -> float`) are
cheap and context-free; batch metrics (`BATCH_METRICS`) see a whole list of `EvalRecord`s at once,
because a sentence encoder wants batches and an Oracle-LLM judge wants the question and the context.
Both are addressed by name, and by group:

    qa         exact_match, token_f1
    ngram      bleu, chrf, rouge_1, rouge_2, rouge_l, meteor
    embedding  embedding_cosine, bertscore_precision, bertscore_recall, bertscore_f1
    llm        answer_correctness, answer_relevance, faithfulness, factual_correctness
    paper      the 14 metrics of the telecom-qa paper (ngram + embedding + llm)
    all        every registered metric

so a recipe may say `metrics: [all]`, `metrics: [qa, ngram]` or list single names. Every score is
oriented so that higher is better.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from distill2edge.evaluate.pairwise import METRIC_GROUPS, METRICS


class MetricUnavailableError(RuntimeError):
    """A metric's data or model cannot be found on this machine; the message says how to get it."""


@dataclass(frozen=True)
class EvalRecord:
    """What a metric may look at for one question."""

    prediction: str
    references: tuple[str, ...]
    """Acceptable answers (at least one)."""
    question: str = ""
    context: str = ""


@dataclass
class ScoringContext:
    """Shared state of one scoring call: options, the judge, and a cache for metrics computed
    together (BERTScore P/R/F1 come from one pass)."""

    judge: Any = None
    """A `distill2edge.evaluate.judge.Judge`, or the `make_judge` spec of one (a recipe's `evaluate.judge`);
    a spec, or None for `DEFAULT_JUDGE`, is built by `get_judge()` on first use, so scoring without an
    Oracle-LLM metric never loads a judge."""
    batch_size: int = 32
    device: str = "cpu"
    progress: bool = False
    cache: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent per metric (filled by `score_records`)."""

    def get_judge(self) -> Any:
        """The judge, built from its spec (or `DEFAULT_JUDGE`) on the first call."""
        if self.judge is None or isinstance(self.judge, str):
            from distill2edge.evaluate.judge import DEFAULT_JUDGE, make_judge

            self.judge = make_judge(self.judge or DEFAULT_JUDGE, device=self.device)
        return self.judge


BatchMetricFn = Callable[[Sequence[EvalRecord], ScoringContext], list[float]]


@dataclass(frozen=True)
class BatchMetric:
    name: str
    group: str
    fn: BatchMetricFn
    needs: frozenset[str]
    """Record fields that must be non-empty: "question" and/or "context"."""


BATCH_METRICS: dict[str, BatchMetric] = {}

GROUP_ORDER: tuple[str, ...] = ("qa", "ngram", "embedding", "llm")
PAPER_METRICS: tuple[str, ...] = (
    "bleu", "chrf", "rouge_1", "rouge_2", "rouge_l", "meteor",
    "embedding_cosine", "bertscore_precision", "bertscore_recall", "bertscore_f1",
    "answer_correctness", "answer_relevance", "faithfulness", "factual_correctness",
)
"""The telecom-qa paper's 14 metrics, in its order (n-gram, embedding, Oracle-LLM)."""

_BUILTIN_MODULES = ("ngram", "embedding", "llm_metrics")


def register_batch_metric(
    name: str, *, group: str, needs: Sequence[str] = ()
) -> Callable[[BatchMetricFn], BatchMetricFn]:
    """Decorator adding a batch metric; names are shared with the pairwise registry."""

    def add(fn: BatchMetricFn) -> BatchMetricFn:
        if name in BATCH_METRICS or name in METRICS:
            raise ValueError(f"metric {name!r} is already registered")
        BATCH_METRICS[name] = BatchMetric(name, group, fn, frozenset(needs))
        return fn

    return add


def load_builtin_metrics() -> None:
    """Import the modules that register the built-in metrics (idempotent; heavy imports stay lazy)."""
    for mod in _BUILTIN_MODULES:
        importlib.import_module(f"distill2edge.evaluate.{mod}")


def metric_groups() -> dict[str, list[str]]:
    """Group name -> metric names, including the "paper" and "all" groups."""
    load_builtin_metrics()
    groups: dict[str, list[str]] = {g: [] for g in GROUP_ORDER}
    for name, group in [*METRIC_GROUPS.items(), *((m.name, m.group) for m in BATCH_METRICS.values())]:
        groups.setdefault(group, []).append(name)
    order = {n: i for i, n in enumerate(PAPER_METRICS)}
    for names in groups.values():
        names.sort(key=lambda n: order.get(n, len(order)))
    groups["paper"] = list(PAPER_METRICS)
    groups["all"] = [n for g in groups if g != "paper" for n in groups[g]]
    return groups


def resolve_metrics(names: Sequence[str]) -> list[str]:
    """Expand group names, drop repeats (first wins); ValueError naming the valid names otherwise."""
    groups = metric_groups()
    out: list[str] = []
    for name in names:
        expanded = groups.get(name, [name])
        for n in expanded:
            if n not in METRICS and n not in BATCH_METRICS:
                known = ", ".join([*groups, *METRICS, *BATCH_METRICS])
                raise ValueError(f"unknown metric {n!r}; registered metrics and groups: {known}")
            if n not in out:
                out.append(n)
    return out


def metric_group(name: str) -> str:
    load_builtin_metrics()
    return BATCH_METRICS[name].group if name in BATCH_METRICS else METRIC_GROUPS.get(name, "custom")


def _check_needs(metric: BatchMetric, records: Sequence[EvalRecord]) -> None:
    for fld in sorted(metric.needs):
        missing = [i for i, r in enumerate(records) if not getattr(r, fld).strip()]
        if missing:
            raise ValueError(
                f"metric {metric.name!r} needs the {fld} of every question; question {missing[0]} has none "
                f"({len(missing)} of {len(records)} missing)"
            )


def score_records(
    records: Sequence[EvalRecord], metrics: Sequence[str], *, judge: Any = None, batch_size: int = 32,
    device: str = "cpu", progress: bool = False, context: ScoringContext | None = None,
) -> dict[str, list[float]]:
    """Per-question scores {metric: [score of record i]} for the metrics (or groups) named.

    Pairwise metrics take the best score over a record's references. Pass `context` to read back the
    judge that was used and the time per metric (`context.timings`).
    """
    names = resolve_metrics(metrics)
    ctx = context or ScoringContext(judge=judge, batch_size=batch_size, device=device, progress=progress)
    for r in records:
        if not r.references:
            raise ValueError("every record needs at least one reference answer")
    out: dict[str, list[float]] = {}
    for name in names:
        t0 = time.perf_counter()
        if name in METRICS:
            fn = METRICS[name]
            out[name] = [max(fn(r.prediction, ref) for ref in r.references) for r in records]
        else:
            metric = BATCH_METRICS[name]
            _check_needs(metric, records)
            values = [float(v) for v in metric.fn(records, ctx)]
            if len(values) != len(records):
                raise RuntimeError(f"metric {name!r} returned {len(values)} scores for {len(records)} records")
            out[name] = values
        ctx.timings[name] = time.perf_counter() - t0
    return out
