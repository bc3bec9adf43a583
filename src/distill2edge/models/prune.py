"""Student initialisation by layer pruning: keep a subset of a same-family teacher's decoder layers.

DistilBERT initialised its student with every other teacher layer; here any subset works. Which
layers is `models.layer_select`'s choice (evenly spaced or by block influence); the 28.3M-parameter tied
embedding of SmolLM2-135M is kept whole.

Works for decoder-only models that keep their blocks in `model.model.layers` (llama, mistral, qwen2,
gemma3, ...). Per-layer settings travel with the kept layers: config lists such as gemma3's
`layer_types` are sliced, and each attention module's `layer_idx` (its slot in the KV cache) is
renumbered so generation with a cache works.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distill2edge.atomic import write_dir_atomic
from distill2edge.models.layer_select import block_influence, choose_layers, greedy_answer_ce
from distill2edge.models.loading import load_model
from distill2edge.models.width import mlp_channel_importance, narrow_mlps

PER_LAYER_CONFIG_FIELDS: tuple[str, ...] = ("layer_types", "no_rope_layers")
"""Config fields holding one entry per decoder layer (sliced like the layers)."""


def _decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"{type(model).__name__} keeps no decoder layers in model.model.layers; "
                         "layer pruning supports llama, mistral, qwen2, gemma3 and similar models")
    return layers


def _check_indices(layers: Sequence[int], num_layers: int) -> list[int]:
    idx = list(layers)
    if not idx:
        raise ValueError("layers to keep is empty")
    if any(not isinstance(i, int) or isinstance(i, bool) for i in idx):
        raise ValueError(f"layer indices must be integers, got {idx}")
    bad = [i for i in idx if not 0 <= i < num_layers]
    if bad:
        raise ValueError(
            f"layer indices {bad} out of range: the model has {num_layers} layers (0..{num_layers - 1})"
        )
    if len(set(idx)) != len(idx):
        raise ValueError(f"layer indices must be unique, got {idx}")
    if idx != sorted(idx):
        raise ValueError(f"layer indices must be in increasing order, got {idx}")
    return idx


def prune_layers(model: PreTrainedModel, layers: Sequence[int]) -> PreTrainedModel:
    """A deep copy of `model` keeping only decoder layers `layers` (sorted, unique), in that order.

    The input model is left untouched. The copy's config says how many layers it has, and which.
    """
    n = len(_decoder_layers(model))
    if model.config.num_hidden_layers != n:
        raise ValueError(f"config.num_hidden_layers = {model.config.num_hidden_layers} but "
                         f"model.model.layers holds {n} layers")
    idx = _check_indices(layers, n)
    pruned = copy.deepcopy(model)
    old = _decoder_layers(pruned)
    pruned.model.layers = nn.ModuleList(old[i] for i in idx)
    for new_i, layer in enumerate(pruned.model.layers):
        for module in layer.modules():  # the attention module, and any other keeper of a cache slot
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = new_i
    cfg = pruned.config
    for field in PER_LAYER_CONFIG_FIELDS:
        values = getattr(cfg, field, None)
        if isinstance(values, (list, tuple)):
            if len(values) != n:
                raise ValueError(f"config.{field} has {len(values)} entries for {n} layers")
            setattr(cfg, field, [values[i] for i in idx])
    cfg.num_hidden_layers = len(idx)
    return pruned


def init_student_from_teacher(
    teacher_ref: str, out_dir: Path, *, num_layers: int | None = None, layers: Sequence[int] | None = None,
    strategy: str = "evenly", encode: Callable[[PreTrainedTokenizerBase], list[dict[str, list[int]]]] | None = None,
    mlp_width: int | None = None, progress: bool = True,
) -> Path:
    """Load `teacher_ref`, keep `num_layers` layers chosen by `strategy` (or exactly `layers`), save to `out_dir`.

    `strategy` is `evenly`, `block_influence` or `answer_ce`; the last two measure on the examples
    `encode(tokenizer)` returns (the recipe's training examples, prompts with answer labels) each layer's
    influence, or greedily which layers' removal costs the least answer cross-entropy (`models.layer_select`),
    and record the measurements in `student_init.json`. `mlp_width` then narrows every kept layer's MLP to
    its most active channels on the same examples (`models.width`). The folder (model.safetensors, config, tokenizer,
    `student_init.json` with the provenance) appears only when complete; an existing `out_dir` is
    replaced. Returns `out_dir`.
    """
    if (num_layers is None) == (layers is None):
        raise ValueError("give exactly one of num_layers or layers")
    teacher, tok = load_model(teacher_ref)
    total, teacher_params = teacher.config.num_hidden_layers, teacher.num_parameters()
    if mlp_width is not None:  # checked before the layer selection, which can take minutes
        _check_width(mlp_width, int(teacher.config.intermediate_size), encode)
    features: list[dict[str, list[int]]] | None = None

    def examples() -> list[dict[str, list[int]]]:
        """`encode(tok)`, computed once for the selection and the width ranking."""
        nonlocal features
        if features is None:
            assert encode is not None
            features = encode(tok)
        return features

    influence: list[float] | None = None
    removals: list[dict[str, float]] | None = None
    if layers is not None:
        keep, strategy = _check_indices(layers, total), "explicit"
    elif strategy == "answer_ce":
        if encode is None:
            raise ValueError("answer_ce selection needs the examples to measure it on (encode=...)")
        if not 1 <= num_layers <= total:  # type: ignore[operator]
            raise ValueError(f"cannot keep {num_layers} layers of {total}: need 1 <= keep <= {total}")
        keep, removals = greedy_answer_ce(teacher, examples(), num_layers, pad_id=tok.pad_token_id, progress=progress)  # type: ignore[arg-type]
    else:
        if strategy == "block_influence":
            if encode is None:
                raise ValueError("block_influence selection needs the examples to measure it on (encode=...)")
            influence = block_influence(teacher, examples(), pad_id=tok.pad_token_id)
        keep = choose_layers(strategy, total, num_layers, influence)  # type: ignore[arg-type]
    student = prune_layers(teacher, keep)
    del teacher
    width_record = _narrow(student, examples(), tok.pad_token_id, mlp_width, progress) if mlp_width is not None else {}
    record = {
        "teacher": teacher_ref, "teacher_layers": total, "selection": strategy, "layers_kept": keep,
        "teacher_parameters": teacher_params, "student_parameters": student.num_parameters(),
        **({"block_influence": [round(b, 5) for b in influence]} if influence is not None else {}),
        **({"answer_ce_removals": removals} if removals is not None else {}),
        **width_record,
    }

    def write(tmp: Path) -> None:
        student.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "student_init.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")

    return write_dir_atomic(Path(out_dir), write)


def _check_width(width: int, full: int, encode: object) -> None:
    if encode is None:
        raise ValueError("mlp_width needs the examples to measure channel activations on (encode=...)")
    if width > full:
        raise ValueError(f"student.mlp_width {width} is wider than the model's MLPs ({full} channels)")


def _narrow(
    student: PreTrainedModel, features: list[dict[str, list[int]]], pad_id: int | None, width: int, progress: bool,
) -> dict[str, object]:
    """Narrow `student`'s MLPs to `width` channels by activation on `features`; the record's entries."""
    full = int(student.config.intermediate_size)
    importance = mlp_channel_importance(student, features, pad_id=pad_id or 0, progress=progress)
    kept = narrow_mlps(student, importance, width)
    share = [float(score[idx].sum() / score.sum()) for score, idx in zip(importance, kept)]
    return {"mlp_width": width, "mlp_width_before": full,
            "mlp_activation_kept": [round(s, 4) for s in share]}
