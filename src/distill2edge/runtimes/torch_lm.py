"""The torch side of every parity check: a transformers causal LM run on given token ids.

Loading a model is `models.loading.load_model` (or `export.common.load_torch` for an export's folder);
this module only runs one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def logits(model: Any, ids: Sequence[int]) -> np.ndarray:
    """Teacher-forced logits `[len(ids), vocab]` (float32), one forward pass without a KV cache."""
    import torch

    with torch.no_grad():
        return model(torch.tensor([list(ids)]), use_cache=False).logits[0].float().numpy()


def greedy(model: Any, ids: Sequence[int], n_new: int) -> list[int]:
    """Greedy decoding of `n_new` ids through the KV cache, never stopping at EOS (llama.cpp's loop,
    `runtimes.llamacpp.greedy`, does not either)."""
    import torch

    new: list[int] = []
    with torch.no_grad():
        out = model(torch.tensor([list(ids)]), use_cache=True)
        for _ in range(n_new):
            new.append(int(out.logits[0, -1].argmax()))
            out = model(torch.tensor([new[-1:]]), past_key_values=out.past_key_values, use_cache=True)
    return new
