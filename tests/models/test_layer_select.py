"""Block influence and layer choice for pruned students."""

import json

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from distill2edge.models import init_student_from_teacher
from distill2edge.models.layer_select import block_influence, choose_layers, top_influence_layers


class _Scale(nn.Module):
    """A 'decoder layer' whose output is a fixed linear map of its input (no attention)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, hidden_states: torch.Tensor, **_kw) -> torch.Tensor:
        return hidden_states @ self.weight.T


class _Toy(nn.Module):
    """Embedding then three layers: identity (BI 0), a sign flip (BI 2) and a 90-degree rotation (BI 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 2)
        rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
        self.model = nn.Module()
        self.model.layers = nn.ModuleList([_Scale(torch.eye(2)), _Scale(-torch.eye(2)), _Scale(rot)])

    def forward(self, input_ids, attention_mask=None, logits_to_keep=0):
        h = self.embed(input_ids)
        for layer in self.model.layers:
            h = layer(hidden_states=h)
        return h


def test_block_influence_is_one_minus_cosine_of_each_layers_input_and_output():
    torch.manual_seed(0)
    feats = [{"input_ids": [1, 2, 3]}, {"input_ids": [4, 5]}]
    bi = block_influence(_Toy(), feats, pad_id=0, batch_size=2)
    assert bi == pytest.approx([0.0, 2.0, 1.0], abs=1e-6)


def test_block_influence_ignores_padding_positions():
    toy = _Toy()
    with torch.no_grad():
        toy.embed.weight[0] = torch.tensor([1.0, 0.0])  # the pad token
    # A layer that maps the pad embedding onto itself but turns every real token by 90 degrees:
    # were padding counted, its influence would fall below 1.
    toy.model.layers[0] = _Scale(torch.tensor([[0.0, -1.0], [1.0, 0.0]]))
    with torch.no_grad():
        toy.embed.weight[1:] = torch.randn(9, 2)
    bi = block_influence(toy, [{"input_ids": [3]}, {"input_ids": [4, 5, 6, 7]}], pad_id=0, batch_size=2)
    assert bi[0] == pytest.approx(1.0, abs=1e-6)


def test_top_influence_layers_keeps_the_highest_in_layer_order():
    assert top_influence_layers([1.0, 0.17, 0.03, 0.05, 0.15, 0.99], 4) == [0, 1, 4, 5]
    assert top_influence_layers([0.5, 0.5, 0.1], 1) == [0]  # a tie goes to the earlier layer
    with pytest.raises(ValueError, match="cannot keep 4 layers of 3"):
        top_influence_layers([0.1, 0.2, 0.3], 4)


def test_choose_layers_evenly_and_by_influence():
    assert choose_layers("evenly", 30, 8) == [0, 4, 8, 12, 17, 21, 25, 29]
    assert choose_layers("block_influence", 4, 2, [0.9, 0.1, 0.2, 0.8]) == [0, 3]
    with pytest.raises(ValueError, match="needs the measured influence"):
        choose_layers("block_influence", 4, 2)


def test_init_student_by_block_influence_records_scores_and_keeps_those_layers(tiny_llama_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    feats = [{"input_ids": tok("the AMF selects the SMF for the PDU session")["input_ids"]}] * 3
    out = init_student_from_teacher(
        str(tiny_llama_dir), tmp_path / "student", num_layers=2, strategy="block_influence", encode=lambda _t: feats
    )
    record = json.loads((out / "student_init.json").read_text())
    teacher = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    expected = block_influence(teacher, feats, pad_id=tok.pad_token_id)
    assert record["selection"] == "block_influence"
    assert record["block_influence"] == pytest.approx(expected, abs=1e-4)
    assert record["layers_kept"] == top_influence_layers(expected, 2)
    student = AutoModelForCausalLM.from_pretrained(out)
    kept = record["layers_kept"]
    for new, old in enumerate(kept):
        assert torch.equal(student.model.layers[new].mlp.up_proj.weight, teacher.model.layers[old].mlp.up_proj.weight)


def _full_logits_answer_ce(model: nn.Module, feats: list[dict[str, list[int]]], pad_id: int) -> float:
    """Answer CE from the model's whole logits: the plain definition `greedy_answer_ce` must agree with."""
    from distill2edge.data.tokenize import IGNORE_INDEX, collate

    batch = collate(feats, pad_id)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE_INDEX
    return float(nn.functional.cross_entropy(logits[mask], targets[mask]))


def test_greedy_answer_ce_removes_the_cheapest_layer_each_round():
    """Against brute force with `prune_layers` and full logits: each round drops the layer whose removal
    leaves the lowest answer CE (recorded), and the model comes back whole."""
    from distill2edge.models.layer_select import greedy_answer_ce
    from distill2edge.models.prune import prune_layers
    from tests.factory import tiny_model

    model = tiny_model(vocab_size=64, num_hidden_layers=5).eval()  # 5 layers: three rounds down to 2
    g = torch.Generator().manual_seed(1)
    feats = []
    for n in (9, 12, 7):
        ids = torch.randint(3, 64, (n,), generator=g).tolist()
        feats.append({"input_ids": ids, "labels": [-100] * (n - 3) + ids[-3:]})
    kept, removals = greedy_answer_ce(model, feats, 2, pad_id=0, batch_size=2, progress=False)
    assert len(model.model.layers) == 5 and model.config.num_hidden_layers == 5
    current = list(range(5))
    for removal in removals:
        scores = {i: _full_logits_answer_ce(prune_layers(model, [j for j in current if j != i]), feats, 0)
                  for i in current}
        best = min(current, key=lambda i: scores[i])
        assert removal["layer"] == best
        assert removal["answer_ce"] == pytest.approx(scores[best], abs=1e-4)
        current.remove(best)
    assert kept == current and len(kept) == 2
    with pytest.raises(ValueError, match="cannot keep 6 layers of 5"):
        greedy_answer_ce(model, feats, 6, pad_id=0)


def test_init_student_by_answer_ce_records_the_removals(tiny_llama_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    ids = tok("the AMF selects the SMF for the PDU session")["input_ids"]
    feats = [{"input_ids": ids, "labels": [-100] * (len(ids) - 3) + ids[-3:]}] * 2
    out = init_student_from_teacher(
        str(tiny_llama_dir), tmp_path / "student", num_layers=1, strategy="answer_ce", encode=lambda _t: feats
    )
    record = json.loads((out / "student_init.json").read_text())
    assert record["selection"] == "answer_ce" and len(record["layers_kept"]) == 1
    removed = [r["layer"] for r in record["answer_ce_removals"]]
    assert sorted(removed + record["layers_kept"]) == list(range(record["teacher_layers"]))
