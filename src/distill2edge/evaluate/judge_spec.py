"""Judge specs, apart from the judges: the default spec, the form check and the judges' error.

Separate from `judge.py` (which builds judges and reaches into `models`) so the recipe schema can check
a recipe's `evaluate.judge` at load time without importing the model code: this module imports nothing
of the package.
"""

from __future__ import annotations

DEFAULT_JUDGE = "hf:embedded:gemma-3-270m"
"""The judge used when none is named: the largest embedded model, through transformers."""


class JudgeError(RuntimeError):
    """The judge could not be built or did not answer (bad spec, unreachable endpoint, HTTP error)."""


def parse_judge_spec(spec: str) -> tuple[str, str]:
    """(kind, rest) of a judge spec, `hf:REF`, `gguf:PATH|gguf:embedded:NAME` or `openai:MODEL@URL`; JudgeError
    if it is none of them. Checks the form only, so a recipe's `evaluate.judge` fails at load, not after training."""
    kind, _, rest = spec.partition(":")
    if kind in ("hf", "gguf") and rest:
        return kind, rest
    if kind == "openai" and "@" in rest:
        model, _, url = rest.partition("@")
        if model and url.startswith(("http://", "https://")):
            return kind, rest
    raise JudgeError(f"bad judge spec {spec!r}: use hf:REF, gguf:PATH, gguf:embedded:NAME or openai:MODEL@URL")
