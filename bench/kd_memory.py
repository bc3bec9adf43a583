"""Peak memory of the vanilla-KD loss (CE + forward KL) with a 262,144-entry vocabulary, as the number of
distilled tokens grows: the usual logits path against the fused path (`losses.fused`).

Only the loss is measured: random last hidden states (student d=576, teacher d=640, SmolLM2 and Gemma-3
widths) and LM heads of Gemma's vocabulary size, one forward and backward. Each configuration runs in its
own process (peak RSS never goes down within a process):

    python bench/kd_memory.py                      # every configuration, a table, JSON on stdout
    python bench/kd_memory.py --one fused 1024     # one configuration

The heads and their gradients ([V, d] each) are the floor both paths share; what grows with the tokens
is the logits path's [tokens, V] float32 tensors.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

VOCAB, D_S, D_T = 262_144, 576, 640


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def one(mode: str, tokens: int, chunk_vocab: int) -> dict:
    from distill2edge.losses import causal_lm_ce, kd_loss  # noqa: F401 - imported before measuring the baseline
    from distill2edge.losses.dskd import LMHead
    from distill2edge.losses.fused import fused_kd_ce

    torch.manual_seed(0)
    torch.set_num_threads(2)
    s_w = (torch.randn(VOCAB, D_S) * 0.02).requires_grad_()
    t_w = torch.randn(VOCAB, D_T) * 0.02
    s_h = torch.randn(tokens, D_S).requires_grad_()
    t_h = torch.randn(tokens, D_T)
    y = torch.randint(0, VOCAB, (tokens,))
    base = rss_mib()
    start = time.perf_counter()
    if mode == "fused":
        kl, ce = fused_kd_ce(s_h, LMHead(s_w), t_h, LMHead(t_w), y, temperature=2.0, chunk_vocab=chunk_vocab)
        loss = 0.5 * ce.mean() + 0.5 * 4.0 * kl.mean()
    else:
        zs, zt = s_h @ s_w.T, (t_h @ t_w.T).detach()
        kd = kd_loss(zs[None], zt[None], torch.ones(1, tokens, dtype=torch.bool), temperature=2.0)
        loss = 0.5 * torch.nn.functional.cross_entropy(zs, y) + 0.5 * kd
    loss.backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "mode": mode, "tokens": tokens, "vocab": VOCAB, "chunk_vocab": chunk_vocab if mode == "fused" else None,
        "loss": float(loss.detach()), "seconds": round(seconds, 2), "rss_before_mib": round(base, 1),
        "peak_over_before_mib": round(peak - base, 1),
        "one_fp32_logits_tensor_mib": round(tokens * VOCAB * 4 / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--one", nargs=2, metavar=("MODE", "TOKENS"), help="run one configuration (plain|fused, tokens)")
    p.add_argument("--tokens", type=int, nargs="+", default=[128, 512, 1024])
    p.add_argument("--chunk-vocab", type=int, default=16384)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.chunk_vocab)))
        return 0
    rows = []
    for tokens in args.tokens:
        for mode in ("plain", "fused"):
            out = subprocess.run(
                [sys.executable, __file__, "--one", mode, str(tokens), "--chunk-vocab", str(args.chunk_vocab)],
                capture_output=True, text=True, check=True,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| tokens | logits path: peak over start (MiB) | fused: peak over start (MiB) | ratio | s (logits / fused) | loss (logits / fused) |")
    print("|---|---|---|---|---|---|")
    for tokens in args.tokens:
        a, b = (next(r for r in rows if r["tokens"] == tokens and r["mode"] == m) for m in ("plain", "fused"))
        print(f"| {tokens} | {a['peak_over_before_mib']:.0f} | {b['peak_over_before_mib']:.0f} | "
              f"{a['peak_over_before_mib'] / b['peak_over_before_mib']:.2f} | {a['seconds']} / {b['seconds']} | "
              f"{a['loss']:.4f} / {b['loss']:.4f} |")
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
