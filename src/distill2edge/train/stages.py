"""Training stages as plain functions: SFT (LoRA or full) and vanilla KD.

Each takes model folders and examples, trains with `loop.train`, and saves a plain Hugging Face model
folder (LoRA adapters merged) to `out_dir`. `work_dir` holds checkpoints, so calling the same stage
again after a kill resumes where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distill2edge.config import DataConfig, DistillConfig, SFTStageConfig, TrainConfig
from distill2edge.data.qa import QAExample
from distill2edge.data.tokenize import encode_for_training
from distill2edge.models import DTYPES, check_same_vocabulary, load_model
from distill2edge.train.lora import apply_lora, merge_lora
from distill2edge.train.loop import Objective, TrainResult, train
from distill2edge.train.objectives import VanillaKD, sft_objective



@dataclass
class StageOutput:
    model_dir: Path
    result: TrainResult
    trainable_params: int
    total_params: int

    def metrics(self) -> dict[str, Any]:
        losses = [h["loss"] for h in self.result.history if "loss" in h]
        return {
            "steps": self.result.steps,
            "epochs_completed": self.result.epochs_completed,
            "best_val_loss": self.result.best_val_loss,
            "stopped_early": self.result.stopped_early,
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "train_seconds": round(self.result.wall_time_s, 2),
        }


def encode_all(
    tok: PreTrainedTokenizerBase, examples: Sequence[QAExample], data: DataConfig
) -> list[dict[str, list[int]]]:
    return [encode_for_training(tok, ex, data.prompt_template, data.max_length) for ex in examples]


def _save(model: PreTrainedModel, tok: PreTrainedTokenizerBase, out_dir: Path, result: TrainResult) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    (out_dir / "train_history.json").write_text(json.dumps(result.to_json(), indent=1))


def _count(model: torch.nn.Module) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def _run(
    model: torch.nn.Module, objective: Objective, tok: PreTrainedTokenizerBase,
    splits: dict[str, list[QAExample]], data: DataConfig, cfg: TrainConfig, work_dir: Path,
    device: torch.device, desc: str, progress: bool,
) -> TrainResult:
    return train(
        model, objective, encode_all(tok, splits["train"], data), encode_all(tok, splits.get("validation", []), data),
        cfg, work_dir, pad_id=tok.pad_token_id, device=device, progress=progress, desc=desc,
    )


def run_sft(
    model_ref: str, splits: dict[str, list[QAExample]], data: DataConfig, cfg: SFTStageConfig,
    out_dir: Path, work_dir: Path, *, device: torch.device, dtype: str = "float32", progress: bool = True,
    desc: str = "sft",
) -> StageOutput:
    """Supervised fine-tuning on prompt -> answer, loss on answer tokens only."""
    model, tok = load_model(model_ref, dtype=DTYPES[dtype], device=device)
    model = apply_lora(model, cfg.lora)
    trainable, total = _count(model)
    result = _run(model, sft_objective, tok, splits, data, cfg.train, work_dir, device, desc, progress)
    merged = merge_lora(model)
    _save(merged, tok, out_dir, result)
    return StageOutput(out_dir, result, trainable, total)


def run_vanilla_kd(
    teacher_ref: str, student_ref: str, splits: dict[str, list[QAExample]], data: DataConfig,
    cfg: DistillConfig, out_dir: Path, work_dir: Path, *, device: torch.device,
    teacher_dtype: str = "float32", student_dtype: str = "float32", progress: bool = True,
) -> StageOutput:
    """Vanilla KD: teacher and student must share a vocabulary (padding rows aside)."""
    teacher, t_tok = load_model(teacher_ref, dtype=DTYPES[teacher_dtype], device=device)
    student, s_tok = load_model(student_ref, dtype=DTYPES[student_dtype], device=device)
    align = check_same_vocabulary(t_tok, s_tok, teacher.config, student.config)
    teacher.requires_grad_(False).eval()
    model = apply_lora(student, cfg.lora)
    trainable, total = _count(model)
    objective = VanillaKD(teacher=teacher, loss=cfg.loss, vocab_size=align.shared_size)
    result = _run(model, objective, s_tok, splits, data, cfg.train, work_dir, device, "distill", progress)
    merged = merge_lora(model)
    _save(merged, s_tok, out_dir, result)
    return StageOutput(out_dir, result, trainable, total)
