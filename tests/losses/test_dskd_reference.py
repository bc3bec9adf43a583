"""DSKD, DSKD with cross-model attention and ULD against the numbers their reference implementations
produce, run unmodified on the tiny cases of `reference_cases.py` (the script that ran them:
/work/notes/issue-15-reference.py of issue 15; nothing of the reference code is copied here).

- REF_DSKD / GRAD_DSKD_*, GRAD_CMA_*: songmzhang/DSKD @ 077337a, `code/criterions/dual_space_kd.py`
  ("dskd/...") and `code/criterions/dual_space_kd_with_cross_model_attention.py` ("cma/..."), called through
  their `forward` with `batch_denom` = the student's answer tokens (as `code/distillation.py`), kd_rate 0.5,
  teacher_temperature 1, skew_lambda 0.1, label_smoothing 0. The KD value is (loss - 0.5 CE) / 0.5, i.e.
  kd_loss / batch_denom; the parts are the criterion's logged t2s_ce_loss, t2s_kd_loss, s2t_kd_loss (each
  / batch_denom). Gradients are d(kd) / d(student hidden states).
- REF_ULD / GRAD_ULD_*: Nicolas-BZRD/llm-recipes @ ab6e798 (Boizard et al.), `models/distillation_model.py`,
  `DistillationLoss` with distillation_weight 1, student and teacher temperature T.
- REF_ULD_DSKD: DSKD's `code/criterions/universal_logit_distillation.py` (sum / student answer tokens),
  for the README's statement of how it differs.
Keys: variant / vocabulary (shared: V 7 both, one tokenization; different: V 7 vs 9, two tokenizations) /
divergence (our registry names; the reference's js_divergence, skewed_forward_kl, skewed_reverse_kl) / T.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from distill2edge.losses.cma import CMAScales, cma_kd, grid_embedding_moments, moments
from distill2edge.losses.dskd import DSKDProjectors, LMHead, dual_space_kd
from distill2edge.train.uld import aligned_positions, uld_loss

_spec = importlib.util.spec_from_file_location("reference_cases", Path(__file__).with_name("reference_cases.py"))
cases = sys.modules.setdefault("reference_cases", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(cases)

# ---- reference numbers (float32 reference; 7 significant digits) ----------------------------------
REF_DSKD = {  # key: (kd_loss, t2s_ce_loss, t2s_kd_loss, s2t_kd_loss, sum(grad_h_s * probe)), all / batch_denom
    'dskd/shared/forward_kl/T=1': (18.93964, 14.22103, 2.975073, 1.74353, -1.709104),
    'dskd/shared/forward_kl/T=2': (17.05438, 14.22103, 1.601513, 1.231833, -0.5936151),
    'dskd/shared/reverse_kl/T=1': (25.97508, 14.22103, 10.01052, 1.74353, 2.201273),
    'dskd/shared/reverse_kl/T=2': (19.52789, 14.22103, 4.075023, 1.231833, 0.2386022),
    'dskd/shared/js/T=1': (16.42331, 14.22103, 0.4587443, 1.74353, -0.643002),
    'dskd/shared/js/T=2': (15.77273, 14.22103, 0.3198667, 1.231833, -0.2301957),
    'dskd/shared/skew_forward_kl/T=1': (17.48734, 14.22103, 1.522777, 1.74353, -0.5353037),
    'dskd/shared/skew_forward_kl/T=2': (16.49742, 14.22103, 1.044552, 1.231833, -0.1565721),
    'dskd/shared/skew_reverse_kl/T=1': (17.52307, 14.22103, 1.558506, 1.74353, -0.5258483),
    'dskd/shared/skew_reverse_kl/T=2': (16.55042, 14.22103, 1.097557, 1.231833, -0.1035406),
    'cma/shared/forward_kl/T=1': (4.143866, 2.481287, 0.0, 1.66258, -0.2859789),
    'cma/shared/forward_kl/T=2': (3.706507, 2.481287, 0.0, 1.225221, -0.07816708),
    'cma/shared/reverse_kl/T=1': (4.143866, 2.481287, 0.0, 1.66258, -0.2859789),
    'cma/shared/reverse_kl/T=2': (3.706507, 2.481287, 0.0, 1.225221, -0.07816708),
    'cma/shared/js/T=1': (4.143866, 2.481287, 0.0, 1.66258, -0.2859789),
    'cma/shared/js/T=2': (3.706507, 2.481287, 0.0, 1.225221, -0.07816708),
    'cma/shared/skew_forward_kl/T=1': (4.143866, 2.481287, 0.0, 1.66258, -0.2859789),
    'cma/shared/skew_forward_kl/T=2': (3.706507, 2.481287, 0.0, 1.225221, -0.07816708),
    'cma/shared/skew_reverse_kl/T=1': (4.143866, 2.481287, 0.0, 1.66258, -0.2859789),
    'cma/shared/skew_reverse_kl/T=2': (3.706507, 2.481287, 0.0, 1.225221, -0.07816708),
    'cma/different/forward_kl/T=1': (4.77117, 2.206269, 0.04385126, 2.52105, -0.7534261),
    'cma/different/forward_kl/T=2': (3.943339, 2.206269, 0.01439771, 1.722673, -0.2441527),
    'cma/different/reverse_kl/T=1': (4.778643, 2.206269, 0.05132403, 2.52105, -0.7099038),
    'cma/different/reverse_kl/T=2': (3.943716, 2.206269, 0.01477442, 1.722673, -0.2389182),
    'cma/different/js/T=1': (4.73874, 2.206269, 0.01142162, 2.52105, -0.7707072),
    'cma/different/js/T=2': (3.932553, 2.206269, 0.003611732, 1.722673, -0.2395641),
    'cma/different/skew_forward_kl/T=1': (4.763104, 2.206269, 0.03578576, 2.52105, -0.7511387),
    'cma/different/skew_forward_kl/T=2': (3.940588, 2.206269, 0.01164708, 1.722673, -0.2420706),
    'cma/different/skew_reverse_kl/T=1': (4.766416, 2.206269, 0.03909763, 2.52105, -0.7324687),
    'cma/different/skew_reverse_kl/T=2': (3.940768, 2.206269, 0.01182716, 1.722673, -0.2396154),
}
REF_ULD = {  # key: (Boizard et al.'s distillation_loss, sum(grad_h_s * probe))
    'uld/shared/T=1': (0.344422, -0.2589618),
    'uld/shared/T=2': (0.6071893, 0.2094378),
    'uld/different/T=1': (0.6413269, 0.002850771),
    'uld/different/T=2': (0.7079244, 0.01891344),
}
REF_ULD_DSKD = {  # DSKD's UniversalLogitDistillation: uld_loss / batch_denom (student answer tokens), T=1
    'uld/shared/T=1': 0.3534276,
    'uld/different/T=1': 0.6647097,
}
GRAD_DSKD_SHARED_FORWARD_KL_T2 = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0175713, -0.0632974, -0.143222, -0.1206174, -0.4079605, 0.1084113, -0.0408082, 0.0652191, 0.1436461, -0.1664711, 0.1158808, -0.084902, 0.0, 0.0, 0.0, 0.0, 0.010023, 0.0632525, 0.0299316, 0.014086, -0.0276606, -0.0367451, 0.0505248, -0.055897, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # d kd / d h_s, [B, T, d_s] flattened, dskd/shared/forward_kl/T=2
GRAD_CMA_DIFFERENT_FORWARD_KL_T2 = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0359794, 0.0227637, -0.0266297, 0.0294662, -0.016105, 0.0142852, 0.0079808, -0.0141135, -0.0233809, -0.0120291, 0.0325821, -0.0602851, 0.0, 0.0, 0.0, 0.0, -0.0232033, 0.0440387, -0.0032787, -0.0076952, -0.0131495, 0.0357974, 0.0065837, -0.0142933, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # d kd / d h_s, [B, T, d_s] flattened, cma/different/forward_kl/T=2
GRAD_CMA_DIFFERENT_JS_T1 = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0388822, 0.0759296, -0.0649536, 0.0484892, -0.0574891, 0.0461638, 0.0121847, -0.0524215, -0.1188852, -0.0026948, 0.0785163, -0.2131709, 0.0, 0.0, 0.0, 0.0, -0.0809435, 0.0837413, 0.0435152, -0.0165433, -0.0565842, 0.0859058, 0.0549341, -0.0321463, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # d kd / d h_s, [B, T, d_s] flattened, cma/different/js/T=1
GRAD_ULD_DIFFERENT_T1 = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2318737, -0.0184138, 0.0824127, -0.1094695, 0.0339933, -0.0802761, -0.1208833, 0.0700013, -0.0072939, -0.1128519, -0.1899823, 0.0938593, 0.0, 0.0, 0.0, 0.0, 0.0601769, 0.0549432, 0.1362669, -0.1128721, 0.3687584, -0.0211099, 0.1253316, -0.1245976, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # d kd / d h_s, [B, T, d_s] flattened, uld/different/T=1

REL = 2e-5  # the references compute in float32


def _projectors(c) -> DSKDProjectors:
    proj = DSKDProjectors(cases.DS, cases.DT, cma=True, init="random")
    with torch.no_grad():
        for layer, (w, b) in ((proj.t2s, (c.t2s_w, c.t2s_b)), (proj.s2t, (c.s2t_w, c.s2t_b)), (proj.query, (c.q_w, c.q_b))):
            layer.weight.copy_(w)
            layer.bias.copy_(b)
    return proj


def _pair(e: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[E(x); E(y)] at every grid position [B, T, 2 d] (y = 0 where ignored; those rows are masked)."""
    y = labels.masked_fill(labels == cases.IGNORE, 0)
    return torch.cat([e[ids], e[y]], dim=-1)


def ours(key: str, **options) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """distill2edge's DSKD / CMA on the case named by `key`; returns its terms and d kd / d h_s."""
    variant, vocab, name, temp = key.split("/")
    c = cases.make_case(vocab)
    h_s = c.h_s.clone().requires_grad_(True)
    proj, head_s, head_t = _projectors(c), LMHead(c.w_s), LMHead(c.w_t)
    kw = dict(name=name, temperature=float(temp[2:]), skew_lambda=0.1, **options)
    if variant == "dskd":
        m = c.s_labels != cases.IGNORE
        out = dual_space_kd(h_s[m], None, c.h_t[m], c.s_labels[m], head_s, head_t, proj, **kw)
    else:
        grid_in, grid_tg = grid_embedding_moments(nn.Embedding.from_pretrained(c.e_t), c.t_ids, c.t_labels)
        scales = CMAScales.from_moments(moments(c.h_t), grid_in, grid_tg)  # the case *is* the reference grid
        out = cma_kd(
            _pair(c.e_s, c.s_ids, c.s_labels), h_s, None, c.s_labels, _pair(c.e_t, c.t_ids, c.t_labels), c.h_t,
            c.t_labels != cases.IGNORE, head_s, head_t, proj, scales=scales, **kw,
        )
    (grad,) = torch.autograd.grad(out["kd"], h_s)
    return out, grad


@pytest.mark.parametrize("key", list(REF_DSKD))
def test_dskd_and_cma_match_the_dskd_reference(key: str) -> None:
    """Every variant x vocabulary x divergence x T: the KD value, its three parts and a fold of the
    gradient w.r.t. the student's hidden states equal the reference's."""
    kd, t2s_ce, t2s_kd, s2t_kd, probe = REF_DSKD[key]
    out, grad = ours(key)
    assert float(out["kd"].detach()) == pytest.approx(kd, rel=REL)
    assert float(out["t2s_ce"]) == pytest.approx(t2s_ce, rel=REL)
    assert float(out["kd_student_space"]) == pytest.approx(t2s_kd, rel=REL, abs=1e-6)
    assert float(out["kd_teacher_space"]) == pytest.approx(s2t_kd, rel=REL)
    assert float((grad * cases.probe(grad.shape)).sum()) == pytest.approx(probe, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("key, want", [
    ("dskd/shared/forward_kl/T=2", GRAD_DSKD_SHARED_FORWARD_KL_T2),
    ("cma/different/forward_kl/T=2", GRAD_CMA_DIFFERENT_FORWARD_KL_T2),
    ("cma/different/js/T=1", GRAD_CMA_DIFFERENT_JS_T1),
])
def test_gradients_wrt_student_hidden_match_the_reference(key: str, want: list[float]) -> None:
    """Element by element, zeros at prompt and padding positions included."""
    _, grad = ours(key)
    torch.testing.assert_close(grad.flatten(), torch.tensor(want), rtol=1e-4, atol=2e-6)


def test_options_depart_from_the_reference_as_documented() -> None:
    """hinton_t2 multiplies the KD terms by T²; a loss.name teacher space changes only that term; the
    answer-row σ changes the CMA values (so it is not what the reference computes)."""
    key = "cma/different/reverse_kl/T=2"
    _, t2s_ce, t2s_kd, s2t_kd, _ = REF_DSKD[key]
    out, _ = ours(key, hinton_t2=True)
    assert float(out["kd_student_space"]) == pytest.approx(4 * t2s_kd, rel=REL)
    assert float(out["kd_teacher_space"]) == pytest.approx(4 * s2t_kd, rel=REL)
    assert float(out["t2s_ce"]) == pytest.approx(t2s_ce, rel=REL)
    out, _ = ours("dskd/shared/reverse_kl/T=1", teacher_name="reverse_kl")
    assert float(out["kd_student_space"]) == pytest.approx(REF_DSKD["dskd/shared/reverse_kl/T=1"][2], rel=REL)
    assert float(out["kd_teacher_space"]) != pytest.approx(REF_DSKD["dskd/shared/reverse_kl/T=1"][3], rel=1e-3)
    _, vocab, name, _ = key.split("/")
    c = cases.make_case(vocab)
    answer_only = cma_kd(
        _pair(c.e_s, c.s_ids, c.s_labels), c.h_s, None, c.s_labels, _pair(c.e_t, c.t_ids, c.t_labels), c.h_t,
        c.t_labels != cases.IGNORE, LMHead(c.w_s), LMHead(c.w_t), _projectors(c), name=name, temperature=2.0,
    )
    assert float(answer_only["t2s_ce"]) != pytest.approx(t2s_ce, rel=1e-3)


def _uld(vocab: str, temp: float) -> tuple[torch.Tensor, torch.Tensor]:
    c = cases.make_case(vocab)
    h_s = c.h_s.clone().requires_grad_(True)
    rows, s_cols, t_cols = aligned_positions(c.s_labels != cases.IGNORE, c.t_labels != cases.IGNORE)
    kd = uld_loss((h_s @ c.w_s.T)[rows, s_cols], c.h_t[rows, t_cols], LMHead(c.w_t), rows, temperature=temp)
    (grad,) = torch.autograd.grad(kd, h_s)
    return kd, grad


@pytest.mark.parametrize("key", list(REF_ULD))
def test_uld_matches_boizard_et_al(key: str) -> None:
    """Both vocabularies, T = 1 and 2, a padded shorter sample: per-sample mean, then mean over samples."""
    _, vocab, temp = key.split("/")
    value, probe = REF_ULD[key]
    kd, grad = _uld(vocab, float(temp[2:]))
    assert float(kd) == pytest.approx(value, rel=REL)
    assert float((grad * cases.probe(grad.shape)).sum()) == pytest.approx(probe, rel=1e-4, abs=1e-6)


def test_uld_gradient_matches_boizard_et_al_elementwise() -> None:
    _, grad = _uld("different", 1.0)
    torch.testing.assert_close(grad.flatten(), torch.tensor(GRAD_ULD_DIFFERENT_T1), rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize("key", list(REF_ULD_DSKD))
def test_uld_is_not_dskds_token_reduction(key: str) -> None:
    """DSKD's own ULD (sum / student answer tokens) is another number; ours follows the ULD authors."""
    _, vocab, _ = key.split("/")
    kd, _ = _uld(vocab, 1.0)
    assert float(kd) != pytest.approx(REF_ULD_DSKD[key], rel=1e-3)
