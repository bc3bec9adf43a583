"""Typed access to the parts of a Hugging Face model held behind an `nn.Module` annotation.

`nn.Module.__getattr__` types every attribute it finds as `Tensor | Module`, so a type checker reads
`model.config` or `model.get_input_embeddings` as that whenever the model is annotated `nn.Module` (as it
is wherever a PEFT wrapper, a placed or offloaded teacher or a test stand-in may arrive); these helpers
give them their real types. They check nothing at run time, so duck-typed stand-ins pass through.
"""

from __future__ import annotations

from typing import cast

from torch import Tensor, nn
from transformers import PretrainedConfig, PreTrainedModel


def model_config(model: nn.Module) -> PretrainedConfig:
    """`model.config`, typed as the Hugging Face config it is."""
    return cast(PretrainedConfig, model.config)


def text_config(model: nn.Module) -> PretrainedConfig:
    """The config of the model's text decoder: `get_text_config()` where the config has it (multimodal
    configs nest the decoder's), else the config itself."""
    config = model_config(model)
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def input_embeddings(model: nn.Module) -> nn.Module:
    """`model.get_input_embeddings()`: the token embedding module."""
    return cast(PreTrainedModel, model).get_input_embeddings()


def output_embeddings(model: nn.Module) -> nn.Module:
    """`model.get_output_embeddings()`: the LM head."""
    head: nn.Module = cast(PreTrainedModel, model).get_output_embeddings()
    return head


def decoder_stack(model: nn.Module) -> nn.Module:
    """`model.get_decoder()`: the decoder stack (embeddings, layers, final norm) without the LM head."""
    stack: nn.Module = cast(PreTrainedModel, model).get_decoder()
    return stack


def module_weight(module: nn.Module) -> Tensor:
    """`module.weight` (an embedding's or a linear layer's), typed as the tensor it is."""
    return cast(Tensor, module.weight)
