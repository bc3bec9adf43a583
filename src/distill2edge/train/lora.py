"""LoRA through peft: wrap a model for training, merge the adapters back for saving and export."""

from __future__ import annotations

from typing import cast

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model
from transformers import PreTrainedModel

from distill2edge.config import LoraConfig


def apply_lora(model: PreTrainedModel, cfg: LoraConfig | None) -> torch.nn.Module:
    """Wrap with peft LoRA adapters (base weights frozen), or leave all weights trainable when cfg is None."""
    if cfg is None:
        model.requires_grad_(True)
        return model
    peft_cfg = PeftLoraConfig(
        # peft annotates lora_alpha as int, but only divides by it (scaling = alpha / r): a float is valid.
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, task_type="CAUSAL_LM",  # type: ignore[arg-type]
        target_modules=cfg.target_modules,
    )
    return get_peft_model(model, peft_cfg)


def merge_lora(model: torch.nn.Module) -> PreTrainedModel:
    """Fold LoRA adapters into the base weights, giving a plain transformers model to save and export."""
    merge = getattr(model, "merge_and_unload", None)
    merged = merge() if merge is not None else model
    return cast(PreTrainedModel, merged)  # the transformers model `apply_lora` wrapped (or returned as is)
