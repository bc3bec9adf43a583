"""Training with several processes through `accelerate launch`: 2 CPU processes (gloo) on tiny models.

The recipe trains a LoRA SFT student, then distils into it with DSKD (trainable projectors in `aux`, LM
head and embeddings read by the objective). Two processes at grad_accum 1 see the global batch of one
process at grad_accum 2, so the per-step history (train_history.json) must agree. Measured on the
project's CPU machine: DDP is bit-identical to one process (max |diff| 0.0); FSDP2 differs by float32
rounding of its sharded reductions (max |diff| 5e-7). Tolerances: 1e-6 absolute for DDP, 1e-5 for FSDP.

accelerate 1.15 ignores `--use_fsdp` on CPU (it wraps in DDP), so the FSDP tests launch through
`fsdp_cpu_main.py`, which forces accelerate's FSDP state; FSDP version 1 does not run on CPU at all.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from distill2edge.train import distributed as dist

HERE = Path(__file__).parent
TRAINED = ("sft_student", "distill.dskd")
# FSDP version 1 on CPU, seen with torch 2.13.0 / accelerate 1.15.0: torch's FSDP init raises
# "ValueError: Inconsistent compute device and `device_id` on rank 0: cpu vs cpu:0" (accelerate passes
# device_id cpu:0). With sync_module_states on, accelerate fails first: "RuntimeError: There are
# currently no available devices found, must be one of 'XPU', 'CUDA', 'MLU', 'NPU', 'MUSA', or 'HPU'."
FSDP1_CPU_ERROR = "Inconsistent compute device and `device_id`"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(
    args: list[str], *, fsdp: int | None = None, env: dict[str, str] | None = None, timeout: int = 300,
) -> subprocess.CompletedProcess:
    """`accelerate launch` 2 processes on this machine: `-m distill2edge ARGS` (DDP), or with `fsdp` the
    FSDP version to force through fsdp_cpu_main.py."""
    flags = ["--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
             "--main_process_port", str(_free_port())]
    if fsdp is None:
        target = ["--multi_gpu", "-m", "distill2edge"]
    else:
        # sync_module_states off: accelerate refuses it without an accelerator (every process loads the weights).
        target = ["--use_fsdp", "--fsdp_version", str(fsdp), "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
                  "--fsdp_sync_module_states", "false", str(HERE / "fsdp_cpu_main.py")]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", *flags, *target, *args],
        env=full_env, capture_output=True, text=True, timeout=timeout, check=False,
    )


def history(run: Path, stage: str) -> dict:
    return json.loads((run / "stages" / stage / "model" / "train_history.json").read_text())


def rows(h: dict) -> list[tuple[int, str, float]]:
    """(step, name, value) of every logged number except the learning rate."""
    return [(r["step"], k, v) for r in h["history"] for k, v in r.items() if k not in ("step", "lr", "time_s")]


def assert_same_history(a: Path, b: Path, tol: float) -> float:
    """Both runs logged the same steps and values within `tol`; returns the largest difference."""
    worst = 0.0
    for stage in TRAINED:
        ra, rb = rows(history(a, stage)), rows(history(b, stage))
        assert [r[:2] for r in ra] == [r[:2] for r in rb], stage
        for (step, key, x), (_, _, y) in zip(ra, rb):
            assert y == pytest.approx(x, abs=tol, rel=0), f"{stage} step {step} {key}: {x} vs {y}"
            worst = max(worst, abs(x - y))
    return worst


@pytest.fixture(scope="module")
def recipe_yaml(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path) -> Path:
    """Student SFT (LoRA without dropout, 2 steps) then DSKD from the tiny teacher (5 steps, validation every
    2, checkpoints every 2) at batch_size 2 and grad_accum 1 (one process overrides grad_accum to 2)."""
    root = tmp_path_factory.mktemp("dist-recipe")
    with (root / "qa.jsonl").open("w") as fh:
        for c in range(10):
            ctx = f"cell {c} uses band n{70 + c} and the amf {c} serves slice {c * 3}."
            for q, (question, answer) in enumerate([(f"which band does cell {c} use?", f"n{70 + c}"),
                                                    (f"which amf serves cell {c}?", f"amf {c}"),
                                                    (f"which slice is served in cell {c}?", f"slice {c * 3}")]):
                fh.write(json.dumps({"id": f"{c}-{q}", "context": ctx, "question": question, "answer": answer}) + "\n")
    train = {"epochs": 1, "batch_size": 2, "grad_accum": 1, "lr": 1e-3, "checkpoint_every": 2, "early_stopping": None}
    recipe = {
        "name": "tiny-dist",
        "teachers": {"tiny": {"path": str(tiny_llama_dir)}},
        "student": {"init_from": str(tiny_llama_dir), "num_layers": 2},
        "data": {"source": str(root / "qa.jsonl"), "max_length": 96, "split": {"validation": 0.2, "test": 0.2}},
        "sft": {"teacher": {"enabled": False},
                "student": {"lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "train": {**train, "max_steps": 2}}},
        "distill": {"dskd": {"algorithm": "dskd", "teacher_state": "base", "student": "sft",
                             "train": {**train, "eval_every": 2}}},
    }
    path = root / "tiny-dist.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def two_process_run(recipe_yaml: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipe's training stages by `accelerate launch -m distill2edge distill` on 2 processes (DDP)."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    done = launch(["distill", str(recipe_yaml), "--out", str(out), "--no-progress"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"student distilled: dskd: {out}/stages/distill.dskd/model" in done.stdout
    return out


def test_shard_takes_every_world_size_th_item_and_pads(monkeypatch):
    assert dist.shard(range(5)) == [(i, True) for i in range(5)]  # one process: everything
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert dist.shard(range(5), pad_with=0) == [(0, True), (2, True), (4, True)]
    monkeypatch.setenv("RANK", "1")
    assert dist.shard(range(5), pad_with=0) == [(1, True), (3, True), (0, False)]  # padded to 3 forwards
    assert dist.shard(range(5)) == [(1, True), (3, True)]
    assert not dist.is_main() and dist.is_distributed()


def test_two_processes_reproduce_one_process(two_process_run: Path, recipe_yaml: Path, tmp_path: Path):
    """1 process at grad_accum 2 and 2 processes at grad_accum 1: same steps, losses and saved weights."""
    one = tmp_path / "one"
    accum = ["--set", "sft.student.train.grad_accum=2", "--set", "distill.dskd.train.grad_accum=2"]
    # A fresh process, as the launched ones: LoRA adapters draw their initial values from the process's
    # random state when the stage starts (the launched runs then share the main process's).
    done = subprocess.run([sys.executable, "-m", "distill2edge", "distill", str(recipe_yaml), "--out", str(one),
                           "--no-progress", *accum], env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    for stage in TRAINED:
        assert history(one, stage)["parallel"] is None and history(two_process_run, stage)["parallel"] == "DDP x 2"
    assert history(one, "distill.dskd")["steps"] == 5  # 18 examples, 2 x 2 per step
    assert_same_history(one, two_process_run, tol=1e-6)
    a = load_file(one / "stages/distill.dskd/model/model.safetensors")
    b = load_file(two_process_run / "stages/distill.dskd/model/model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)

    manifest = json.loads((two_process_run / "manifest.json").read_text())
    assert manifest["processes"] == 2 and manifest["status"] == "distilled"
    assert [s for s, r in manifest["stages"].items() if r["status"] == "complete"] == [
        "data", "student_init", "sft_student", "distill.dskd"]
    assert not (two_process_run / "metrics.json").exists()  # evaluation is not part of `distill`


def test_killed_two_process_run_resumes(two_process_run: Path, recipe_yaml: Path, tmp_path: Path):
    """Stopped after step 3 of the distillation (last checkpoint: step 2), then relaunched: it resumes
    from the checkpoint and ends with the uninterrupted run's history."""
    out = tmp_path / "run"
    args = ["distill", str(recipe_yaml), "--out", str(out), "--no-progress"]
    killed = launch(args, env={"DISTILL2EDGE_STOP_AFTER_STEP": "3"})
    assert killed.returncode != 0 and "stopped after step 3" in killed.stderr
    ckpt = out / "stages/distill.dskd.work/checkpoint"
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "optimizer.pt", "rng_0.pt", "rng_1.pt", "scheduler.pt", "state.json", "trainable.pt"]
    assert json.loads((ckpt / "state.json").read_text())["step"] == 2
    assert json.loads((out / "manifest.json").read_text())["stages"]["distill.dskd"]["status"] == "failed"

    resumed = launch(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "[sft_student] reusing completed stage" in resumed.stdout
    assert_same_history(two_process_run, out, tol=1e-6)


def test_fsdp2_matches_ddp_and_resumes(two_process_run: Path, recipe_yaml: Path, tmp_path: Path):
    """FSDP2 (transformer layers wrapped, LoRA student, DSKD projectors sharded with it): killed after
    step 3, resumed from gathered full-state checkpoints, same history as DDP within 1e-5."""
    out = tmp_path / "run"
    args = ["distill", str(recipe_yaml), "--out", str(out), "--no-progress"]
    killed = launch(args, fsdp=2, env={"DISTILL2EDGE_STOP_AFTER_STEP": "3"})
    assert killed.returncode != 0 and "stopped after step 3" in killed.stderr, killed.stderr[-3000:]
    resumed = launch(args, fsdp=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for stage in TRAINED:
        assert history(out, stage)["parallel"] == "FSDP2 x 2"
    assert_same_history(two_process_run, out, tol=1e-5)


def test_fsdp1_on_cpu(recipe_yaml: Path, tmp_path: Path):
    """FSDP version 1 cannot run on CPU with this torch; if that changes, it must train like the others."""
    out = tmp_path / "run"
    done = launch(["distill", str(recipe_yaml), "--out", str(out), "--no-progress"], fsdp=1)
    if done.returncode != 0 and FSDP1_CPU_ERROR in done.stderr:
        pytest.skip(f"FSDP1 on CPU: ValueError: {FSDP1_CPU_ERROR} on rank 0: cpu vs cpu:0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert history(out, "distill.dskd")["parallel"] == "FSDP1 x 2"
