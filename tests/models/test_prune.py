import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from distill2edge.models import init_student_from_teacher, prune_layers, select_layers
from distill2edge.models import prune as prune_mod


def test_select_layers_examples():
    assert select_layers(30, 8) == [0, 4, 8, 12, 17, 21, 25, 29]
    assert select_layers(4, 2) == [0, 3]
    assert select_layers(5, 5) == [0, 1, 2, 3, 4]
    assert select_layers(7, 1) == [0]
    assert select_layers(12, 6) == [0, 2, 4, 7, 9, 11]


def test_select_layers_always_sorted_unique_and_spans_the_model():
    for n in range(1, 41):
        for k in range(1, n + 1):
            idx = select_layers(n, k)
            assert len(idx) == k and idx == sorted(set(idx)) and idx[0] == 0
            assert k == 1 or idx[-1] == n - 1


@pytest.mark.parametrize("n,k", [(4, 0), (4, 5), (0, 1), (3, -1)])
def test_select_layers_rejects_impossible_requests(n, k):
    with pytest.raises(ValueError, match="keep|num_layers"):
        select_layers(n, k)


def _greedy(model, ids, n, use_cache):
    return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                          use_cache=use_cache, pad_token_id=0)


def test_pruned_llama_keeps_chosen_layers_and_leaves_input_untouched(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = prune_layers(model, [0, 3])

    assert model.config.num_hidden_layers == 4 and len(model.model.layers) == 4
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert pruned.config.num_hidden_layers == 2 and len(pruned.model.layers) == 2
    assert [layer.self_attn.layer_idx for layer in pruned.model.layers] == [0, 1]
    assert torch.equal(pruned.model.layers[1].mlp.up_proj.weight, model.model.layers[3].mlp.up_proj.weight)
    per_layer = sum(p.numel() for p in model.model.layers[0].parameters())
    assert pruned.num_parameters() == model.num_parameters() - 2 * per_layer


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2", "gemma3"])
def test_pruned_model_runs_generates_with_cache_and_reloads(arch, make_tiny_model, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(make_tiny_model(arch)).eval()
    pruned = prune_layers(model, [1, 3])
    ids = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50]])  # longer than gemma3's window of 8
    with torch.no_grad():
        logits = pruned(ids).logits
    assert logits.shape == (1, ids.shape[1], model.config.vocab_size)
    # The KV cache holds one slot per kept layer: generation with it must equal generation without it.
    assert torch.equal(_greedy(pruned, ids, 6, True), _greedy(pruned, ids, 6, False))

    pruned.save_pretrained(tmp_path / "pruned")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned").eval()
    assert again.config.num_hidden_layers == 2
    with torch.no_grad():
        assert torch.allclose(again(ids).logits, logits, atol=1e-5)


def test_gemma3_layer_types_are_sliced_with_the_layers(make_tiny_model):
    model = AutoModelForCausalLM.from_pretrained(make_tiny_model("gemma3"))
    assert model.config.layer_types == ["sliding_attention", "full_attention"] * 2
    pruned = prune_layers(model, [0, 1, 2])
    assert pruned.config.layer_types == ["sliding_attention", "full_attention", "sliding_attention"]
    assert [layer.attention_type for layer in pruned.model.layers] == pruned.config.layer_types


@pytest.mark.parametrize("layers,message", [
    ([0, 4], "out of range"), ([-1, 2], "out of range"), ([1, 1], "unique"),
    ([2, 1], "increasing"), ([], "empty"), ([0.5], "integers"),
])
def test_prune_rejects_bad_indices(tiny_llama_dir, layers, message):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    with pytest.raises(ValueError, match=message):
        prune_layers(model, layers)


def test_init_student_from_teacher_saves_a_complete_folder(tiny_llama_dir, tmp_path):
    out = init_student_from_teacher(str(tiny_llama_dir), tmp_path / "student", num_layers=2)
    assert out == tmp_path / "student"
    cfg = AutoConfig.from_pretrained(out)
    assert cfg.num_hidden_layers == 2
    record = json.loads((out / "student_init.json").read_text())
    assert record["layers_kept"] == [0, 3] and record["student_parameters"] < record["teacher_parameters"]
    assert (out / "tokenizer.json").is_file()

    again = init_student_from_teacher(str(tiny_llama_dir), out, layers=[1, 2, 3])  # replaces the folder
    assert AutoConfig.from_pretrained(again).num_hidden_layers == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]


def test_init_student_needs_exactly_one_of_num_layers_or_layers(tiny_llama_dir, tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        init_student_from_teacher(str(tiny_llama_dir), tmp_path / "s")
    with pytest.raises(ValueError, match="exactly one"):
        init_student_from_teacher(str(tiny_llama_dir), tmp_path / "s", num_layers=2, layers=[0, 1])
    with pytest.raises(ValueError, match="cannot keep 9 layers of 4"):
        init_student_from_teacher(str(tiny_llama_dir), tmp_path / "s", num_layers=9)


def test_failed_student_save_leaves_nothing(tiny_llama_dir, tmp_path, monkeypatch):
    def broken_save(self, path, **kw):
        (Path(path) / "model.safetensors").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(prune_mod.PreTrainedModel, "save_pretrained", broken_save)
    with pytest.raises(OSError, match="disk full"):
        init_student_from_teacher(str(tiny_llama_dir), tmp_path / "student", num_layers=2)
    assert list(tmp_path.iterdir()) == []
