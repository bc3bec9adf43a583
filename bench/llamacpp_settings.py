"""Which llama.cpp settings decode the CI suite's GGUFs fastest: thread counts x (n_batch, n_ubatch).

Run it on an idle machine (numbers from a loaded one mean nothing):

    .venv/bin/python bench/llamacpp_settings.py --out .benchmarks/llamacpp_settings.json

By default it builds the suite's student and teacher GGUFs (F16 and Q8_0, as bench/conftest.py does) in
`--work` (kept, so a second run starts at once); `--gguf FILE` (repeatable) times other files instead.
For every file and setting: decode tokens/s of the fastest of `--rounds` rounds (32 new tokens after a
4-token prompt, the tokens after the first over the time after the first) and its fraction of the
roofline (bandwidth / bytes read per token, the bandwidth measured with the same threads on a buffer of
that many bytes: `model_roofline` in distill2edge.bench.roofline; the DRAM roofline is kept beside it),
and the time to the first token of a ~200-token telecom-qa prompt (prefill: where n_batch/n_ubatch act).
Prints a Markdown table and the best setting per file; writes everything to `--out`.
Decoding is one token per step, so n_batch / n_ubatch should only move the prefill; threads move both.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DECODE_TOKENS = 32
BATCHES = [(1024, 512), (1024, 1024), (256, 256), (64, 64), (512, 32)]
"""(n_batch, n_ubatch): the runner's current (n_batch = context, llama.cpp's default n_ubatch 512), then
others. n_ubatch <= n_batch."""


def _suite_ggufs(work: Path, threads: int) -> list[Path]:
    """The suite's student and teacher GGUFs (F16, Q8_0), built with bench/conftest.py's Zoo."""
    sys.path.insert(0, str(BENCH_DIR))
    import conftest  # the suite's conftest: its Zoo and the untrained student's Q8_0 gate

    conftest.THREADS = threads
    zoo = conftest.Zoo(work)
    names = ["student-f16-gguf", "teacher-f16-gguf", "student-q8_0-gguf", "teacher-q8_0-gguf"]
    return [zoo.get(n)[1] for n in names]


def time_setting(path: Path, threads: int, n_batch: int, n_ubatch: int, rounds: int,
                 dram: dict[str, Any]) -> dict[str, Any]:
    """Decode and prefill timings of one file at one setting (one warm-up round, then `rounds`); `dram`
    is the `measure_bandwidth` result for `threads`."""
    from distill2edge.bench.llamacpp import LlamaCppRunner
    from distill2edge.bench.roofline import fastest_decode_rate, model_roofline
    from distill2edge.data.qa import load_embedded
    from distill2edge.data.tokenize import encode_for_generation

    runner = LlamaCppRunner(path, threads, 1024, n_batch=n_batch, n_ubatch=n_ubatch)
    try:
        ids = runner.tokenizer("The base station sends", add_special_tokens=True)["input_ids"]
        gens = [runner.generate(ids, DECODE_TOKENS) for _ in range(rounds + 1)][1:]
        rate = fastest_decode_rate([(len(g.tokens), g.ttft_s, g.total_s) for g in gens])
        roof = model_roofline(runner.facts(), len(ids) + DECODE_TOKENS / 2, rate, dram, threads)
        qa = encode_for_generation(runner.tokenizer, load_embedded()[0],
                                  "Context: {context}\nQuestion: {question}\nAnswer:", 256, 4)
        ttft = min(runner.generate(qa, 2).ttft_s for _ in range(rounds + 1))
    finally:
        runner.close()
    return {"file": path.name, "threads": threads, "n_batch": n_batch, "n_ubatch": n_ubatch,
            "decode_tokens_per_s": rate, "roofline_fraction": roof["fraction"],
            "ceiling_tokens_per_s": roof["ceiling_tokens_per_s"], "read_gb_s": roof["read_gb_s"],
            "working_set_mib": roof["working_set_mib"], "dram_roofline_fraction": roof["dram_fraction"],
            "dram_ceiling_tokens_per_s": roof["dram_ceiling_tokens_per_s"], "bytes_per_token": roof["bytes_per_token"],
            "prefill_tokens": len(qa), "ttft_ms": 1000 * ttft}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gguf", type=Path, action="append", default=[], help="GGUF file to time (default: the suite's)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to try (default 1 2)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per setting (default 5)")
    p.add_argument("--work", type=Path, default=Path(".benchmarks/llamacpp_settings_zoo"),
                   help="where the suite's GGUFs are built and kept")
    p.add_argument("--out", type=Path, default=Path(".benchmarks/llamacpp_settings.json"))
    args = p.parse_args(argv)

    from distill2edge.bench.roofline import measure_bandwidth

    args.work.mkdir(parents=True, exist_ok=True)
    files = args.gguf or _suite_ggufs(args.work, max(args.threads))
    bandwidth = {t: measure_bandwidth(t) for t in args.threads}
    rows = []
    print("| File | Threads | n_batch / n_ubatch | Decode tok/s | % of roofline (working set) | TTFT ms (prefill) |\n|---|---|---|---|---|---|")
    for path, threads, (n_batch, n_ubatch) in itertools.product(files, args.threads, BATCHES):
        row = time_setting(path, threads, n_batch, n_ubatch, args.rounds, bandwidth[threads])
        rows.append(row)
        print(f"| {row['file']} | {threads} | {n_batch} / {n_ubatch} | {row['decode_tokens_per_s']:.1f} | "
              f"{100 * (row['roofline_fraction'] or 0):.0f}% | {row['ttft_ms']:.0f} |", flush=True)
    best = {f.name: max((r for r in rows if r["file"] == f.name), key=lambda r: r["decode_tokens_per_s"] or 0)
            for f in files}
    for name, r in best.items():
        print(f"best for {name}: threads {r['threads']}, n_batch {r['n_batch']}, n_ubatch {r['n_ubatch']}: "
              f"{r['decode_tokens_per_s']:.1f} tok/s, {100 * (r['roofline_fraction'] or 0):.0f}% of roofline")
    from distill2edge.bench.system import machine_info

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine_info(), "bandwidth": bandwidth, "rows": rows, "best": best},
                                   indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
