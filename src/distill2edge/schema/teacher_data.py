"""Recipe schema, `teacher_data.TEACHER`: extra training questions the SFT teacher writes (sequence-level KD data).

A small QA set is memorised by the student (the embedded telecom-qa: 282 training questions over 33
contexts). The SFT teacher can ask and answer new questions about the same training contexts: the student
then learns the teacher's behaviour on more (context, question) pairs than the data holds, the data side of
sequence-level KD (Kim & Rush, 2016). Validation and test contexts are never shown to the teacher.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from distill2edge.schema.base import Strict


class TeacherDataConfig(Strict):
    """How the SFT teacher writes extra examples over the training contexts (stage `teacher_data.TEACHER`).

    For each training context the teacher continues the prompt template cut before the question
    (`Context: ...\\nQuestion:`) by sampling, up to a new line; then it answers each new question greedily
    with the full template. An example is kept only when the question is new (not empty, not a repeat on
    that context, not a training question of that context) and its answer is a span of the context."""

    _omit_at_default = frozenset({"passages_per_context", "passage_seed_words", "max_passage_tokens",
                                  "min_passage_words"})

    questions_per_context: int = Field(8, ge=0)
    """Questions sampled per training context (before filtering: `stats.json` says how many were kept);
    0: none (passages only)."""
    passages_per_context: int = Field(0, ge=0)
    """New passages the teacher writes per training context: it continues the context's first
    `passage_seed_words` words by sampling, across new lines, for `max_passage_tokens` with EOS held off
    (a teacher fine-tuned on short answers ends most paragraphs within ~60 words), then the passage is cut
    after its last full sentence. Passages are unlabelled text (no question, no answer): only
    full-sequence KD (`positions: all`) learns from them, at every position. They widen the text the
    student is healed on beyond the training contexts themselves. 0: none."""
    passage_seed_words: int = Field(12, ge=1)
    """Words of a training context that open each of its passages (the topic; the rest is the teacher's)."""
    max_passage_tokens: int = Field(192, ge=16)
    """New tokens sampled for each passage (EOS held off until then)."""
    min_passage_words: int = Field(40, ge=1)
    """Shorter passages (seed included) are rejected, as are repetitive ones (under half of their word
    trigrams distinct) and repeats."""
    temperature: float = Field(0.8, gt=0)
    """Sampling temperature of the questions (the answers are greedy)."""
    top_p: float = Field(0.95, gt=0, le=1)
    """Nucleus sampling of the questions: the smallest set of tokens holding this much probability."""
    seed: int = 0
    """Seed of the question sampling; context i samples from seed + i, whatever the other contexts."""
    max_question_tokens: int = Field(32, ge=4)
    """New tokens for a question; a question that has not ended (new line or EOS) by then is rejected."""
    max_answer_tokens: int = Field(24, ge=1)
    """New tokens for an answer (its first line is kept, as the evaluation does)."""
    max_contexts: int | None = Field(None, ge=1)
    """Use only the first N training contexts (a quick look at what the teacher writes); empty: all."""

    @model_validator(mode="after")
    def _writes_something(self) -> TeacherDataConfig:
        if self.questions_per_context == 0 and self.passages_per_context == 0:
            raise ValueError("questions_per_context and passages_per_context are both 0: the teacher would write nothing")
        return self
