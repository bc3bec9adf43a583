"""Judges: score parsing, the OpenAI-compatible HTTP client against a stub server, local judges' expected
score over digit tokens, and the Oracle-LLM metrics built on them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distill2edge.evaluate.judge import (
    GGUFJudge,
    HFJudge,
    JudgeError,
    OpenAIJudge,
    make_judge,
    parse_score,
)
from distill2edge.evaluate.llm_metrics import build_prompt
from distill2edge.evaluate.metrics import score_predictions
from distill2edge.evaluate.registry import EvalRecord

from .stub_server import stub_server

LLM = ["answer_correctness", "answer_relevance", "faithfulness", "factual_correctness"]


@pytest.mark.parametrize(("text", "expected"), [
    ("4", 4.0), (" Score: 3/5", 3.0), ("**5**", 5.0), ("I'd say 2.5.", 2.5), ("0 then 4", 4.0),
    ("10 out of 10", None), ("no idea", None), ("", None),
])
def test_parse_score(text: str, expected: float | None) -> None:
    assert parse_score(text, (1, 5)) == expected


def test_http_judge_sends_chat_completion_with_key(monkeypatch) -> None:
    monkeypatch.setenv("JUDGE_KEY_FOR_TEST", "sk-test")
    with stub_server(lambda body: (200, "Score: 4")) as (url, seen):
        judge = OpenAIJudge(url, "grader-1", api_key_env="JUDGE_KEY_FOR_TEST")
        assert judge.score(["grade this", "and this"]) == [4.0, 4.0]
    assert len(seen) == 2 and seen[0]["path"] == "/v1/chat/completions"
    assert seen[0]["headers"]["Authorization"] == "Bearer sk-test"
    body = seen[0]["json"]
    assert body["model"] == "grader-1" and body["temperature"] == 0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][1]["content"] == "grade this"
    assert judge.describe()["prompts"] == 2 and judge.name == f"openai:grader-1@{url}"


def test_http_judge_without_key_sends_no_authorization(monkeypatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with stub_server(lambda body: (200, "3")) as (url, seen):
        OpenAIJudge(url, "m", api_key_env="NO_SUCH_KEY_VAR").score(["x"])
    assert "Authorization" not in seen[0]["headers"]


def test_http_judge_retries_server_errors() -> None:
    replies = iter([(500, {"error": "busy"}), (429, {"error": "slow down"}), (200, "5")])
    with stub_server(lambda body: next(replies)) as (url, seen):
        assert OpenAIJudge(url, "m", retries=2, backoff=0.0).score(["x"]) == [5.0]
    assert len(seen) == 3


def test_http_judge_gives_up_after_retries() -> None:
    with stub_server(lambda body: (503, {"error": "down"})) as (url, seen), \
            pytest.raises(JudgeError, match="after 2 tries"):
        OpenAIJudge(url, "m", retries=1, backoff=0.0).score(["x"])
    assert len(seen) == 2


def test_http_judge_client_error_fails_at_once() -> None:
    with stub_server(lambda body: (401, {"error": "bad key"})) as (url, seen), \
            pytest.raises(JudgeError, match="HTTP 401.*bad key"):
        OpenAIJudge(url, "m", retries=3, backoff=0.0).score(["x"])
    assert len(seen) == 1


def test_http_judge_timeout_is_retried_then_reported() -> None:
    with stub_server(lambda body: (200, "4"), delay_s=0.5) as (url, seen), \
            pytest.raises(JudgeError, match="no answer"):
        OpenAIJudge(url, "m", timeout=0.1, retries=1, backoff=0.0).score(["x"])
    assert len(seen) >= 1


def test_http_judge_counts_unreadable_replies() -> None:
    with stub_server(lambda body: (200, "I cannot grade this")) as (url, _):
        judge = OpenAIJudge(url, "m")
        assert math.isnan(judge.score(["x"])[0])
    assert judge.stats["unparsed"] == 1


def test_llm_metrics_through_http_judge() -> None:
    def respond(body):  # the wrong answer "n99" gets the lowest grade, the right one the highest
        return 200, "1" if "n99" in body["messages"][1]["content"] else "5"

    with stub_server(respond) as (url, seen):
        judge = make_judge(f"openai:m@{url}")
        scores = score_predictions(
            ["n71", "n99", ""], ["n71", "n71", "n71"], LLM, judge=judge,
            questions=["which band?"] * 3, contexts=["cell 1 uses band n71."] * 3,
        )
    for m in LLM:
        assert scores[m] == [1.0, 0.0, 0.0]
    assert len(seen) == 2 * len(LLM)  # the empty prediction is not sent


def test_llm_metrics_need_their_fields() -> None:
    with pytest.raises(ValueError, match="'faithfulness' needs the context"):
        score_predictions(["a"], ["a"], ["faithfulness"], questions=["q"], judge=object())
    with pytest.raises(ValueError, match="'answer_relevance' needs the question"):
        score_predictions(["a"], ["a"], ["answer_relevance"], judge=object())


def test_prompts_hold_their_fields() -> None:
    rec = EvalRecord("PRACH", ("the PRACH", "PRACH channel"), "Which channel?", "x" * 5000)
    p = build_prompt("answer_correctness", rec)
    assert "Which channel?" in p and "the PRACH | PRACH channel" in p and "Candidate answer: PRACH" in p
    assert len(build_prompt("faithfulness", rec)) < 2500  # context cut


@pytest.mark.parametrize("spec", ["nope", "hf:", "openai:model", "openai:@http://x", "gguf:/no/such.gguf"])
def test_bad_judge_spec(spec: str) -> None:
    with pytest.raises(JudgeError):
        make_judge(spec)


def test_hf_judge_expected_score_matches_logits(tiny_llama_dir) -> None:
    """The expected score recomputed with plain transformers: the prompt, then "\nScore:", one sequence at a
    time (no padding), probability mass of each digit's single-token spellings ("3" and " 3")."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill2edge.evaluate.judge import ANSWER_PREFIX

    prompts = ["Question: which band?\nAnswer: n71", "Passage: a much longer passage about the cell and band.\nAnswer: n7"]
    scores = HFJudge(str(tiny_llama_dir)).score(prompts)
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    assert not getattr(tok, "chat_template", None)  # the plain rendering below is the one that applies
    digits = []
    for value in range(1, 6):
        encodings = [tok(s, add_special_tokens=False)["input_ids"] for s in (str(value), f" {value}")]
        digits.append(sorted({ids[0] for ids in encodings if len(ids) == 1}))
    for prompt, got in zip(prompts, scores):
        ids = tok(f"{prompt}\n{ANSWER_PREFIX}", return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, -1].float(), -1).numpy()
        per = np.array([np.logaddexp.reduce(logp[d]) for d in digits])
        p = np.exp(per - per.max())
        p /= p.sum()
        assert got == pytest.approx(float(p @ np.arange(1, 6)), abs=1e-4)  # batch (left padding) == alone
        assert 1.0 <= got <= 5.0


@pytest.mark.slow
def test_gguf_judge_on_embedded_model() -> None:
    from distill2edge.models import embedded_gguf

    judge = GGUFJudge(str(embedded_gguf("smollm2-135m-instruct")), n_ctx=512)
    rec = EvalRecord("The UE sends a preamble.", ("A random access preamble.",), "What does the UE send?", "ctx")
    scores = judge.score([build_prompt(m, rec) for m in LLM])
    assert all(1.0 <= s <= 5.0 for s in scores) and len(set(scores)) > 1
    judge.close()


def test_a_judge_spec_is_built_on_first_use() -> None:
    """`ScoringContext(judge=SPEC)` (a recipe's `evaluate.judge`) grades with that judge, built lazily."""
    from distill2edge.evaluate.registry import ScoringContext, score_records

    with stub_server(lambda body: (200, "5")) as (url, seen):
        ctx = ScoringContext(judge=f"openai:spec-model@{url}")
        recs = [EvalRecord("n71", ("n71",), "which band?", "cell 1 uses band n71.")]
        assert score_records(recs, ["token_f1"], context=ctx)["token_f1"] == [1.0] and ctx.judge == f"openai:spec-model@{url}"
        assert score_records(recs, ["answer_correctness"], context=ctx)["answer_correctness"] == [1.0]
    assert isinstance(ctx.judge, OpenAIJudge) and ctx.judge.name == f"openai:spec-model@{url}"
    assert [r["json"]["model"] for r in seen] == ["spec-model"]
