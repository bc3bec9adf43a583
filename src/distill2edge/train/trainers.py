"""Trainers as plain functions: SFT (LoRA or full) and distillation (any registered algorithm).

Each takes model folders and examples, trains with `loop.train`, and saves a plain Hugging Face model
folder (LoRA adapters merged) to `out_dir`. `work_dir` holds checkpoints, so calling the same trainer
again after a kill resumes where it stopped. The pipeline wraps each call in a resumable `Run.stage`
(`distill2edge.runs`); "stage" means only that.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distill2edge.config import DataConfig, DistillConfig, SFTStageConfig, TrainConfig
from distill2edge.data.classify import ClassExample
from distill2edge.data.examples import TextExample
from distill2edge.data.qa import QAExample
from distill2edge.data.tokenize import TEACHER_PREFIX, collate_multi, collate_pair, encode_text, pad_token_id
from distill2edge.models import DTYPES, load_model
from distill2edge.models.placement import place_teacher, teacher_load_device
from distill2edge.schema.algorithms import algorithm_spec
from distill2edge.tasks import get_task
from distill2edge.train import distributed as dist
from distill2edge.train.algorithms import DistillSetup, build_algorithm
from distill2edge.train.loop import Objective, TrainResult, train
from distill2edge.train.lora import apply_lora, merge_lora
from distill2edge.train.objectives import sft_objective

ProbeFactory = Callable[[PreTrainedTokenizerBase], Callable[[torch.nn.Module], dict[str, float]] | None]
"""Given the trained model's tokenizer, a scorer run at each validation (`evaluate.probe`), or None."""


@dataclass
class StageOutput:
    model_dir: Path
    result: TrainResult
    trainable_params: int
    total_params: int
    info: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        losses = [h["loss"] for h in self.result.history if "loss" in h]
        steps = [h for h in self.result.history if "loss" in h]
        parts = [k for k in (steps[0] if steps else {}) if k not in ("step", "lr", "loss")]
        curves = {f"{edge}_{k}": steps[i][k] for k in parts for edge, i in (("first", 0), ("last", -1))}
        return {
            "steps": self.result.steps,
            "epochs_completed": self.result.epochs_completed,
            "best_val_loss": self.result.best_val_loss,
            "best_step": self.result.best_step,
            "best_by": self.result.best_by,
            "stopped_early": self.result.stopped_early,
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "train_seconds": round(self.result.wall_time_s, 2),
            **curves,
            **self.info,
        }


def encode_all(
    tok: PreTrainedTokenizerBase, examples: Sequence[QAExample | ClassExample | TextExample], data: DataConfig
) -> list[dict[str, list[int]]]:
    """Prompt + answer ids with labels on the answer only (the QA answer, or the label's verbalizer):
    `data.task`'s encoding (`tasks.Task.encode`). Passages (`TextExample`, teacher-written text) are whole
    sequences without labels (`encode_text`); rows keep the order of `examples`."""
    task = get_task(data.task)
    if not any(isinstance(ex, TextExample) for ex in examples):
        return task.encode(tok, examples, data)
    labelled = [ex for ex in examples if not isinstance(ex, TextExample)]
    rows = iter(task.encode(tok, labelled, data))
    return [encode_text(tok, ex, data.max_length) if isinstance(ex, TextExample) else next(rows) for ex in examples]


def _save(model: PreTrainedModel, tok: PreTrainedTokenizerBase, out_dir: Path, result: TrainResult) -> None:
    if not dist.is_main():  # several processes trained the same weights; the main one saves them
        return
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
    device: torch.device, desc: str, progress: bool, probe: ProbeFactory | None = None,
) -> TrainResult:
    return train(
        model, objective, encode_all(tok, splits["train"], data), encode_all(tok, splits.get("validation", []), data),
        cfg, work_dir, pad_id=tok.pad_token_id, device=device, progress=progress, desc=desc,
        probe=probe(tok) if probe else None,
    )


def run_sft(
    model_ref: str, splits: dict[str, list[QAExample]], data: DataConfig, cfg: SFTStageConfig,
    out_dir: Path, work_dir: Path, *, device: torch.device, dtype: str = "float32", progress: bool = True,
    desc: str = "sft", probe: ProbeFactory | None = None,
) -> StageOutput:
    """Supervised fine-tuning on prompt -> answer, loss on answer tokens only (`probe`: see `loop.train`)."""
    base, tok = load_model(model_ref, dtype=DTYPES[dtype], device=device)
    torch.manual_seed(cfg.train.seed)  # LoRA adapters start from the same random weights in every run
    model = apply_lora(base, cfg.lora)
    trainable, total = _count(model)
    result = _run(model, sft_objective, tok, splits, data, cfg.train, work_dir, device, desc, progress, probe)
    merged = merge_lora(model)
    _save(merged, tok, out_dir, result)
    return StageOutput(out_dir, result, trainable, total)


def run_distill(
    teacher_ref: str, student_ref: str, splits: dict[str, list[QAExample]], data: DataConfig,
    cfg: DistillConfig, out_dir: Path, work_dir: Path, *, device: torch.device,
    teacher_dtype: str = "float32", student_dtype: str = "float32", progress: bool = True, desc: str = "distill",
    cache_root: Path | None = None, teacher_device: str | None = None, teacher_offload: bool = False,
    probe: ProbeFactory | None = None,
) -> StageOutput:
    """Distil `teacher_ref` into `student_ref` with the algorithm `cfg.algorithm` names.

    Vanilla KD needs one vocabulary (padding rows aside) and refuses others; DSKD tokenizes every
    sample with both tokenizers when the vocabularies differ. With `cfg.cache.enabled` the teacher's
    outputs come from a teacher cache under `cfg.cache.dir` or `cache_root` (`train.cached`).
    `teacher_device` / `teacher_offload` place the teacher apart from the student (`models.placement`).
    `probe` scores the student at each validation (`loop.train`).
    """
    if teacher_device is not None and dist.world_size() > 1:
        raise ValueError(
            f"teacher device {teacher_device!r} with {dist.world_size()} processes: each process trains on its own "
            "device, so a fixed teacher device would be shared by all; leave teachers.NAME.device empty (offload works)"
        )
    placed = teacher_device is not None or teacher_offload
    if placed and algorithm_spec(cfg.algorithm).teacher_beside_student != "never" and not cfg.cache.enabled:
        raise ValueError(
            f"teacher device/offload: online {cfg.algorithm} reads the teacher's LM head and embeddings beside the "
            "student; enable the teacher cache (distill.NAME.cache.enabled: true), which keeps only those two "
            "on the student's device"
        )
    if cfg.cache.enabled:
        from distill2edge.train.cached import cached_distill_setup

        root = cfg.cache.dir or cache_root or work_dir / "teacher-cache"
        c = cached_distill_setup(
            teacher_ref, student_ref, splits, data, cfg, Path(root), encode=encode_all, apply_lora=apply_lora,
            device=device, teacher_dtype=teacher_dtype, student_dtype=student_dtype, progress=progress,
            teacher_device=teacher_device, teacher_offload=teacher_offload,
        )
        return _train_and_save(
            c.student, c.tokenizer, c.setup, c.train_data, c.val_data, c.collate_fn, cfg, out_dir, work_dir,
            device=device, progress=progress, desc=desc, probe=probe,
        )
    t_load = teacher_load_device(device, teacher_device, teacher_offload)
    teacher: torch.nn.Module  # placement may wrap the loaded model (`models.placement`)
    teacher, t_tok = load_model(teacher_ref, dtype=DTYPES[teacher_dtype], device=t_load)
    teacher = place_teacher(teacher.requires_grad_(False).eval(), device, teacher_device, teacher_offload)
    student, s_tok = load_model(student_ref, dtype=DTYPES[student_dtype], device=device)
    torch.manual_seed(cfg.train.seed)  # LoRA adapters start from the same random weights in every run
    model = apply_lora(student, cfg.lora)
    torch.manual_seed(cfg.train.seed)  # projectors start from the same random weights in every run
    setup = build_algorithm(cfg.algorithm, teacher, model, t_tok, s_tok, cfg)
    train_data, val_data = encode_all(s_tok, splits["train"], data), encode_all(s_tok, splits.get("validation", []), data)
    collate_fn = None
    if setup.teacher_tokenizer is not None:
        t_tok2 = setup.teacher_tokenizer
        train_data = _with_teacher(train_data, encode_all(t_tok2, splits["train"], data))
        val_data = _with_teacher(val_data, encode_all(t_tok2, splits.get("validation", []), data))
        t_pad = pad_token_id(t_tok2)
        collate_fn = partial(collate_pair, pad_id=s_tok.pad_token_id, teacher_pad_id=t_pad)
    return _train_and_save(
        model, s_tok, setup, train_data, val_data, collate_fn, cfg, out_dir, work_dir, device=device,
        progress=progress, desc=desc, probe=probe,
    )


def _train_and_save(
    model: torch.nn.Module, s_tok: PreTrainedTokenizerBase, setup: DistillSetup, train_data: list, val_data: list,
    collate_fn, cfg: DistillConfig, out_dir: Path, work_dir: Path, *, device: torch.device, progress: bool, desc: str,
    probe: ProbeFactory | None = None,
) -> StageOutput:
    trainable, total = _count(model)
    result = train(
        model, setup.objective, train_data, val_data, cfg.train, work_dir, pad_id=s_tok.pad_token_id,
        device=device, progress=progress, desc=desc, aux=setup.aux, aux_lr=setup.aux_lr, collate_fn=collate_fn,
        probe=probe(s_tok) if probe else None,
    )
    merged = merge_lora(model)
    _save(merged, s_tok, out_dir, result)
    return StageOutput(out_dir, result, trainable, total, info=setup.info)


def _with_teacher(
    student: list[dict[str, list[int]]], teacher: list[dict[str, list[int]]], prefix: str = TEACHER_PREFIX
) -> list[dict[str, list[int]]]:
    """Each sample's student features plus the teacher's tokenization of it under `prefix`."""
    return [{**s, **{prefix + k: v for k, v in t.items()}} for s, t in zip(student, teacher)]


def run_multi_distill(
    teachers: dict[str, tuple[str, str]], student_ref: str, splits: dict[str, list], data: DataConfig,
    cfg: DistillConfig, out_dir: Path, work_dir: Path, *, device: torch.device, student_dtype: str = "float32",
    progress: bool = True, desc: str = "distill", stage: str = "distill", probe: ProbeFactory | None = None,
) -> StageOutput:
    """Multi-teacher KD (`train.multi`): `teachers` maps each teacher's name to (model ref, dtype).

    Teachers that share the student's vocabulary read its token ids; every other one gets each sample
    in its own tokenization (batch keys prefixed `teacher[NAME]_`).
    """
    from distill2edge.train.multi import build_multi_teacher

    loaded = {}
    for name, (ref, dtype) in teachers.items():
        teacher, tok = load_model(ref, dtype=DTYPES[dtype], device=device)
        loaded[name] = (teacher.requires_grad_(False).eval(), tok)
    student, s_tok = load_model(student_ref, dtype=DTYPES[student_dtype], device=device)
    torch.manual_seed(cfg.train.seed)  # LoRA adapters start from the same random weights in every run
    model = apply_lora(student, cfg.lora)
    labels = get_task(data.task).train_labels(splits["train"])
    torch.manual_seed(cfg.train.seed)  # projectors start from the same random weights in every run
    setup, extra = build_multi_teacher(loaded, model, s_tok, cfg, data, labels, stage=stage)
    trainable, total = _count(model)
    encoded = {}
    for split in ("train", "validation"):
        rows = encode_all(s_tok, splits.get(split, []), data)
        for prefix, tok in extra.items():
            rows = _with_teacher(rows, encode_all(tok, splits.get(split, []), data), prefix)
        encoded[split] = rows
    pads = {"": s_tok.pad_token_id, **{p: pad_token_id(t) for p, t in extra.items()}}
    result = train(
        model, setup.objective, encoded["train"], encoded["validation"], cfg.train, work_dir, pad_id=s_tok.pad_token_id,
        device=device, progress=progress, desc=desc, aux=setup.aux, aux_lr=setup.aux_lr,
        collate_fn=partial(collate_multi, pads=pads), probe=probe(s_tok) if probe else None,
    )
    merged = merge_lora(model)
    _save(merged, s_tok, out_dir, result)
    return StageOutput(out_dir, result, trainable, total, info=setup.info)
