"""The stage key of a distillation changes with the loss definition (issue 15), so a resumed run or a
re-run grid recomputes DSKD / ULD stages trained under the old definitions instead of reusing them."""

from __future__ import annotations

from distill2edge.config import DistillConfig
from distill2edge.pipeline import LOSS_DEFINITION, _distill_key


def test_dskd_and_uld_keys_carry_the_loss_definition_and_others_do_not() -> None:
    for algorithm in ("dskd", "dskd_cma"):
        assert _distill_key(DistillConfig(algorithm=algorithm))["loss_definition"] == LOSS_DEFINITION["dskd"] >= 2
    assert _distill_key(DistillConfig(algorithm="uld"))["loss_definition"] == LOSS_DEFINITION["uld"] >= 2
    vanilla = _distill_key(DistillConfig(algorithm="vanilla"))
    assert "loss_definition" not in vanilla
    # the new DSKD options are left out at their defaults, so vanilla keys are those older run folders used
    assert set(vanilla["dskd"]) == {"projector_lr", "projector", "init", "chunk_tokens"}


def test_the_old_dskd_key_is_not_the_new_one_and_each_option_is_its_own_key() -> None:
    new = _distill_key(DistillConfig(algorithm="dskd"))
    old = {k: v for k, v in new.items() if k != "loss_definition"}  # what stages made before issue 15 were keyed by
    assert old != new
    keys = [new] + [
        _distill_key(DistillConfig(algorithm="dskd", dskd=opt))
        for opt in ({"cma_std": "answer"}, {"teacher_divergence": "loss_name"}, {"hinton_t2": True})
    ]
    assert len({repr(sorted(k.items())) for k in keys}) == 4
