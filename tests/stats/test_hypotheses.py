"""The hypothesis pairings are exactly the paper's: 12 H-Train, 8 H-SFT and 4 H-Algo tests per metric."""

from __future__ import annotations

import pytest

from distill2edge.stats.hypotheses import PAPER_TABLE3, ROWS, Cell, grid_cells, paper_hypotheses


def test_cell_keys_round_trip() -> None:
    cells = grid_cells()
    assert len(cells) == len({c.key for c in cells}) == 16
    assert cells[0].key == "same-T0-S0-V" and cells[1].key == "same-T1-S0-V" and cells[-1].key == "different-T1-S1-D"
    for c in cells:
        assert Cell.parse(c.key) == c
    for bad in ("same-T2-S0-V", "other-T0-S0-V", "same-T0-S0-X", "same-T0-V"):
        with pytest.raises(ValueError, match="bad cell"):
            Cell.parse(bad)


def test_exactly_the_paper_pairs() -> None:
    got = {(h.family, h.row, h.column, h.treated.key, h.baseline.key) for h in paper_hypotheses()}
    want = set()
    for v in ("same", "different"):
        for a in ("V", "D"):
            col = f"{v}-{a}"
            want |= {
                ("H-Train", "train-student", col, f"{v}-T0-S1-{a}", f"{v}-T0-S0-{a}"),
                ("H-Train", "train-teacher", col, f"{v}-T1-S0-{a}", f"{v}-T0-S0-{a}"),
                ("H-Train", "train-both", col, f"{v}-T1-S1-{a}", f"{v}-T0-S0-{a}"),
                ("H-SFT", "sft-vs-student", col, f"{v}-T1-S1-{a}", f"{v}-T0-S1-{a}"),
                ("H-SFT", "sft-vs-teacher", col, f"{v}-T1-S1-{a}", f"{v}-T1-S0-{a}"),
            }
        want |= {
            ("H-Algo", "algo-sft-both", v, f"{v}-T1-S1-D", f"{v}-T1-S1-V"),
            ("H-Algo", "algo-untrained", v, f"{v}-T0-S0-D", f"{v}-T0-S0-V"),
        }
    assert got == want
    hyps = paper_hypotheses()
    assert len(hyps) == 24
    assert [sum(h.family == f for h in hyps) for f in ("H-Train", "H-SFT", "H-Algo")] == [12, 8, 4]
    # Pairs never cross vocabularies; only H-Algo changes the algorithm, and it changes nothing else.
    for h in hyps:
        assert h.treated.vocab == h.baseline.vocab and h.treated != h.baseline
        same_sft = (h.treated.teacher_sft, h.treated.student_sft) == (h.baseline.teacher_sft, h.baseline.student_sft)
        assert (h.treated.algo != h.baseline.algo) == (h.family == "H-Algo") == same_sft


def test_paper_table_covers_every_row_and_column() -> None:
    hyps = paper_hypotheses()
    assert [r for _, r, _ in ROWS] == list(PAPER_TABLE3)
    assert {(h.row, h.column) for h in hyps} == {(r, c) for r, cols in PAPER_TABLE3.items() for c in cols}
    assert all(0 <= v <= 14 for cols in PAPER_TABLE3.values() for v in cols.values())
