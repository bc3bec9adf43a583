from distill2edge.report.markdown import answers_cut_line


def test_answers_cut_line_counts_the_prompts_that_lost_their_answer():
    assert answers_cut_line({"teacher": {"n": 86, "answers_cut": 0}, "student": {"n": 86}}, 256) is None
    one = answers_cut_line({"teacher": {"n": 8, "answers_cut": 2}, "student": {"n": 8, "answers_cut": 2}}, 160)
    assert one is not None and "max_length` 160" in one and "from 2 of 8 test prompts" in one
    spread = answers_cut_line({"teacher": {"n": 8, "answers_cut": 3}, "trimmed": {"n": 8, "answers_cut": 2}}, 160)
    assert spread is not None and "from 2-3 of 8 test prompts" in spread
