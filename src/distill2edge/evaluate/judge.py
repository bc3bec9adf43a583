"""Oracle-LLM judges: a model that reads a grading prompt and returns a score on a fixed scale.

Three backends, chosen by a spec string (`make_judge`):

    hf:REF              a Hugging Face causal LM (`embedded:gemma-3-270m`, a folder, a hub id)
    gguf:PATH           a GGUF file run by llama.cpp (`gguf:embedded:NAME` for an embedded model's GGUF)
    openai:MODEL@URL    an OpenAI-compatible chat-completions endpoint, e.g.
                        `openai:gpt-4o-mini@https://api.openai.com/v1` or a local llama.cpp / vLLM server;
                        the API key is read from the environment variable `api_key_env` (if set)

Local judges (hf, gguf) do not generate: they read the next-token distribution after "Score:" and
return the expected score over the digit tokens of the scale (renormalised among those tokens), so
every prompt gets a number and small models' formatting slips do not matter. The HTTP judge
generates a short reply at temperature 0 and `parse_score` takes the first number on the scale; a
reply without one is counted in `stats["unparsed"]` and gives NaN.

The default judge (`DEFAULT_JUDGE`) is the largest embedded model, Gemma-3-270M. A 270M model is a
weak grader: its numbers show that the machinery runs, not a trustworthy quality signal; use a large
local model or an endpoint for real studies. The spec always arrives explicitly (a recipe's
`evaluate.judge`, the `judge` argument of `evaluate_models` / `run_grid`); the `$DISTILL2EDGE_JUDGE`
override of the `evaluate` and `grid` commands is read by those commands (`cli.options.judge_option`).
"""

from __future__ import annotations

import atexit
import json
import math
import os
import re
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from distill2edge.evaluate.judge_spec import DEFAULT_JUDGE, JudgeError, parse_judge_spec

__all__ = [
    "DEFAULT_JUDGE", "GGUFJudge", "HFJudge", "Judge", "JudgeError", "OpenAIJudge", "make_judge", "parse_judge_spec",
    "parse_score",
]

SCALE: tuple[int, int] = (1, 5)
ANSWER_PREFIX = "Score:"
SYSTEM_PROMPT = "You are a strict grader. Reply with a single number on the scale you are given."
_NUMBER = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)")


def parse_score(text: str, scale: tuple[int, int] = SCALE) -> float | None:
    """The first number in `text` that lies on `scale` ("4", "Score: 4/5", "**3.5**"), else None."""
    lo, hi = scale
    for match in _NUMBER.finditer(text):
        value = float(match.group(1))
        if lo <= value <= hi:
            return value
    return None


class Judge(ABC):
    """Scores grading prompts on `scale`. `name` says which model judged (reports quote it)."""

    scale: tuple[int, int] = SCALE

    def __init__(self, name: str) -> None:
        self.name = name
        self.stats: dict[str, int] = {"prompts": 0, "unparsed": 0}

    @abstractmethod
    def score(self, prompts: Sequence[str]) -> list[float]:
        """One score on `scale` per prompt (NaN when an answer could not be read)."""

    def describe(self) -> dict[str, Any]:
        return {"judge": self.name, "scale": list(self.scale), **self.stats}


class LocalJudge(Judge):
    """Expected score over the scale's digit tokens, read from the logits after the prompt."""

    batch_size: int = 4

    @abstractmethod
    def _last_logprobs(self, texts: Sequence[str]) -> np.ndarray:
        """Log-probabilities of the next token after each text, shape (len(texts), vocab)."""

    @abstractmethod
    def _single_token_ids(self, text: str) -> list[int]:
        """Token ids of `text` when it is exactly one token, else []."""

    def _render(self, prompt: str) -> str:
        return f"{prompt}\n{ANSWER_PREFIX}"

    def _digit_ids(self) -> list[list[int]]:
        """For each value on the scale, the single-token spellings ("3", " 3") of its digit."""
        if not hasattr(self, "_digits"):
            lo, hi = self.scale
            digits = [sorted({i for s in (str(v), f" {v}") for i in self._single_token_ids(s)})
                      for v in range(lo, hi + 1)]
            if any(not ids for ids in digits):
                raise JudgeError(f"judge {self.name}: the tokenizer has no single token for some digit of "
                                 f"{lo}..{hi}; use a generating (openai:) judge")
            self._digits = digits
        return self._digits

    def score(self, prompts: Sequence[str]) -> list[float]:
        lo, _ = self.scale
        digits = self._digit_ids()
        out: list[float] = []
        for start in range(0, len(prompts), self.batch_size):
            texts = [self._render(p) for p in prompts[start : start + self.batch_size]]
            logp = self._last_logprobs(texts)  # (B, V)
            per_value = np.stack([np.logaddexp.reduce(logp[:, ids], axis=1) for ids in digits], axis=1)
            probs = np.exp(per_value - per_value.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
            out.extend((probs @ np.arange(lo, lo + len(digits), dtype=np.float64)).tolist())
        self.stats["prompts"] += len(prompts)
        return out


class HFJudge(LocalJudge):
    """A causal LM loaded with `distill2edge.models.load_model`; the chat template is used when the
    tokenizer has one (the user turn holds the prompt, the assistant turn starts with "Score:")."""

    def __init__(self, ref: str, *, device: str = "cpu", batch_size: int = 4, max_prompt_tokens: int = 1024) -> None:
        super().__init__(f"hf:{ref}")
        self.ref, self.device, self.batch_size, self.max_prompt_tokens = ref, device, batch_size, max_prompt_tokens
        self._model: Any = None

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            from distill2edge.models import load_model

            self._model, self._tok = load_model(self.ref, device=self.device)
            self._tok.truncation_side = "left"  # a long context loses its start, never the instructions
        return self._model, self._tok

    def _render(self, prompt: str) -> str:
        _, tok = self._load()
        if getattr(tok, "chat_template", None):
            chat = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
            from jinja2.exceptions import TemplateError

            try:
                return tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) + ANSWER_PREFIX
            except TemplateError:  # templates that refuse a system role
                chat = chat[1:]
                return tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) + ANSWER_PREFIX
        return super()._render(prompt)

    def _single_token_ids(self, text: str) -> list[int]:
        _, tok = self._load()
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return ids if len(ids) == 1 else []

    def _last_logprobs(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        model, tok = self._load()
        tok.padding_side = "left"  # the next-token logits of every row are then at the last position
        try:
            enc = tok(list(texts), return_tensors="pt", padding=True, truncation=True, max_length=self.max_prompt_tokens,
                      add_special_tokens=not getattr(tok, "chat_template", None))
        finally:
            tok.padding_side = "right"
        mask = enc["attention_mask"].to(self.device)
        # Positions count real tokens only, so a left-padded row sees the positions it would see alone.
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        with torch.no_grad():  # logits_to_keep=1: (B, 1, V), not (B, T, V) (262k-token vocabularies)
            logits = model(input_ids=enc["input_ids"].to(self.device), attention_mask=mask, position_ids=positions,
                           logits_to_keep=1).logits[:, -1].float()
        return torch.log_softmax(logits, dim=-1).cpu().numpy()


class GGUFJudge(LocalJudge):
    """A GGUF model run by llama-cpp-python (plain prompt, no chat template), one prompt at a time."""

    def __init__(self, path: str, *, n_ctx: int = 2048, n_threads: int | None = None) -> None:
        super().__init__(f"gguf:{path}")
        # llama-cpp-python's default is half the cores; a judge run has the machine to itself.
        self.path, self.n_ctx, self.n_threads = path, n_ctx, n_threads or os.cpu_count()
        self._llm: Any = None

    def _load(self) -> Any:
        if self._llm is None:
            from distill2edge.runtimes import llamacpp

            self._llm = llamacpp.open_gguf(self.path, n_ctx=self.n_ctx, threads=self.n_threads)
            atexit.register(self.close)  # freeing it during interpreter shutdown raises in llama-cpp-python
        return self._llm

    def close(self) -> None:
        """Free the llama.cpp model (also done at exit)."""
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def _single_token_ids(self, text: str) -> list[int]:
        from distill2edge.runtimes import llamacpp

        ids = llamacpp.tokenize(self._load(), text, add_bos=False)
        return ids if len(ids) == 1 else []

    def _last_logprobs(self, texts: Sequence[str]) -> np.ndarray:
        from distill2edge.runtimes import llamacpp

        llm = self._load()
        rows = []
        for text in texts:
            tokens = llamacpp.tokenize(llm, text)
            if len(tokens) > self.n_ctx - 1:  # keep BOS and the end (instructions, "Score:")
                tokens = tokens[:1] + tokens[len(tokens) - (self.n_ctx - 2):]
            logits = llamacpp.last_logits(llm, tokens).astype(np.float64)
            rows.append(logits - np.logaddexp.reduce(logits))
        return np.stack(rows)


class OpenAIJudge(Judge):
    """Chat completions over HTTP (urllib): temperature 0, a short reply parsed by `parse_score`.

    Connection errors, timeouts, HTTP 429 and 5xx are retried `retries` times with exponential backoff;
    other HTTP errors fail at once with the server's message.
    """

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 retries: int = 3, backoff: float = 1.0, max_tokens: int = 8) -> None:
        super().__init__(f"openai:{model}@{base_url}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key_env, self.timeout = model, api_key_env, timeout
        self.retries, self.backoff, self.max_tokens = retries, backoff, max_tokens

    def complete(self, prompt: str) -> str:
        """The assistant's reply to `prompt` (after the system prompt)."""
        payload = {
            "model": self.model, "temperature": 0, "max_tokens": self.max_tokens,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}],
        }
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        body = json.dumps(payload).encode("utf-8")
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                    reply = json.loads(resp.read().decode("utf-8"))
                return str(reply["choices"][0]["message"]["content"] or "")
            except urllib.error.HTTPError as e:
                detail = e.read().decode("utf-8", "replace")[:300]
                if e.code != 429 and e.code < 500:
                    raise JudgeError(f"judge {self.name}: HTTP {e.code} from {self.url}: {detail}") from None
                last = JudgeError(f"HTTP {e.code}: {detail}")
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                last = e
            except (KeyError, IndexError, TypeError, json.JSONDecodeError) as e:
                raise JudgeError(f"judge {self.name}: unexpected reply from {self.url}: {e!r}") from None
        raise JudgeError(f"judge {self.name}: no answer from {self.url} after {self.retries + 1} tries: {last}")

    def score(self, prompts: Sequence[str]) -> list[float]:
        out = []
        for prompt in prompts:
            value = parse_score(self.complete(prompt), self.scale)
            if value is None:
                self.stats["unparsed"] += 1
            out.append(math.nan if value is None else value)
        self.stats["prompts"] += len(prompts)
        return out


def make_judge(spec: str, *, device: str = "cpu", api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
               retries: int = 3) -> Judge:
    """Build a judge from `hf:REF`, `gguf:PATH|gguf:embedded:NAME` or `openai:MODEL@URL` (see module doc)."""
    kind, rest = parse_judge_spec(spec)
    if kind == "hf":
        return HFJudge(rest, device=device)
    if kind == "gguf":
        if rest.startswith("embedded:"):
            from distill2edge.models import embedded_gguf

            return GGUFJudge(str(embedded_gguf(rest.removeprefix("embedded:"))))
        if not os.path.isfile(rest):
            raise JudgeError(f"judge GGUF file not found: {rest}")
        return GGUFJudge(rest)
    model, _, url = rest.partition("@")
    return OpenAIJudge(url, model, api_key_env=api_key_env, timeout=timeout, retries=retries)
