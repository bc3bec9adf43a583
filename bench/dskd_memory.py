"""Peak memory of one DSKD training step: Gemma-3-270M (vocabulary 262,144) teaching the 8-layer
SmolLM2 student (vocabulary 49,152) through cross-model attention, batch 4 x 256 tokens, on CPU.

Run one configuration per process (peak RSS is per process and never goes down):

    python bench/dskd_memory.py --answer-tokens 32 --chunk-tokens 256 --json out.json

It records the resident set after loading both models and the peak after a forward, backward and
AdamW step, so the difference is what the step itself costs. `--chunk-tokens` large enough to hold
every answer position in one chunk turns the chunking off, for comparison.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch


def rss_mib() -> float:
    """Current resident set size in MiB (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256, help="tokens per sample (student tokenization)")
    p.add_argument("--answer-tokens", type=int, default=32, help="answer tokens per sample (the KD positions)")
    p.add_argument("--chunk-tokens", type=int, default=256)
    p.add_argument("--teacher", default="embedded:gemma-3-270m")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(2)

    from distill2edge.config import DistillConfig
    from distill2edge.models import init_student_from_teacher, load_model
    from distill2edge.train.algorithms import build_algorithm

    with tempfile.TemporaryDirectory() as tmp:
        student_dir = init_student_from_teacher("embedded:smollm2-135m-instruct", Path(tmp) / "s", num_layers=8)
        student, s_tok = load_model(str(student_dir))
        teacher, t_tok = load_model(args.teacher)
    teacher.requires_grad_(False).eval()
    cfg = DistillConfig(algorithm="dskd", dskd={"chunk_tokens": args.chunk_tokens})
    setup = build_algorithm("dskd", teacher, student, t_tok, s_tok, cfg)
    params = [*student.parameters(), *setup.aux.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-5)

    def fake(vocab: int, prefix: str = "") -> dict[str, torch.Tensor]:
        """Random ids, the last `answer_tokens` of each row labelled (the KD positions)."""
        ids = torch.randint(10, vocab - 10, (args.batch, args.seq))
        labels = torch.full_like(ids, -100)
        labels[:, -args.answer_tokens :] = ids[:, -args.answer_tokens :]
        return {prefix + "input_ids": ids, prefix + "attention_mask": torch.ones_like(ids), prefix + "labels": labels}

    batch = {**fake(len(s_tok)), **fake(len(t_tok), "teacher_")}
    loaded = rss_mib()
    t0 = time.perf_counter()
    out = setup.objective(student, batch)
    out["loss"].backward()
    opt.step()
    seconds = time.perf_counter() - t0
    result = {
        "teacher": args.teacher, "teacher_vocab": len(t_tok), "student_vocab": len(s_tok),
        "batch": args.batch, "seq": args.seq, "answer_tokens": args.answer_tokens, "chunk_tokens": args.chunk_tokens,
        "rss_after_load_mib": round(loaded, 1), "peak_rss_mib": round(peak_mib(), 1),
        "step_peak_over_load_mib": round(peak_mib() - loaded, 1), "step_seconds": round(seconds, 2),
        "loss": float(out["loss"].detach()), "variant": setup.info["dskd_variant"],
        "full_vocab_fp32_logits_mib": round(args.batch * args.answer_tokens * len(t_tok) * 4 / 2**20, 1),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
