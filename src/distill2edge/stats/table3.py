"""Run the paper's hypothesis tests over a grid's per-question scores and write Table 3.

Input: `{cell key: {metric: [score of question i]}}` (cell keys as in `hypotheses.Cell.key`), every cell
scored on the same questions in the same order (`load_grid_scores` reads and aligns `scores.csv` files).
Output: for each hypothesis row and column, how many metrics reject H0 at p < alpha, written as
`table3.md` and `table3.json` (which also holds every test's p-value, Holm-adjusted p-value, statistic
and rank-biserial effect size).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from distill2edge.stats.hypotheses import PAPER_TABLE3, ROWS, Hypothesis, columns, paper_hypotheses
from distill2edge.stats.wilcoxon import WilcoxonResult, holm, paired_wilcoxon

CellScores = Mapping[str, Mapping[str, Sequence[float]]]


@dataclass(frozen=True)
class TestResult:
    hypothesis: Hypothesis
    metric: str
    result: WilcoxonResult
    p_adjusted: float
    """Holm-adjusted p-value (equal to the raw one without correction)."""
    rejected: bool


def load_grid_scores(files: Mapping[str, Path]) -> dict[str, dict[str, list[float]]]:
    """Read `{cell key: scores.csv}`; rows are put in the first file's question order. ValueError naming
    the file whose question ids differ from the first's."""
    from distill2edge.evaluate.generate import read_scores_csv

    out: dict[str, dict[str, list[float]]] = {}
    ref_ids: list[str] | None = None
    for key, path in files.items():
        ids, scores = read_scores_csv(Path(path))
        if len(set(ids)) != len(ids):
            raise ValueError(f"{path}: a question id appears twice")
        if ref_ids is None:
            ref_ids = ids
        elif sorted(ids) != sorted(ref_ids):
            raise ValueError(f"{path}: its question ids differ from those of {next(iter(files.values()))}; "
                             "paired tests need every cell scored on the same questions")
        pos = {qid: i for i, qid in enumerate(ids)}
        out[key] = {m: [v[pos[qid]] for qid in ref_ids] for m, v in scores.items()}
    return out


def _default_metrics(scores: CellScores) -> list[str]:
    from distill2edge.evaluate.registry import PAPER_METRICS

    common = set.intersection(*(set(m) for m in scores.values())) if scores else set()
    order = {m: i for i, m in enumerate(PAPER_METRICS)}
    return sorted(common, key=lambda m: (order.get(m, len(order)), m))


def run_tests(
    scores: CellScores, metrics: Sequence[str] | None = None, *, hypotheses: Sequence[Hypothesis] | None = None,
    alpha: float = 0.05, correction: Literal["none", "holm"] = "none", family: Literal["cell", "table"] = "cell",
) -> list[TestResult]:
    """One-sided paired Wilcoxon test (treated > baseline) per hypothesis and metric.

    Hypotheses whose cells are missing from `scores` are skipped. With `correction="holm"` the p-values
    are Holm-adjusted over the metrics of one table cell (`family="cell"`: one hypothesis, its metrics)
    or over every test in the table (`family="table"`); H0 is rejected when the (adjusted) p < alpha.
    """
    metrics = list(metrics) if metrics is not None else _default_metrics(scores)
    hyps = list(hypotheses) if hypotheses is not None else paper_hypotheses()
    raw: list[tuple[Hypothesis, str, WilcoxonResult]] = []
    for h in hyps:
        if h.treated.key not in scores or h.baseline.key not in scores:
            continue
        for m in metrics:
            for cell in (h.treated.key, h.baseline.key):
                if m not in scores[cell]:
                    raise ValueError(f"cell {cell} has no scores for metric {m!r}")
            raw.append((h, m, paired_wilcoxon(scores[h.treated.key][m], scores[h.baseline.key][m], "greater")))
    p = [r.p_value for _, _, r in raw]
    adjusted = list(p)
    if correction == "holm":
        groups: dict[Any, list[int]] = {}
        for i, (h, _, _) in enumerate(raw):
            groups.setdefault((h.row, h.column) if family == "cell" else "all", []).append(i)
        for idx in groups.values():
            for i, q in zip(idx, holm([p[i] for i in idx])):
                adjusted[i] = q
    return [TestResult(h, m, r, adjusted[i], adjusted[i] < alpha) for i, (h, m, r) in enumerate(raw)]


def table3(results: Sequence[TestResult], *, alpha: float = 0.05, correction: str = "none",
           family: str = "cell") -> dict[str, Any]:
    """Table 3 as a JSON-ready dict: rows x columns of {rejected, of, treated, baseline, tests}."""
    metrics = list(dict.fromkeys(r.metric for r in results))
    rows = []
    for fam, row, desc in ROWS:
        cols: dict[str, Any] = {}
        for col in columns(fam):
            tests = [r for r in results if r.hypothesis.row == row and r.hypothesis.column == col]
            if not tests:
                cols[col] = None
                continue
            h = tests[0].hypothesis
            cols[col] = {
                "rejected": sum(t.rejected for t in tests), "of": len(tests),
                "treated": h.treated.key, "baseline": h.baseline.key,
                "tests": {t.metric: {**t.result.to_json(), "p_adjusted": t.p_adjusted, "rejected": t.rejected}
                          for t in tests},
            }
        rows.append({"family": fam, "row": row, "description": desc, "columns": cols,
                     "paper": PAPER_TABLE3.get(row)})
    n = results[0].result.n if results else 0
    return {"alpha": alpha, "correction": correction, "family": family if correction != "none" else None,
            "test": "one-sided paired Wilcoxon signed-rank (scipy), H1: treated > baseline",
            "n_questions": n, "metrics": metrics, "rows": rows}


def _md_table(data: dict[str, Any], families: Sequence[str], labels: Mapping[str, str]) -> list[str]:
    cols = columns(families[0])
    lines = ["| Family | H1 | " + " | ".join(labels.get(c, c) for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for row in data["rows"]:
        if row["family"] not in families:
            continue
        cells = []
        for c in cols:
            v = row["columns"].get(c)
            paper = (row.get("paper") or {}).get(c)
            text = "n/a" if v is None else f"{v['rejected']}/{v['of']}"
            cells.append(text + (f" (paper {paper})" if paper is not None else ""))
        lines.append(f"| {row['family']} | {row['description']} | " + " | ".join(cells) + " |")
    return lines


def write_table3(results: Sequence[TestResult], out_dir: Path, *, alpha: float = 0.05, correction: str = "none",
                 family: str = "cell", column_labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Write `table3.json` and `table3.md` into `out_dir`; returns the JSON data.

    `column_labels` renames columns in the Markdown (e.g. {"same-V": "SmolLM2-V"}).
    """
    data = table3(results, alpha=alpha, correction=correction, family=family)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "table3.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    labels = dict(column_labels or {})
    corr = f", Holm-corrected per {'table cell' if family == 'cell' else 'table'}" if correction == "holm" else ""
    lines = [
        f"# Hypothesis tests (paper Table 3): metrics rejecting H0 at p < {alpha}{corr}", "",
        (f"{data['test']}; {data['n_questions']} questions; {len(data['metrics'])} metrics: "
         f"{', '.join(data['metrics'])}. Each cell: metrics rejecting H0 / metrics tested; in brackets the "
         "paper's count (Llama-2/Mistral teachers, TinyLlama student, 14 metrics)."), "",
        *_md_table(data, ("H-Train", "H-SFT"), labels), "",
        *_md_table(data, ("H-Algo",), labels), "",
    ]
    (out_dir / "table3.md").write_text("\n".join(lines), encoding="utf-8")
    return data
