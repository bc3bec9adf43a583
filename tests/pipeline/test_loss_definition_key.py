"""The stage key of a distillation changes with the loss definition (issue 15), so a resumed run or a
re-run grid recomputes vanilla KD / DSKD / ULD stages trained under the old definitions instead of
reusing them."""

from __future__ import annotations

from typing import Any

from distill2edge.config import DistillConfig
from distill2edge.stage_keys import LOSS_DEFINITION, distill_stage_key


def _old_key(new: dict[str, Any]) -> dict[str, Any]:
    """What stages made before issue 15 were keyed by: no `loss_definition`, and the options added by
    issue 15 were not fields (they are left out of dumps at their defaults, so they are absent here)."""
    return {k: v for k, v in new.items() if k != "loss_definition"}


def test_each_kd_algorithm_key_carries_its_loss_definition() -> None:
    for algorithm in ("dskd", "dskd_cma"):
        assert distill_stage_key(DistillConfig(algorithm=algorithm))["loss_definition"] == LOSS_DEFINITION["dskd"] >= 2
    assert distill_stage_key(DistillConfig(algorithm="uld"))["loss_definition"] == LOSS_DEFINITION["uld"] >= 2
    vanilla = distill_stage_key(DistillConfig(algorithm="vanilla"))
    assert vanilla["loss_definition"] == LOSS_DEFINITION["vanilla"] >= 2  # no T² since issue 15
    # the new options are left out at their defaults, so a key differs from the old one only by the version
    assert set(vanilla["dskd"]) == {"projector_lr", "projector", "init", "chunk_tokens"}
    assert "hinton_t2" not in vanilla["loss"]


def test_the_old_keys_are_not_the_new_ones_and_each_option_is_its_own_key() -> None:
    for algorithm in ("vanilla", "dskd", "uld"):
        new = distill_stage_key(DistillConfig(algorithm=algorithm))
        assert _old_key(new) != new, algorithm
    keys = [distill_stage_key(DistillConfig(algorithm="dskd"))] + [
        distill_stage_key(DistillConfig(algorithm="dskd", dskd=opt))
        for opt in ({"cma_std": "answer"}, {"teacher_divergence": "loss_name"}, {"hinton_t2": True})
    ]
    assert len({repr(sorted(k.items())) for k in keys}) == 4
    # the Hinton convention is an option of its own: it computes what old vanilla stages computed, but
    # under a new key too (the old stages are not reused either way)
    plain = distill_stage_key(DistillConfig(algorithm="vanilla"))
    hinton = distill_stage_key(DistillConfig(algorithm="vanilla", loss={"hinton_t2": True}))
    assert hinton["loss"]["hinton_t2"] is True and hinton != plain and _old_key(hinton) != _old_key(plain)
    cached = distill_stage_key(DistillConfig(algorithm="vanilla", cache={"enabled": True}))
    assert cached["loss_definition"] == LOSS_DEFINITION["vanilla"]
    # At T = 1 the T² factor is 1: old and new vanilla KD compute the same loss, so the key is the old one
    # (a full-sequence KD stage trained at T = 1 before issue 15 is reused, not retrained).
    t1 = DistillConfig(algorithm="vanilla", loss={"temperature": 1.0}, positions="all")
    assert "loss_definition" not in distill_stage_key(t1)
    t1_multi = DistillConfig(algorithm="multi_teacher", teachers={"a": 1.0}, loss={"temperature": 1.0})
    assert "loss_definition" not in distill_stage_key(t1_multi)


def test_multi_teacher_keys_carry_the_families_its_teachers_use() -> None:
    def key(teachers: dict[str, Any]) -> Any:
        return distill_stage_key(DistillConfig(algorithm="multi_teacher", teachers=teachers)).get("loss_definition")

    v, d = LOSS_DEFINITION["vanilla"], LOSS_DEFINITION["dskd"]
    assert key({"a": {"kd": "logits"}}) == v
    assert key({"a": 1.0}) == v  # kd: auto becomes logits on a shared vocabulary
    assert key({"a": {"kd": "dskd"}, "b": {"kd": "none"}}) == d  # the key issue 15's DSKD change gave
    assert key({"a": {"kd": "logits"}, "b": {"kd": "dskd"}}) == {"vanilla": v, "dskd": d}
    assert key({"a": {"kd": "none"}}) is None  # hidden-state MSE only: no KD term changed
