"""The telecom-qa paper's grid cells and its three families of hypotheses (H-Train, H-SFT, H-Algo).

A cell of the 16-run grid is (teacher vocabulary same/different as the student's, teacher base/SFT,
student base/SFT, algorithm vanilla KD/DSKD); its key reads `same-T1-S0-V` (T1 = SFT teacher, S0 = base
student, V = vanilla, D = DSKD). Every hypothesis is a one-sided paired test whose alternative says that
the `treated` cell scores higher than the `baseline` cell, run per metric over per-question scores:

H-Train (does SFT before KD help?), for each vocabulary and algorithm (4 columns):
    train-student  (T0, S1) > (T0, S0)      SFT of the student only
    train-teacher  (T1, S0) > (T0, S0)      SFT of the teacher only
    train-both     (T1, S1) > (T0, S0)      SFT of both
H-SFT (is SFT of both better than SFT of one?), for each vocabulary and algorithm:
    sft-vs-student (T1, S1) > (T0, S1)      adding teacher SFT to a fine-tuned student
    sft-vs-teacher (T1, S1) > (T1, S0)      adding student SFT to a fine-tuned teacher
H-Algo (is DSKD better than vanilla KD?), for each vocabulary (2 columns):
    algo-sft-both  (T1, S1, D) > (T1, S1, V)
    algo-untrained (T0, S0, D) > (T0, S0, V)

That is 12 + 8 + 4 = 24 tests per metric, as in the paper (its Eq. 1-3 and Table 3; the text copy in
shared/design/papers lost the formulas, so the row order above and `PAPER_TABLE3` are reconstructed from
the prose of its Sections 2.2 and 3, which quotes most counts).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

VOCABS: tuple[str, ...] = ("same", "different")
ALGOS: tuple[str, ...] = ("vanilla", "dskd")
_ALGO_CODE = {"vanilla": "V", "dskd": "D"}
_CODE_ALGO = {v: k for k, v in _ALGO_CODE.items()}


@dataclass(frozen=True)
class Cell:
    """One distilled model of the grid."""

    vocab: str
    teacher_sft: bool
    student_sft: bool
    algo: str

    def __post_init__(self) -> None:
        if self.vocab not in VOCABS or self.algo not in ALGOS:
            raise ValueError(f"bad cell: vocab must be one of {VOCABS}, algo one of {ALGOS}: {self}")

    @property
    def key(self) -> str:
        return f"{self.vocab}-T{int(self.teacher_sft)}-S{int(self.student_sft)}-{_ALGO_CODE[self.algo]}"

    @property
    def short(self) -> str:
        """Paper-like tuple without the vocabulary: `(T1, S0, V)`."""
        return f"(T{int(self.teacher_sft)}, S{int(self.student_sft)}, {_ALGO_CODE[self.algo]})"

    @classmethod
    def parse(cls, key: str) -> Cell:
        """The cell of a key like `different-T0-S1-D`; ValueError naming the expected form."""
        try:
            vocab, t, s, a = key.split("-")
            if t[0] != "T" or s[0] != "S" or t[1:] not in ("0", "1") or s[1:] not in ("0", "1"):
                raise ValueError
            return cls(vocab, t[1] == "1", s[1] == "1", _CODE_ALGO[a])
        except (ValueError, KeyError, IndexError):
            raise ValueError(f"bad cell key {key!r}: expected VOCAB-T{{0,1}}-S{{0,1}}-{{V,D}}, "
                             "VOCAB in same/different") from None


def grid_cells() -> list[Cell]:
    """The 16 cells, ordered by vocabulary, algorithm, then (T0,S0), (T1,S0), (T0,S1), (T1,S1) (the
    order of the paper's Fig. 4 bars)."""
    return [Cell(v, t, s, a) for v, a in itertools.product(VOCABS, ALGOS)
            for s, t in ((False, False), (False, True), (True, False), (True, True))]


@dataclass(frozen=True)
class Hypothesis:
    """H0: treated <= baseline; H1: treated > baseline (per metric, paired over questions)."""

    family: str
    row: str
    column: str
    """`same-V`, `same-D`, `different-V`, `different-D`; for H-Algo just the vocabulary."""
    treated: Cell
    baseline: Cell

    @property
    def statement(self) -> str:
        return f"{self.treated.short} > {self.baseline.short}, {self.treated.vocab} vocabulary"


ROWS: tuple[tuple[str, str, str], ...] = (
    ("H-Train", "train-student", "SFT of the student only: (T0,S1) > (T0,S0)"),
    ("H-Train", "train-teacher", "SFT of the teacher only: (T1,S0) > (T0,S0)"),
    ("H-Train", "train-both", "SFT of both: (T1,S1) > (T0,S0)"),
    ("H-SFT", "sft-vs-student", "both vs student only: (T1,S1) > (T0,S1)"),
    ("H-SFT", "sft-vs-teacher", "both vs teacher only: (T1,S1) > (T1,S0)"),
    ("H-Algo", "algo-sft-both", "DSKD vs vanilla, both SFT: (T1,S1,D) > (T1,S1,V)"),
    ("H-Algo", "algo-untrained", "DSKD vs vanilla, no SFT: (T0,S0,D) > (T0,S0,V)"),
)
"""(family, row id, description) in Table 3 order."""

# row -> ((teacher_sft, student_sft) treated, (teacher_sft, student_sft) baseline)
_SFT_PAIRS = {
    "train-student": ((False, True), (False, False)),
    "train-teacher": ((True, False), (False, False)),
    "train-both": ((True, True), (False, False)),
    "sft-vs-student": ((True, True), (False, True)),
    "sft-vs-teacher": ((True, True), (True, False)),
}
_ALGO_PAIRS = {"algo-sft-both": (True, True), "algo-untrained": (False, False)}


def columns(family: str) -> list[str]:
    """Table 3 columns of a family: vocabulary x algorithm, or vocabulary alone for H-Algo."""
    if family == "H-Algo":
        return list(VOCABS)
    return [f"{v}-{_ALGO_CODE[a]}" for v in VOCABS for a in ALGOS]


def paper_hypotheses() -> list[Hypothesis]:
    """The 24 hypotheses, in Table 3 order (row by row, columns left to right)."""
    out: list[Hypothesis] = []
    for family, row, _ in ROWS:
        for col in columns(family):
            if family == "H-Algo":
                t, s = _ALGO_PAIRS[row]
                out.append(Hypothesis(family, row, col, Cell(col, t, s, "dskd"), Cell(col, t, s, "vanilla")))
            else:
                vocab, code = col.split("-")
                (tt, ts), (bt, bs) = _SFT_PAIRS[row]
                algo = _CODE_ALGO[code]
                out.append(Hypothesis(family, row, col, Cell(vocab, tt, ts, algo), Cell(vocab, bt, bs, algo)))
    return out


PAPER_TABLE3: dict[str, dict[str, int]] = {
    "train-student": {"same-V": 0, "same-D": 1, "different-V": 0, "different-D": 0},
    "train-teacher": {"same-V": 13, "same-D": 9, "different-V": 0, "different-D": 0},
    "train-both": {"same-V": 13, "same-D": 8, "different-V": 0, "different-D": 0},
    "sft-vs-student": {"same-V": 13, "same-D": 9, "different-V": 0, "different-D": 0},
    "sft-vs-teacher": {"same-V": 0, "same-D": 0, "different-V": 0, "different-D": 0},
    "algo-sft-both": {"same": 0, "different": 1},
    "algo-untrained": {"same": 10, "different": 14},
}
"""Metrics (of 14) rejecting H0 at p < 0.05 in the paper's Table 3 (same = Llama-2-7B teacher, different =
Mistral-7B, student TinyLlama; Sen et al., 2025). Row order and which of the two 13-rows is teacher-only
are reconstructed from the prose (see the module docstring); compare shapes, not exact values."""
