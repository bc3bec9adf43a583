"""bench.json -> Markdown tables and plots.

The first table follows the scaling-down paper's layout (role, model, accuracy, F1, inference time,
questions per second), with ROUGE-L and the speed-up over the reference model added; the second holds
the runtime details (first-token time, percentiles, decode speed against its roofline, memory, size);
a third, when a student has a teacher in the same runtime at the same weight type, its equal-bits speed-ups.
The roofline columns are the working-set ceiling (read bandwidth on a buffer of the model's bytes per
token, see roofline.py); results written before it have only the DRAM ceiling, and are labelled so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict


def _f(x: float | None, spec: str = ".3f") -> str:
    return "–" if x is None else format(x, spec)


def reference_model(result: dict[str, Any]) -> dict[str, Any]:
    """The model speed-ups are taken against: `result["reference"]` (a name), else the first teacher,
    else the first model."""
    models = result["models"]
    want = result.get("reference")
    for m in models:
        if m["name"] == want:
            return m
    return next((m for m in models if m["role"] == "teacher"), models[0])


class Speedup(TypedDict):
    """One model's speed-ups over the reference model."""

    answer: float
    """Reference ms/answer ÷ this model's."""
    decode: float | None
    """Decode tokens/s ÷ the reference's; None when either has no decode speed."""


def speedups(result: dict[str, Any]) -> dict[str, Speedup]:
    """Per model name: `answer` (reference ms/answer ÷ this model's) and `decode` (tokens/s ratio)."""
    ref = reference_model(result)
    out: dict[str, Speedup] = {}
    for m in result["models"]:
        dec = m["decode_tokens_per_s"]
        out[m["name"]] = {
            "answer": ref["answer_ms"]["mean"] / m["answer_ms"]["mean"],
            "decode": None if not dec or not ref["decode_tokens_per_s"] else dec / ref["decode_tokens_per_s"],
        }
    return out


def roofline_cells(result: dict[str, Any]) -> tuple[str, list[tuple[float, float, float | None]]]:
    """Which ceiling the roofline columns show ("working set", or "DRAM" when any record predates the
    working-set ceiling) and per model (read GB/s, ceiling tokens/s, fraction) against it."""
    records = [m["roofline"] for m in result["models"]]
    if all(r.get("ceiling") == "working_set" for r in records):
        return "working set", [(r["read_gb_s"], r["ceiling_tokens_per_s"], r["fraction"]) for r in records]
    dram = result["bandwidth"]["read_gb_s"]
    return "DRAM", [(r.get("dram_read_gb_s", dram), r.get("dram_ceiling_tokens_per_s", r["ceiling_tokens_per_s"]),
                     r.get("dram_fraction", r["fraction"])) for r in records]


def markdown_tables(result: dict[str, Any]) -> str:
    """Both tables with a line saying where and how they were measured."""
    s = result["settings"]
    mach = result["machine"]
    bw = result["bandwidth"]
    ref = reference_model(result)
    ups = speedups(result)
    basis, roofs = roofline_cells(result)
    ceiling_note = (" Roofline: decode tokens/s against read bandwidth / bytes per token, the bandwidth measured "
                    "on a buffer of the model's bytes per token (its working set, in cache when it fits)."
                    if basis == "working set" else " Roofline: against the DRAM bandwidth.")
    lines = [
        (
            f"{result['n_questions']} questions, greedy, {s['max_new_tokens']} new tokens per answer"
            f"{' (stopping at EOS or newline)' if s['stop_at_answer'] else ' (fixed length)'}, "
            f"{s['threads']} threads, {s['warmup']} warm-up answers; {mach['cpu']} "
            f"({mach['usable_cores']} usable cores); DRAM read bandwidth {bw['read_gb_s']:.1f} GB/s. "
            f"Speed-up is against {ref['name']}.{ceiling_note}"
        ),
        "",
        "| Role | Model | Accuracy (EM) | F1 | ROUGE-L | ms / inference | Questions/s | Speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in result["models"]:
        a = m["accuracy"]
        lines.append(
            f"| {m['role']} | {m['name']} | {_f(a.get('exact_match'))} | {_f(a.get('token_f1'))} | "
            f"{_f(a.get('rouge_l'))} | {m['answer_ms']['mean']:.0f} | {m['questions_per_s']:.2f} | "
            f"{ups[m['name']]['answer']:.2f}x |"
        )
    lines += [
        "",
        (
            "| Model | Runtime | Params (M) | File (MB) | TTFT ms (median) | ms / answer (median / p90) | "
            f"Decode tok/s | Read GB/s ({basis}) | Roofline tok/s ({basis}) | % of roofline ({basis}) | "
            "Batched q/s | Peak RSS (MB) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, (gb_s, ceiling, fraction) in zip(result["models"], roofs):
        frac = None if fraction is None else 100 * fraction
        lines.append(
            f"| {m['name']} | {m['runtime']} ({m['dtype']}) | {m['params'] / 1e6:.1f} | {m['file_bytes'] / 1e6:.1f} | "
            f"{m['ttft_ms']['median']:.0f} | {m['answer_ms']['median']:.0f} / {m['answer_ms']['p90']:.0f} | "
            f"{_f(m['decode_tokens_per_s'], '.1f')} | {gb_s:.1f} | {ceiling:.0f} | {_f(frac, '.0f')} | "
            f"{_f(m['questions_per_s_batched'], '.2f')} | {_f(m['peak_rss_mb'], '.0f')} |"
        )
    return "\n".join(lines + same_bits_table(result)) + "\n"


def same_bits_table(result: dict[str, Any]) -> list[str]:
    """Lines of the equal-bits table (each student against the teacher in the same runtime at the same
    weight type, `result["same_bits"]`), or none when no student has such a teacher."""
    rows = result.get("same_bits") or []
    if not rows:
        return []
    lines = [
        "", "Equal bits: each student against the teacher in the same runtime at the same weight type.", "",
        "| Student | Teacher | Format (type) | Decode speed-up | Answer speed-up |", "|---|---|---|---|---|",
    ]
    for r in rows:
        dec = None if r["decode_speedup"] is None else f"{r['decode_speedup']:.2f}x"
        lines.append(f"| {r['model']} | {r['teacher']} | {r['format']} ({r['weight_type']}) | {dec or '–'} | "
                     f"{r['answer_speedup']:.2f}x |")
    return lines


def write_plots(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """`accuracy_latency.png` (F1 against ms per answer) and `speedup.png` (answer and decode speed-up
    over the reference model). Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = result["models"]
    markers = {"torch": "o", "onnx": "s", "gguf": "^"}
    colors = {"teacher": "tab:blue", "student": "tab:orange"}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for m in models:
        ax.scatter(m["answer_ms"]["mean"], m["accuracy"].get("token_f1", 0.0), s=60,
                   marker=markers.get(m["format"], "o"), color=colors.get(m["role"], "tab:gray"))
        ax.annotate(m["name"], (m["answer_ms"]["mean"], m["accuracy"].get("token_f1", 0.0)),
                    textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("ms per answer (mean, log scale)")
    ax.set_ylabel("token F1")
    ax.set_title("Accuracy against latency (circle torch, square ONNX, triangle GGUF)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    scatter = out_dir / "accuracy_latency.png"
    fig.savefig(scatter, dpi=120)
    plt.close(fig)

    ups = speedups(result)
    names = [m["name"] for m in models]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(names) + 2), 4.2))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [ups[n]["answer"] or 0.0 for n in names], width=0.4, label="per answer")
    ax.bar([i + 0.2 for i in x], [ups[n]["decode"] or 0.0 for n in names], width=0.4, label="decode tokens/s")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(list(x), names, rotation=25, ha="right", fontsize=7)
    ax.set_ylabel(f"speed-up over {reference_model(result)['name']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    bars = out_dir / "speedup.png"
    fig.savefig(bars, dpi=120)
    plt.close(fig)
    return [scatter, bars]
