"""Where a frozen teacher runs: on the training device, on a device of its own, or offloaded to CPU memory.

A teacher on its own device (a second GPU, or the CPU beside a GPU student) gets its inputs moved there
and its outputs (logits, hidden states) moved back, so objectives never see the difference. Offloading
keeps the weights in CPU memory and streams each layer to the execution device during the forward pass
(accelerate's `cpu_offload` hooks), trading time for memory.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from distill2edge.models.hf import input_embeddings, output_embeddings


def resolve_device(pref: str, local_rank: int | None = None) -> torch.device:
    """The torch device for `pref` (`auto`, `cpu`, `cuda`, `cuda:N`): `auto` is CUDA when available; asking
    for CUDA without it is an error, not a silent CPU run. `local_rank` (one process per GPU under
    `accelerate launch`) picks the GPU of a bare `cuda`."""
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device: {pref} was asked for but no CUDA device is available")
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(pref)
    if device.type == "cuda" and device.index is None and local_rank is not None:
        device = torch.device("cuda", local_rank)
    return device


class PlacedTeacher(nn.Module):
    """Runs `model` on `device`; tensors passed in go there, the outputs come back to the inputs' device."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.model = model
        self.run_device = device
        self.config = model.config

    def forward(self, **kwargs: Any) -> Any:
        back = next((v.device for v in kwargs.values() if torch.is_tensor(v)), self.run_device)
        out = self.model(**{k: v.to(self.run_device) if torch.is_tensor(v) else v for k, v in kwargs.items()})
        if back != self.run_device:
            if getattr(out, "logits", None) is not None:
                out.logits = out.logits.to(back)
            if getattr(out, "hidden_states", None) is not None:
                out.hidden_states = tuple(h.to(back) for h in out.hidden_states)
        return out

    def get_input_embeddings(self) -> nn.Module:
        return input_embeddings(self.model)

    def get_output_embeddings(self) -> nn.Module:
        return output_embeddings(self.model)


def place_teacher(model: nn.Module, train_device: torch.device, device: str | None, offload: bool) -> nn.Module:
    """The teacher ready to be called from `train_device`: moved, wrapped or offloaded as configured.

    `model` must be on the CPU when `offload` is set (it is loaded there). Returns `model` itself when it
    simply runs on `train_device`.
    """
    run_on = torch.device(device) if device else train_device
    if offload:
        from accelerate import cpu_offload

        cpu_offload(model, execution_device=run_on)
    else:
        model.to(run_on)
    return model if run_on == train_device else PlacedTeacher(model, run_on)


def teacher_load_device(train_device: torch.device, device: str | None, offload: bool) -> torch.device:
    """Where to load the teacher's weights: the CPU when offloading, else where it will run."""
    return torch.device("cpu") if offload else torch.device(device) if device else train_device
