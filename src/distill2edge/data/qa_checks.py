"""Checks of QA examples that the loaders cannot make one record at a time.

Extractive QA trains the student to copy a span of the context. An answer that is not in its context
(a typo, an answer from another paragraph, a paraphrase) still trains and scores, only badly, and
nothing says so. `check_answers_in_context` counts them and reports the first few by file and line;
the recipe's `data.answers_in_context` makes that a warning or an error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Literal

from distill2edge.data.examples import DataError, QAExample

SHOWN = 5
"""Locations listed in the message (the count covers all)."""


def normalize_text(text: str) -> str:
    """Lower case, runs of white space as one space: how an answer is looked for in its context."""
    return " ".join(text.lower().split())


def warn_stderr(message: str) -> None:
    """Default reporter: `warning: ...` on stderr."""
    print(f"warning: {message}", file=sys.stderr)


def holds_an_answer(text: str, answers: Sequence[str]) -> bool:
    """Whether any of `answers` occurs in `text`, case and spacing ignored."""
    norm = normalize_text(text)
    return any(normalize_text(a) in norm for a in answers)


def answer_cut(ex: QAExample, prompt: str) -> bool:
    """Whether `ex`'s context holds a reference answer but `prompt`, the context cut to fit, holds none.
    The question is taken out of the prompt first, so an answer it repeats does not count as kept."""
    return holds_an_answer(ex.context, ex.answers) and not holds_an_answer(prompt.replace(ex.question, " ", 1), ex.answers)


def answers_not_in_context(located: Sequence[tuple[QAExample, str]]) -> list[str]:
    """Locations of the examples none of whose answers occurs in the context (case and spacing ignored)."""
    return [where for ex, where in located if not holds_an_answer(ex.context, ex.answers)]


def check_answers_in_context(
    located: Sequence[tuple[QAExample, str]], policy: Literal["warn", "error"],
    warn: Callable[[str], None] = warn_stderr,
) -> int:
    """Report answers missing from their context per `policy`; returns how many there are.

    `located` pairs each example with where it was read (`file:line`, or a JSON path). With
    `policy="error"` any such answer raises `DataError` with the same message.
    """
    missing = answers_not_in_context(located)
    if not missing:
        return 0
    shown = ", ".join(missing[:SHOWN]) + (", ..." if len(missing) > SHOWN else "")
    message = (f"{len(missing)} of {len(located)} answers do not occur in their context ({shown}); "
               "extractive QA learns to copy spans of the context")
    if policy == "error":
        raise DataError(message + " (data.answers_in_context: error)")
    warn(message + "; set data.answers_in_context: error to stop on them")
    return len(missing)
