"""Hidden-state distillation: the scaling-down paper's MSE term (the objective that combines it with CE
and each teacher's KL is `losses.multi_teacher`).

The paper aligns intermediate representations of student and teachers with an MSE after a learned
projection, and adds it to CE and a KL per teacher (the scaling-down paper's objective, in our notation):

    loss = a·CE + b·Σ_i w_i·KL_i + g·Σ_i w_i·Σ_(ls,lt) MSE(P_i(h_student[ls]), h_teacher_i[lt])

Layers are numbered like Hugging Face's `hidden_states` tuple (`output_hidden_states=True`): it has
L + 1 entries of shape [B, T, d]; entry 0 is the embedding output and entry l (1..L) the output of
decoder layer l (the last one after the final norm in current transformers). A `LayerMap` pairs
student layers with teacher layers in that numbering; the embeddings (0) are never mapped, since two
models' input embeddings share nothing worth matching.

A teacher with another tokenizer has other positions, so token-by-token MSE is impossible; it joins
through a pooled representation (`pooling="mean"` or `"last"`: one vector per sequence, each model
pooled over its own valid positions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Pooling = Literal["token", "mean", "last"]


# ------------------------------------------------------------------------------------- layer map
@dataclass(frozen=True)
class LayerMap:
    """Pairs (student layer, teacher layer), 1-based as in `hidden_states`, sorted by student layer."""

    pairs: tuple[tuple[int, int], ...]
    n_student: int
    n_teacher: int

    def __post_init__(self) -> None:
        if self.n_student < 1 or self.n_teacher < 1:
            raise ValueError(
                f"layer counts must be >= 1, got student {self.n_student}, teacher {self.n_teacher}"
            )
        if not self.pairs:
            raise ValueError("a layer map needs at least one (student, teacher) pair")
        seen: set[int] = set()
        for ls, lt in self.pairs:
            if not 1 <= ls <= self.n_student:
                raise ValueError(f"layer map: student layer {ls} out of range 1..{self.n_student}")
            if not 1 <= lt <= self.n_teacher:
                raise ValueError(f"layer map: teacher layer {lt} out of range 1..{self.n_teacher}")
            if ls in seen:
                raise ValueError(f"layer map: student layer {ls} is mapped twice")
            seen.add(ls)

    @classmethod
    def uniform(cls, n_student: int, n_teacher: int) -> LayerMap:
        """Every student layer i (1..Ls) -> teacher layer max(1, i·Lt // Ls).

        With Lt = k·Ls this is every k-th teacher layer (k, 2k, ..., Lt), the PKD-skip / DistilBERT
        pattern; in every case the last layers are paired (i = Ls -> Lt) and the map is monotone. A
        student deeper than its teacher maps several student layers onto one teacher layer.
        """
        if n_student < 1 or n_teacher < 1:
            raise ValueError(f"layer counts must be >= 1, got student {n_student}, teacher {n_teacher}")
        pairs = tuple((i, max(1, i * n_teacher // n_student)) for i in range(1, n_student + 1))
        return cls(pairs, n_student, n_teacher)

    @classmethod
    def from_spec(
        cls, spec: str | Sequence[int] | Sequence[Sequence[int]] | None, n_student: int, n_teacher: int
    ) -> LayerMap:
        """Build a map from a recipe value.

        - `None` or `"uniform"`: `LayerMap.uniform`.
        - a list of ints of length Ls: entry i-1 is the teacher layer of student layer i (every student
          layer mapped); a teacher layer may appear once only (a repeat is almost always a typo; use
          pairs to map two student layers onto one teacher layer on purpose).
        - a list of [student, teacher] pairs: only those layers are matched.
        """
        if spec is None or spec == "uniform":
            return cls.uniform(n_student, n_teacher)
        if isinstance(spec, str):
            # ValueError, not TypeError: pydantic turns only ValueError into a recipe validation error.
            msg = f"layer map: unknown value {spec!r}; use 'uniform', a list of ints, or pairs"
            raise ValueError(msg)  # noqa: TRY004
        items: list[int | Sequence[int]] = list(spec)
        ints = [x for x in items if isinstance(x, int) and not isinstance(x, bool)]
        if items and len(ints) == len(items):
            if len(ints) != n_student:
                raise ValueError(
                    f"layer map: a list of teacher layers needs one entry per student layer "
                    f"({n_student}), got {len(ints)}"
                )
            dup = sorted({t for t in ints if ints.count(t) > 1})
            if dup:
                raise ValueError(f"layer map: teacher layer(s) {dup} listed more than once")
            return cls(tuple((i + 1, t) for i, t in enumerate(ints)), n_student, n_teacher)
        pairs: list[tuple[int, int]] = []
        for k, item in enumerate(items):
            if (
                isinstance(item, (list, tuple))
                and len(item) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in item)
            ):
                pairs.append((int(item[0]), int(item[1])))
                continue
            raise ValueError(
                f"layer map: entry {k} must be an int or a [student, teacher] pair, got {item!r}"
            )
        return cls(tuple(sorted(pairs)), n_student, n_teacher)


# ------------------------------------------------------------------------------------ projection
class HiddenProjector(nn.Module):
    """P_i of one teacher: a Linear d_s -> d_t per mapped student layer (default), or one shared.

    Per layer by default: the residual stream's scale and basis drift with depth (pre-norm models grow
    the norm layer after layer), so one matrix for all depths would have to compromise; the cost is
    small (d_s·d_t per mapped layer, about 0.33M for 576 -> 576, and the projectors are training-only:
    never exported). `shared=True` gives the single projection per teacher of the formula above (module docstring).

    When d_s == d_t the weights start as the identity (bias 0), so a student initialised from the
    teacher's own layers starts with the loss it really has rather than a random projection's.
    """

    def __init__(self, d_student: int, d_teacher: int, student_layers: Sequence[int], shared: bool = False):
        super().__init__()
        if not student_layers:
            raise ValueError("HiddenProjector needs at least one student layer")
        self.d_student, self.d_teacher, self.shared = d_student, d_teacher, shared
        self.student_layers = tuple(sorted(set(student_layers)))
        keys = ["shared"] if shared else [str(i) for i in self.student_layers]
        self.proj = nn.ModuleDict({k: nn.Linear(d_student, d_teacher) for k in keys})
        if d_student == d_teacher:
            with torch.no_grad():
                for lin in self._linears():
                    lin.weight.copy_(torch.eye(d_student))
                    lin.bias.zero_()

    def _linears(self) -> list[nn.Linear]:
        """The projection layers (the ModuleDict's values, typed)."""
        return [lin for lin in self.proj.values() if isinstance(lin, nn.Linear)]

    @classmethod
    def for_map(
        cls, layer_map: LayerMap, d_student: int, d_teacher: int, shared: bool = False
    ) -> HiddenProjector:
        """A projector for the student layers of `layer_map`."""
        return cls(d_student, d_teacher, [ls for ls, _ in layer_map.pairs], shared=shared)

    def forward(self, hidden: Tensor, student_layer: int) -> Tensor:
        """[..., d_s] -> [..., d_t], computed in the projector's dtype (float32 by default)."""
        key = "shared" if self.shared else str(student_layer)
        if key not in self.proj:
            raise KeyError(f"no projection for student layer {student_layer}; has {self.student_layers}")
        lin = self.proj[key]
        assert isinstance(lin, nn.Linear)
        return lin(hidden.to(lin.weight.dtype))


# ------------------------------------------------------------------------------------------ MSE
def _pool(h: Tensor, mask: Tensor, pooling: Pooling) -> Tensor:
    """[B, T, d] with mask [B, T] -> [B, d]: the mean of the valid positions, or the last valid one."""
    m = mask.to(h.dtype).unsqueeze(-1)  # [B, T, 1]
    if pooling == "mean":
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)
    # last valid position of each row (works for left and right padding)
    pos = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask.bool(), pos, torch.full_like(pos, -1)).max(dim=1).values.clamp_min(0)  # [B]
    return h[torch.arange(h.shape[0], device=h.device), last]


def _checked_masks(
    student_hidden_states: Sequence[Tensor],
    teacher_hidden_states: Sequence[Tensor],
    layer_map: LayerMap,
    mask: Tensor | None,
    teacher_mask: Tensor | None,
    *,
    pooling: Pooling,
    reduction: str,
) -> tuple[Tensor, Tensor]:
    """Validate `hidden_mse`'s arguments and return its (student, teacher) masks, defaults filled in.

    The student mask defaults to all positions and comes back as bool; the teacher mask defaults to
    the student's mask and comes back as given.
    """
    if len(student_hidden_states) != layer_map.n_student + 1:
        raise ValueError(
            f"student has {len(student_hidden_states) - 1} layers, "
            f"the layer map expects {layer_map.n_student}"
        )
    if len(teacher_hidden_states) != layer_map.n_teacher + 1:
        raise ValueError(
            f"teacher has {len(teacher_hidden_states) - 1} layers, "
            f"the layer map expects {layer_map.n_teacher}"
        )
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    if pooling not in ("token", "mean", "last"):
        raise ValueError(f"pooling must be 'token', 'mean' or 'last', got {pooling!r}")
    hs0, ht0 = student_hidden_states[0], teacher_hidden_states[0]
    if mask is None:
        mask = torch.ones(hs0.shape[:2], dtype=torch.bool, device=hs0.device)
    if mask.shape != hs0.shape[:2]:
        raise ValueError(f"mask must be [B, Ts] = {tuple(hs0.shape[:2])}, got {tuple(mask.shape)}")
    if teacher_mask is None:
        teacher_mask = mask
    if pooling == "token" and hs0.shape[:2] != ht0.shape[:2]:
        raise ValueError(
            f"pooling='token' needs aligned positions, got student {tuple(hs0.shape[:2])} and teacher "
            f"{tuple(ht0.shape[:2])}; use pooling='mean' or 'last' for a teacher with another tokenizer"
        )
    if teacher_mask.shape != ht0.shape[:2]:
        raise ValueError(
            f"teacher_mask must be [B, Tt] = {tuple(ht0.shape[:2])}, got {tuple(teacher_mask.shape)}"
        )
    return mask.bool(), teacher_mask


def _pair_vectors(
    hs: Tensor, ht: Tensor, mask: Tensor, teacher_mask: Tensor, pooling: Pooling
) -> tuple[Tensor, Tensor]:
    """The vectors one layer pair compares: [N, d_s] and [N, d_t] at the valid positions (`"token"`),
    or one pooled vector per sequence with at least one valid position (`"mean"`/`"last"`).

    `mask` is the student's bool mask [B, Ts]; `teacher_mask` [B, Tt] serves the teacher when pooling.
    """
    if pooling == "token":
        idx = mask.nonzero(as_tuple=True)
        return hs[idx], ht[idx]
    keep = mask.any(dim=1)
    return _pool(hs, mask, pooling)[keep], _pool(ht, teacher_mask, pooling)[keep]


def hidden_mse(
    student_hidden_states: Sequence[Tensor],
    teacher_hidden_states: Sequence[Tensor],
    projector: HiddenProjector,
    layer_map: LayerMap,
    mask: Tensor | None = None,
    *,
    teacher_mask: Tensor | None = None,
    pooling: Pooling = "token",
    normalize: bool = False,
    reduction: Literal["sum", "mean"] = "sum",
) -> Tensor:
    """Σ (or mean) over the map's pairs of MSE(P(h_s[ls]), h_t[lt]) on valid positions.

    Args:
        student_hidden_states: Ls + 1 tensors [B, Ts, d_s] (HF `hidden_states`, index 0 = embeddings).
        teacher_hidden_states: Lt + 1 tensors [B, Tt, d_t]; detached here, so the teacher gets no
            gradient.
        projector: `HiddenProjector` d_s -> d_t covering the map's student layers.
        layer_map: pairs (ls, lt), 1-based.
        mask: [B, Ts], True at positions that count (e.g. attention_mask, or answer tokens); None =
            all positions.
        teacher_mask: [B, Tt] for pooled modes when the teacher tokenised differently; defaults to
            `mask` (then Tt must equal Ts). Ignored with pooling="token", where `mask` serves both.
        pooling: "token" compares position by position (same tokenizer: Ts == Tt); "mean"/"last"
            compare one pooled vector per sequence (any tokenizers).
        normalize: apply a parameter-free LayerNorm over the hidden dimension to both sides first, so
            a few huge residual-stream channels cannot dominate the loss.
        reduction: "sum" over layer pairs (the module docstring's formula) or "mean".

    Returns:
        Scalar float32: for each pair, the mean squared error over valid positions and the d_t
        channels; 0.0 attached to the graph when the mask selects nothing.
    """
    mask, teacher_mask = _checked_masks(
        student_hidden_states, teacher_hidden_states, layer_map, mask, teacher_mask,
        pooling=pooling, reduction=reduction,
    )
    if pooling == "token":
        n_valid = int(mask.sum())
    else:
        n_valid = int(mask.any(dim=1).sum())
    terms: list[Tensor] = []
    for ls, lt in layer_map.pairs:
        s_vec, t_vec = _pair_vectors(
            student_hidden_states[ls], teacher_hidden_states[lt].detach(), mask, teacher_mask, pooling
        )
        s_vec = projector(s_vec, ls).float()
        t_vec = t_vec.float()
        if normalize:
            s_vec, t_vec = F.layer_norm(s_vec, s_vec.shape[-1:]), F.layer_norm(t_vec, t_vec.shape[-1:])
        if n_valid == 0:
            terms.append(s_vec.sum() * 0.0)  # empty selection: a zero on the projector's graph
        else:
            terms.append(F.mse_loss(s_vec, t_vec, reduction="mean"))
    stacked = torch.stack(terms)
    return stacked.sum() if reduction == "sum" else stacked.mean()
