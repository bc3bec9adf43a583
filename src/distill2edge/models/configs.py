"""Typed access to a Hugging Face model's config.

`nn.Module.__getattr__` types every attribute it finds as `Tensor | Module`, so a type checker reads
`model.config` as that even on a `PreTrainedModel` behind an `nn.Module` annotation (a PEFT wrapper, a
placed or offloaded teacher); these helpers give it its real type.
"""

from __future__ import annotations

from typing import cast

from torch import nn
from transformers import PretrainedConfig


def model_config(model: nn.Module) -> PretrainedConfig:
    """`model.config`, typed as the Hugging Face config it is (no check: stand-ins in tests pass through)."""
    return cast(PretrainedConfig, model.config)


def text_config(model: nn.Module) -> PretrainedConfig:
    """The config of the model's text decoder: `get_text_config()` where the config has it (multimodal
    configs nest the decoder's), else the config itself."""
    config = model_config(model)
    return config.get_text_config() if hasattr(config, "get_text_config") else config
