"""One KD epoch with the online teacher against one from the teacher cache: wall time and peak memory.

The telecom-qa recipe's vanilla and DSKD settings (batch 8, T = 2, alpha 0.5, all student weights) on
its embedded training split, teacher SmolLM2-135M-Instruct -> the 8-layer student cut from it. Each
mode runs in its own process, since peak RSS never goes down within one:

    python bench/cache_epoch.py                    # all modes, a table, JSON to --json
    python bench/cache_epoch.py --one cached-topk  # one mode

Modes: `build-topk` / `build-hidden` fill the cache entries (timed, teacher loaded); `online` /
`online-dskd` train an epoch with the teacher in memory; `cached-topk` / `cached-dskd` train an epoch
from the entries (the teacher is never loaded; DSKD keeps its embeddings and head). Validation is off
and the student is fresh each time, so the epochs differ only in where the teacher's outputs come from.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

MODES = ("build-topk", "online", "cached-topk", "build-hidden", "online-dskd", "cached-dskd")


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(mode: str, work: Path, top_k: int, max_train: int | None) -> dict:
    from distill2edge.config import load_recipe
    from distill2edge.data.splits import prepare_data, read_data
    from distill2edge.models import init_student_from_teacher
    from distill2edge.train.cached import cached_distill_setup
    from distill2edge.train.loop import train
    from distill2edge.train.lora import apply_lora
    from distill2edge.train.trainers import encode_all, run_distill

    torch.set_num_threads(2)
    recipe = load_recipe("telecom-qa")
    data = recipe.data if max_train is None else recipe.data.model_copy(update={"max_train": max_train})
    if not (work / "data" / "train.jsonl").exists():
        (work / "data").mkdir(parents=True, exist_ok=True)
        prepare_data(data, work / "data")
    splits = {"train": read_data(data, work / "data")["train"]}
    student_dir = work / "student"
    if not student_dir.exists():
        init_student_from_teacher("embedded:smollm2-135m-instruct", student_dir, num_layers=8)
    teacher = "embedded:smollm2-135m-instruct"
    dskd = mode.endswith(("dskd", "hidden"))
    from distill2edge.config import DistillConfig

    # The answer-only KD settings these figures were measured with (telecom-qa's vanilla/dskd stages until
    # the recipe moved to full-sequence KD; bench/fullseq_cache_step.py times that one, cached and online).
    dcfg = DistillConfig.model_validate({
        "teacher": "smollm2", "algorithm": "dskd" if dskd else "vanilla", "lora": None,
        "loss": {"name": "forward_kl", "alpha": 0.5, "temperature": 2.0},
        "train": {"epochs": 1, "batch_size": 8, "lr": 2.0e-4, "scheduler": "cosine", "warmup_ratio": 0.05,
                  "checkpoint_every": 10_000, "early_stopping": None},
        "dskd": {"projector_lr": 1.0e-3, "chunk_tokens": 256},
    })
    if mode.startswith(("cached", "build")):
        dcfg.cache = dcfg.cache.model_copy(update={"enabled": True, "top_k": top_k, "hidden_dtype": "float16"})
    device = torch.device("cpu")
    for old in (work / f"run-{mode}", work / f"model-{mode}"):  # a finished run would be resumed, not timed
        shutil.rmtree(old, ignore_errors=True)
    base = rss_mib()
    start = time.perf_counter()
    if mode.startswith("build"):
        cached_distill_setup(teacher, str(student_dir), splits, data, dcfg, work / "cache", encode=encode_all,
                             apply_lora=apply_lora, device=device, teacher_dtype="float32",
                             student_dtype="float32", progress=False)
        result = {"seconds": round(time.perf_counter() - start, 1)}
    elif mode.startswith("cached"):
        c = cached_distill_setup(teacher, str(student_dir), splits, data, dcfg, work / "cache", encode=encode_all,
                                 apply_lora=apply_lora, device=device, teacher_dtype="float32",
                                 student_dtype="float32", progress=False)
        assert c.setup.info["teacher_cache_hit"], "run the build mode first"
        ready = rss_mib()
        out = train(c.student, c.setup.objective, c.train_data, None, dcfg.train, work / f"run-{mode}",
                    pad_id=c.tokenizer.pad_token_id, device=device, progress=False, aux=c.setup.aux,
                    aux_lr=c.setup.aux_lr, collate_fn=c.collate_fn)
        result = {"epoch_seconds": round(out.wall_time_s, 1), "rss_ready_mib": round(ready, 1),
                  "steps": out.steps, "last_loss": out.history[-1]["loss"], "cache_mb": c.setup.info["teacher_cache_mb"]}
    else:
        out = run_distill(teacher, str(student_dir), splits, data, dcfg, work / f"model-{mode}", work / f"run-{mode}",
                          device=device, progress=False).result
        result = {"epoch_seconds": round(out.wall_time_s, 1), "steps": out.steps, "last_loss": out.history[-1]["loss"]}
    return {"mode": mode, "rss_start_mib": round(base, 1), "peak_rss_mib": round(peak_mib(), 1),
            "train_examples": len(splits["train"]), **result}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--one", choices=MODES)
    p.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    p.add_argument("--top-k", type=int, default=64)
    p.add_argument("--max-train", type=int, help="cap the training split (default: all 282)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.work, args.top_k, args.max_train)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        rows = []
        for mode in MODES:
            cmd = [sys.executable, __file__, "--one", mode, "--work", str(work), "--top-k", str(args.top_k)]
            if args.max_train:
                cmd += ["--max-train", str(args.max_train)]
            out = subprocess.run(cmd, check=False, capture_output=True, text=True)
            if out.returncode:
                sys.stderr.write(out.stderr)
                raise SystemExit(f"{mode} failed")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
