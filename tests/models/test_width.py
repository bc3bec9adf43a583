"""MLP width pruning (`models.width`): which channels are kept, and that the narrowed model is the full one
with the other channels switched off."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from distill2edge.models import init_student_from_teacher
from distill2edge.models.width import mlp_channel_importance, narrow_mlps

SENTENCES = ["the amf serves cell 3 on band n78", "which slice does the smf pick", "cell 9 uses band n41 today"]


def _features(tok) -> list[dict[str, list[int]]]:
    return [{"input_ids": tok(s)["input_ids"]} for s in SENTENCES]


def _by_hand(model, features) -> list[torch.Tensor]:
    """Mean |act(gate(x)) * up(x)| per channel, computed from each MLP's input, one unpadded example at a time."""
    sums = [torch.zeros(m.mlp.down_proj.in_features, dtype=torch.float64) for m in model.model.layers]
    inputs: dict[int, torch.Tensor] = {}
    hooks = [layer.mlp.register_forward_pre_hook(lambda _m, a, i=i: inputs.__setitem__(i, a[0]))
             for i, layer in enumerate(model.model.layers)]
    tokens = 0
    with torch.no_grad():
        for f in features:
            model(input_ids=torch.tensor([f["input_ids"]]))
            tokens += len(f["input_ids"])
            for i, layer in enumerate(model.model.layers):
                mlp, x = layer.mlp, inputs[i]
                sums[i] += (mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)).abs().sum(dim=(0, 1)).double()
    for h in hooks:
        h.remove()
    return [s / tokens for s in sums]


def test_importance_matches_a_hand_computation_and_ignores_padding(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    features = _features(tok)
    batched = mlp_channel_importance(model, features, pad_id=tok.pad_token_id, batch_size=3)
    expected = _by_hand(model, features)
    assert len(batched) == model.config.num_hidden_layers
    for got, want in zip(batched, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_narrowed_model_equals_the_full_one_with_the_other_channels_zeroed(tiny_llama_dir):
    full = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    features = _features(tok)
    importance = mlp_channel_importance(full, features, pad_id=tok.pad_token_id)
    narrow = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    kept = narrow_mlps(narrow, importance, width=48)
    assert narrow.config.intermediate_size == 48
    for score, idx in zip(importance, kept):
        assert idx == sorted(idx) and len(idx) == 48
        assert set(idx) == set(torch.topk(score, 48).indices.tolist())
    with torch.no_grad():
        for layer, idx in zip(full.model.layers, kept):
            off = torch.ones(layer.mlp.down_proj.in_features, dtype=torch.bool)
            off[idx] = False
            layer.mlp.down_proj.weight[:, off] = 0
        ids = torch.tensor([features[0]["input_ids"]])
        torch.testing.assert_close(narrow(input_ids=ids).logits, full(input_ids=ids).logits, rtol=1e-4, atol=1e-5)


def test_init_student_narrows_and_records_and_the_folder_reloads(tiny_llama_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    out = init_student_from_teacher(str(tiny_llama_dir), tmp_path / "s", layers=[0, 3], mlp_width=32,
                                    encode=_features)
    assert AutoConfig.from_pretrained(out).intermediate_size == 32
    record = json.loads((out / "student_init.json").read_text())
    assert record["mlp_width"] == 32 and record["mlp_width_before"] == 128
    assert len(record["mlp_activation_kept"]) == 2 and all(0.25 < s < 1 for s in record["mlp_activation_kept"])
    model = AutoModelForCausalLM.from_pretrained(out)
    generated = model.generate(torch.tensor([tok("which band")["input_ids"]]), max_new_tokens=4, do_sample=False)
    assert generated.shape[1] > 2


def test_width_errors_name_the_limit(tiny_llama_dir, tmp_path):
    with pytest.raises(ValueError, match="wider than the model's MLPs \\(128 channels\\)"):
        init_student_from_teacher(str(tiny_llama_dir), tmp_path / "s", layers=[0], mlp_width=500, encode=_features)
    with pytest.raises(ValueError, match="needs the examples"):
        init_student_from_teacher(str(tiny_llama_dir), tmp_path / "s", layers=[0], mlp_width=8)
    assert not (tmp_path / "s").exists()
