"""One training step of full-sequence KD (`positions: all`) with the teacher online against one from the
top-k teacher cache, timed interleaved on a realistic batch.

The telecom-qa recipe's `distill.fullseq` loss (forward KL, T and alpha from the recipe) on 8 examples of
its embedded training split (~230 tokens each); teacher SmolLM2-135M-Instruct, student its 16-layer cut
(`student.layers` of the recipe, `models.prune`; the base cut, which times the same as the SFT one). A
step is forward, backward, AdamW step. Both objectives train the same student, alternately, after one
warm-up step each; the machine may be shared, so read the ratio of neighbouring steps:

    python bench/fullseq_cache_step.py [--repeats 3] [--top-k 64] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

TEACHER = "embedded:smollm2-135m-instruct"


def _step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, objective, batch) -> tuple[float, float]:
    """(seconds, loss) of one forward + backward + optimizer step."""
    start = time.perf_counter()
    out = objective(model, batch)
    out["loss"].backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start, float(out["loss"].detach())


def run(work: Path, repeats: int, top_k: int, threads: int, batch_size: int) -> dict:
    from distill2edge.config import load_recipe
    from distill2edge.data.splits import prepare_data, read_data
    from distill2edge.data.tokenize import collate
    from distill2edge.models import check_same_vocabulary, init_student_from_teacher, load_model
    from distill2edge.train.cached import CachedKD
    from distill2edge.train.objectives import VanillaKD
    from distill2edge.train.teacher_cache import collate_with_index, topk_cache_key, with_example_index
    from distill2edge.train.teacher_cache_build import topk_cache
    from distill2edge.train.trainers import encode_all

    torch.set_num_threads(threads)
    recipe = load_recipe("telecom-qa")
    (work / "data").mkdir(parents=True)
    prepare_data(recipe.data, work / "data")
    examples = read_data(recipe.data, work / "data")["train"][:batch_size]
    student_dir = init_student_from_teacher(TEACHER, work / "student", layers=recipe.student.layers)
    teacher, t_tok = load_model(TEACHER)
    teacher.requires_grad_(False).eval()
    student, s_tok = load_model(str(student_dir))
    vocab = check_same_vocabulary(t_tok, s_tok, teacher.config, student.config).shared_size
    feats = with_example_index(encode_all(s_tok, examples, recipe.data))
    batch = collate_with_index(lambda f: collate(f, s_tok.pad_token_id), feats)
    loss = recipe.distill["fullseq"].loss
    key = topk_cache_key("bench", feats, vocab, "all")
    start = time.perf_counter()
    entry, stats = topk_cache(work / "cache", key, lambda: teacher, feats, pad_id=s_tok.pad_token_id,
                              vocab_size=vocab, k=top_k, temperature=loss.temperature, batch_size=8,
                              progress=False, positions="all")
    build_s = time.perf_counter() - start
    objectives = {"online": VanillaKD(teacher, loss, vocab, positions="all"),
                  "cached": CachedKD(entry, loss, vocab, top_k, "uniform", positions="all")}
    with torch.no_grad():  # the two losses on the same weights
        first = {name: {k: float(v) for k, v in obj(student, batch).items()} for name, obj in objectives.items()}
    optimizer = torch.optim.AdamW(student.parameters(), lr=3e-4)
    for obj in objectives.values():  # warm-up
        _step(student, optimizer, obj, batch)
    times: dict[str, list[float]] = {name: [] for name in objectives}
    for _ in range(repeats):
        for name, obj in objectives.items():
            times[name].append(_step(student, optimizer, obj, batch)[0])
    ratios = [o / c for o, c in zip(times["online"], times["cached"], strict=True)]
    tokens = batch["attention_mask"].sum(1).tolist()
    return {
        "batch": len(feats), "mean_tokens": round(sum(tokens) / len(tokens), 1), "max_tokens": max(tokens),
        "kd_rows": int(entry.offsets[-1]), "top_k": top_k, "threads": threads, "loss_config": loss.model_dump(),
        "student_layers": len(recipe.student.layers), "entry_mb": round(stats.bytes / 2**20, 2),
        "cache_build_s": round(build_s, 2), "first_step_terms": first,
        "step_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "online_over_cached": [round(r, 3) for r in ratios], "median_ratio": round(statistics.median(ratios), 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--top-k", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(Path(tmp), args.repeats, args.top_k, args.threads, args.batch_size)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
