"""The teacher cache: keys, build-once, memory-mapped reads, and training from it matching the online teacher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from distill2edge.config import DataConfig, DistillConfig
from distill2edge.data.qa import load_jsonl
from distill2edge.data.tokenize import IGNORE_INDEX, collate, encode_for_training
from distill2edge.losses.cma import moments
from distill2edge.losses.sparse import sparse_teacher_targets
from distill2edge.models import load_model
from distill2edge.stage_keys import distill_stage_key
from distill2edge.train.teacher_cache import (
    EXAMPLE_KEY,
    cache_key,
    collate_with_index,
    fingerprint_model_dir,
    with_example_index,
)
from distill2edge.train.teacher_cache_build import hidden_cache, topk_cache
from distill2edge.train.trainers import run_distill

TEMPLATE = "Context: {context}\nQuestion: {question}\nAnswer:"


def _features(tok, qa_jsonl: Path, n: int = 10, template: str = TEMPLATE):
    return [encode_for_training(tok, ex, template, 96) for ex in load_jsonl(qa_jsonl)[:n]]


def _never():
    raise AssertionError("the teacher was loaded although the cache entry exists")


def test_top_k_entry_matches_the_online_teacher_and_is_built_once(tiny_llama_dir: Path, qa_jsonl: Path, tmp_path: Path) -> None:
    teacher, tok = load_model(str(tiny_llama_dir))
    feats = _features(tok, qa_jsonl)
    key = cache_key(fingerprint_model_dir(tiny_llama_dir), feats, vocab=len(tok))
    calls = []

    def build():
        calls.append(1)
        return teacher

    entry, stats = topk_cache(tmp_path, key, build, feats, pad_id=tok.pad_token_id, vocab_size=len(tok), k=8,
                              temperature=2.0, batch_size=3, progress=False)
    assert calls == [1] and not stats.hit and stats.bytes > 0
    examples = torch.tensor([7, 2, 5])
    batch = collate([feats[i] for i in examples], tok.pad_token_id)
    with torch.no_grad():
        logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    rows = logits[batch["labels"][:, 1:] != IGNORE_INDEX]
    want = sparse_teacher_targets(rows, 8, 2.0)
    got = entry.targets(examples)
    assert torch.equal(got[0], want[0])
    torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[2], want[2], rtol=1e-5, atol=1e-5)

    again, stats2 = topk_cache(tmp_path, key, _never, feats, pad_id=tok.pad_token_id, vocab_size=len(tok), k=4,
                               temperature=2.0, progress=False)
    assert stats2.hit and again.path == entry.path  # a k=8 entry serves k=4
    small = sparse_teacher_targets(rows, 4, 2.0)
    idx, logp, rest = again.targets(examples, 4)
    assert torch.equal(idx, small[0])
    torch.testing.assert_close(rest, small[2], rtol=1e-4, atol=1e-5)  # the dropped 4 folded into the rest
    # another temperature is another entry
    topk_cache(tmp_path, key, build, feats, pad_id=tok.pad_token_id, vocab_size=len(tok), k=8, temperature=1.0,
               progress=False)
    assert calls == [1, 1]
    metas = sorted(json.loads(p.read_text())["temperature"] for p in (tmp_path / key).glob("topk-*/meta.json"))
    assert metas == [1.0, 2.0]


def test_key_covers_teacher_weights_data_and_template(tiny_llama_dir: Path, make_tiny_model, qa_jsonl: Path) -> None:
    _, tok = load_model(str(tiny_llama_dir))
    feats = _features(tok, qa_jsonl)
    fp = fingerprint_model_dir(tiny_llama_dir)
    base = cache_key(fp, feats)
    assert cache_key(fp, [dict(f) for f in feats]) == base
    assert cache_key(fp, feats[:-1]) != base
    assert cache_key(fp, _features(tok, qa_jsonl, template="Q: {question}\nC: {context}\nA:")) != base
    other = make_tiny_model(seed=1)
    assert cache_key(fingerprint_model_dir(other), feats) != base
    assert cache_key(fp, feats, vocab=10) != base


def test_fingerprint_memo_is_reused_until_a_file_changes(make_tiny_model, tmp_path: Path) -> None:
    model = make_tiny_model()
    memo = tmp_path / "fingerprints.json"
    first = fingerprint_model_dir(model, memo=memo)
    assert first == fingerprint_model_dir(model)  # the memo holds the real digest
    record = json.loads(memo.read_text())
    record[str(model.resolve())]["sha256"] = "remembered"
    memo.write_text(json.dumps(record))
    assert fingerprint_model_dir(model, memo=memo) == "remembered"  # unchanged files: not hashed again
    (model / "config.json").write_text((model / "config.json").read_text() + "\n")
    assert fingerprint_model_dir(model, memo=memo) not in ("remembered", first)


def test_an_interrupted_build_leaves_no_entry(tiny_llama_dir: Path, qa_jsonl: Path, tmp_path: Path) -> None:
    teacher, tok = load_model(str(tiny_llama_dir))
    feats = _features(tok, qa_jsonl)

    class Broken(torch.nn.Module):
        calls = 0

        def forward(self, **kw):
            Broken.calls += 1
            if Broken.calls == 2:
                raise KeyboardInterrupt
            return teacher(**kw)

    with pytest.raises(KeyboardInterrupt):
        topk_cache(tmp_path, "k", Broken, feats, pad_id=tok.pad_token_id, vocab_size=len(tok), k=4, temperature=1.0,
                   batch_size=2, progress=False)
    assert not list((tmp_path / "k").glob("topk-*")) and not list((tmp_path / "k").glob(".topk-*"))
    entry, stats = topk_cache(tmp_path, "k", lambda: teacher, feats, pad_id=tok.pad_token_id, vocab_size=len(tok), k=4,
                              temperature=1.0, progress=False)
    assert not stats.hit and entry.offsets[-1] == sum(1 for f in feats for y in f["labels"][1:] if y != IGNORE_INDEX)


def test_hidden_entry_scatters_the_teacher_states_at_answer_positions(tiny_llama_dir: Path, qa_jsonl: Path, tmp_path: Path) -> None:
    teacher, tok = load_model(str(tiny_llama_dir))
    feats = _features(tok, qa_jsonl)
    entry, _ = hidden_cache(tmp_path, "h", lambda: teacher, feats, prefix="", pad_id=tok.pad_token_id, dtype="float32",
                            batch_size=4, progress=False)
    batch = collate_with_index(lambda f: collate(f, tok.pad_token_id), with_example_index(feats)[3:7])
    assert batch[EXAMPLE_KEY].tolist() == [3, 4, 5, 6]
    shifted = batch["labels"][:, 1:]
    keep = (shifted != IGNORE_INDEX).any(0).nonzero(as_tuple=True)[0]
    mask = shifted[:, keep] != IGNORE_INDEX
    with torch.no_grad():
        want = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       output_hidden_states=True).hidden_states[-1][:, keep]
    got = entry.scatter(batch[EXAMPLE_KEY], mask, torch.float32)
    torch.testing.assert_close(got[mask], want[mask], rtol=1e-5, atol=1e-5)
    assert (got[~mask] == 0).all()
    # cross-model attention's σ: moments of each sample's last hidden state over its real grid positions
    with torch.no_grad():
        last = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       output_hidden_states=True).hidden_states[-1]
    lengths = batch["attention_mask"].sum(1).tolist()
    want_m = sum(moments(last[b, : n - 1]) for b, n in enumerate(lengths))
    torch.testing.assert_close(entry.moments(batch[EXAMPLE_KEY]), want_m, rtol=1e-5, atol=1e-3)
    assert entry.path.name == "hidden-v2-float32"  # entries built before the moments existed are not reused
    with pytest.raises(RuntimeError, match="no longer match"):
        entry.scatter(batch[EXAMPLE_KEY], mask[:, :1], torch.float32)


def _splits(qa_jsonl: Path):
    rows = load_jsonl(qa_jsonl)
    return {"train": rows[:16], "validation": rows[16:20]}


def _history(out) -> list[dict]:
    return [h for h in out.result.history if "loss" in h]


def _distill(teacher: Path, student: Path, qa_jsonl: Path, tmp_path: Path, name: str, **cfg) -> object:
    cfg.setdefault("train", {})
    cfg["train"] = {"epochs": 2, "batch_size": 4, "lr": 2e-3, "checkpoint_every": 2, "early_stopping": None,
                    "scheduler": "constant", **cfg["train"]}
    dcfg = DistillConfig(**cfg)
    data = DataConfig(source=str(qa_jsonl), max_length=96)
    return run_distill(str(teacher), str(student), _splits(qa_jsonl), data, dcfg, tmp_path / name / "model",
                       tmp_path / name / "work", device=torch.device("cpu"), progress=False,
                       cache_root=tmp_path / "cache")


def test_vanilla_kd_from_a_full_top_k_cache_reproduces_the_online_run(tiny_llama_dir: Path, make_tiny_model, qa_jsonl: Path, tmp_path: Path) -> None:
    student = make_tiny_model(seed=3)
    online = _distill(tiny_llama_dir, student, qa_jsonl, tmp_path, "online", algorithm="vanilla")
    cached = _distill(tiny_llama_dir, student, qa_jsonl, tmp_path, "cached", algorithm="vanilla",
                      cache={"enabled": True, "top_k": 100_000})
    assert cached.info["teacher_cache_hit"] is False and cached.info["kd_targets"] == "cached top-448, uniform tail"
    a, b = _history(online), _history(cached)
    assert len(a) == len(b) == 8
    for x, y in zip(a, b):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-4), (x, y)
        assert y["kd"] == pytest.approx(x["kd"], rel=1e-4)
    # another stage or grid cell with the same teacher and data: the entry is reused, a smaller k served from it
    again = _distill(tiny_llama_dir, student, qa_jsonl, tmp_path, "again", algorithm="vanilla",
                     cache={"enabled": True, "top_k": 8})
    assert again.info["teacher_cache_hit"] is True
    assert again.info["teacher_cache"] == cached.info["teacher_cache"]
    assert again.info["kd_targets"] == "cached top-8, uniform tail"
    rest = _distill(tiny_llama_dir, student, qa_jsonl, tmp_path, "rest", algorithm="vanilla",
                    cache={"enabled": True, "top_k": 8, "tail": "rest_bin"})
    assert rest.info["kd_targets"] == "cached top-8, rest bin" and rest.info["teacher_cache_hit"] is True
    assert _history(rest)[0]["kd"] < _history(again)[0]["kd"]  # the rest bin coarsens the uniform-tail pair: a lower bound


@pytest.mark.parametrize("vocab", ["shared", "different"])
def test_dskd_from_cached_hidden_states_reproduces_the_online_run(
    vocab: str, tiny_llama_dir: Path, tiny_teacher_b_dir: Path, make_tiny_model, qa_jsonl: Path, tmp_path: Path,
) -> None:
    teacher = tiny_teacher_b_dir if vocab == "different" else tiny_llama_dir  # cross-model attention / dual space
    student = make_tiny_model(seed=4)
    common = {"algorithm": "dskd", "dskd": {"chunk_tokens": 16}}
    online = _distill(teacher, student, qa_jsonl, tmp_path, "online", **common)
    cached = _distill(teacher, student, qa_jsonl, tmp_path, "cached", **common,
                      cache={"enabled": True, "hidden_dtype": "float32"})
    assert cached.info["kd_targets"] == "cached hidden states (float32)"
    assert cached.info["dskd_variant"] == online.info["dskd_variant"]
    for x, y in zip(_history(online), _history(cached), strict=True):
        for k in x:
            assert y[k] == pytest.approx(x[k], rel=1e-4, abs=1e-6), (k, x, y)  # teacher batches padded differently
    half = _distill(teacher, student, qa_jsonl, tmp_path, "half", **common, cache={"enabled": True})
    assert half.info["teacher_cache"] != cached.info["teacher_cache"]  # float16 is its own entry
    for x, y in zip(_history(online), _history(half), strict=True):
        assert y["loss"] == pytest.approx(x["loss"], rel=2e-2)


def test_cache_is_refused_for_algorithms_it_cannot_serve_and_its_folder_is_not_in_the_stage_key() -> None:
    with pytest.raises(ValueError, match="cache.enabled: the teacher cache serves vanilla, dskd, dskd_cma, not 'uld'"):
        DistillConfig(algorithm="uld", cache={"enabled": True})
    a = DistillConfig(cache={"enabled": True, "dir": "/tmp/a"})
    b = DistillConfig(cache={"enabled": True, "dir": "/tmp/b"})
    assert distill_stage_key(a) == distill_stage_key(b) != distill_stage_key(DistillConfig(cache={"enabled": True, "top_k": 8}))
    assert "cache" not in DistillConfig().model_dump()  # recipes without a cache keep their stage keys
