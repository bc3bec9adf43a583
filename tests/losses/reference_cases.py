"""Fixed tiny inputs shared by the reference-pinned DSKD/ULD tests and the script that produced their numbers.

Not a test module: `test_dskd_reference.py` and `test_uld_reference.py` load it by path (pytest runs with
`--import-mode=importlib`, so the tests folder is not on sys.path), and so does the script that ran the
reference implementations (songmzhang/DSKD `code/criterions/*.py`, Nicolas-BZRD/llm-recipes
`models/distillation_model.py`) unmodified on exactly these tensors.

Layout is the DSKD reference's: a grid of T positions per sample where position t predicts `labels[:, t]`
(prompt and right padding hold IGNORE_INDEX), both models right-padded to the same grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

IGNORE = -100
B, T, DS, DT, VS = 2, 5, 4, 6, 7
VT_DIFFERENT = 9


@dataclass
class Case:
    """All tensors of one tiny batch (float32). Shapes: [B, T] ids/labels, [B, T, d] hidden states,
    [V, d] embedding and head weights, projector weights as nn.Linear stores them."""

    s_ids: Tensor
    s_labels: Tensor
    t_ids: Tensor
    t_labels: Tensor
    h_s: Tensor
    h_t: Tensor
    e_s: Tensor
    e_t: Tensor
    w_s: Tensor
    w_t: Tensor
    t2s_w: Tensor
    t2s_b: Tensor
    s2t_w: Tensor
    s2t_b: Tensor
    q_w: Tensor
    q_b: Tensor


def make_case(vocab: str) -> Case:
    """`vocab`: "shared" (teacher tokenization = the student's, V_t = V_s = 7) or "different" (its own
    tokenization and V_t = 9). Sample 1 is shorter (right padding); prompts are masked."""
    g = torch.Generator().manual_seed(15)
    vt = VS if vocab == "shared" else VT_DIFFERENT
    s_ids = torch.randint(1, VS, (B, T), generator=g)
    s_labels = torch.randint(0, VS, (B, T), generator=g)
    s_labels[0, :2] = IGNORE  # prompt
    s_labels[1, :1] = IGNORE
    s_labels[1, 3:] = IGNORE  # padding
    if vocab == "shared":
        t_ids, t_labels = s_ids.clone(), s_labels.clone()
    else:
        t_ids = torch.randint(1, vt, (B, T), generator=g)
        t_labels = torch.randint(0, vt, (B, T), generator=g)
        t_labels[0, :1] = IGNORE
        t_labels[1, :2] = IGNORE
        t_labels[1, 4:] = IGNORE
    return Case(
        s_ids, s_labels, t_ids, t_labels,
        h_s=torch.randn(B, T, DS, generator=g),
        h_t=3.0 * torch.randn(B, T, DT, generator=g) + 0.5,
        e_s=torch.randn(VS, DS, generator=g),
        e_t=0.5 * torch.randn(vt, DT, generator=g),
        w_s=torch.randn(VS, DS, generator=g),
        w_t=torch.randn(vt, DT, generator=g),
        t2s_w=0.4 * torch.randn(DS, DT, generator=g), t2s_b=0.1 * torch.randn(DS, generator=g),
        s2t_w=0.4 * torch.randn(DT, DS, generator=g), s2t_b=0.1 * torch.randn(DT, generator=g),
        q_w=0.4 * torch.randn(2 * DT, 2 * DS, generator=g), q_b=0.1 * torch.randn(2 * DT, generator=g),
    )


def probe(shape: torch.Size) -> Tensor:
    """Fixed weights to fold a gradient into one number: sum(grad * probe)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(1515))
