"""RefineSeg terms: ancestor oracles, hand cases, identity reduction, gradients, ablations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_weakseg.methods.base import Method
from napari_weakseg.methods.refineseg import (
    AnnotationHead, ComplementaryTransition, RefineSeg, apply_transition, column_stochastic,
    identity_regulariser, negative_coarse_loss, positive_coarse_loss, uniform_complementary,
)

from .helpers import RTOL, as_float, as_tensor, assert_close



def _field(matrix, b=1, spatial=(2,)):
    """A constant per-pixel matrix as a (B, L, L, *S) field."""
    m = torch.as_tensor(matrix, dtype=torch.float32)
    return m.reshape(1, *m.shape, *([1] * len(spatial))).expand(b, *m.shape, *spatial).clone()


# ----------------------------------------------------------------------------- ancestor oracles
@pytest.fixture
def complementary(oracle):
    d = oracle("refineseg_ancestor_complementary_forward_loss")
    logits = as_tensor(d["logits_flat"]).reshape(2, 32, 32, 4).permute(0, 3, 1, 2)
    label = as_tensor(d["complementary_label"]).reshape(2, 32, 32)
    not_mask = F.one_hot(label, 4).permute(0, 3, 1, 2).bool()
    return d, torch.softmax(logits, 1), not_mask


@pytest.mark.parametrize("identity", ["none", "explicit"])
@pytest.mark.parametrize("multi", ["mean", "mass"])
@pytest.mark.parametrize("matrix", ["default", "oracle_Q"])
def test_complementary_forward_oracle(complementary, identity, multi, matrix):
    d, probs, not_mask = complementary
    a = None if identity == "none" else _field(torch.eye(4), 2, (32, 32))
    m = None if matrix == "default" else as_tensor(d["Q"]).float()
    assert_close(negative_coarse_loss(probs, a, not_mask, m, multi=multi), d["loss"])


def test_uniform_complementary_matches_oracle_Q(complementary):
    d, _, _ = complementary
    np.testing.assert_allclose(uniform_complementary(4).numpy(), d["Q"], rtol=1e-7)
    np.testing.assert_allclose(ComplementaryTransition(4, learnable=True)().detach().numpy(),
                               d["Q"], rtol=1e-6)


@pytest.fixture
def zhang(oracle):
    return oracle("refineseg_ancestor_zhang2020_cm_loss")


def test_column_normalisation_matches_ancestor(zhang):
    a = column_stochastic(as_tensor(zhang["cms_softplus"][0]), 4, "sum")        # (2, 4, 4, 32, 32)
    np.testing.assert_allclose(a.permute(0, 3, 4, 1, 2).numpy(),
                               zhang["helper_annotator0_cm_normalised"], rtol=RTOL, atol=1e-7)
    probs = torch.softmax(as_tensor(zhang["pred_logits"]), 1)
    np.testing.assert_allclose(apply_transition(a, probs).numpy(),
                               zhang["helper_annotator0_noisy_prob"], rtol=RTOL, atol=1e-7)
    _, ce, _ = positive_coarse_loss(probs, a, as_tensor(zhang["labels"][0]))
    assert_close(ce, zhang["helper_annotator0_nll_on_log_probs"])      # NLL of log(A·p), not CE-on-probs
    assert abs(float(ce) - float(zhang["helper_annotator0_ce_on_probs"])) > 1e-2


def test_ancestor_trace_regulariser_from_our_normalisation(zhang):
    """α Σ_annotators mean trace(Â) — checks the normalisation of both annotators' fields."""
    traces = [column_stochastic(as_tensor(zhang["cms_softplus"][i]), 4, "sum")
              .diagonal(dim1=1, dim2=2).sum(-1).mean() for i in range(2)]
    assert_close(float(zhang["alpha"]) * sum(traces), zhang["regularisation"])


# ----------------------------------------------------------------------------- hand cases
# L = 2, pixels: (p = (.8, .2), label 0), (p = (.3, .7), label 1), (p = (.5, .5), no label).
# A = [[.9, .2], [.1, .8]] → q1 = (.76, .24), q2 = (.41, .59).
HAND_P = torch.tensor([[[0.8, 0.3, 0.5], [0.2, 0.7, 0.5]]])     # (1, 2, 3)
HAND_Y = torch.tensor([[0, 1, -1]])
HAND_A = [[0.9, 0.2], [0.1, 0.8]]
HAND_CE = -(math.log(0.76) + math.log(0.59)) / 2


@pytest.mark.parametrize("dice_mode, expected_dice", [
    ("per_class", 1 - ((2 * 0.76) / (0.76 + 0.41 + 1) + (2 * 0.59) / (0.24 + 0.59 + 1)) / 2),
    ("global", 1 - 2 * (0.76 + 0.59) / 4),
])
def test_positive_hand(dice_mode, expected_dice):
    total, ce, dice = positive_coarse_loss(HAND_P, _field(HAND_A, 1, (3,)), HAND_Y,
                                           dice_mode=dice_mode, dice_smooth=0.0)
    assert_close(ce, HAND_CE)
    assert_close(dice, expected_dice)
    assert_close(total, 0.6 * HAND_CE + 0.4 * expected_dice)


def test_positive_mask_and_empty_region():
    mask = torch.tensor([[True, False, True]])                   # drop pixel 2
    _, ce, _ = positive_coarse_loss(HAND_P, _field(HAND_A, 1, (3,)), HAND_Y, mask=mask)
    assert_close(ce, -math.log(0.76))
    p = HAND_P.clone().requires_grad_(True)
    total, _, _ = positive_coarse_loss(p, None, torch.full((1, 3), -1))
    assert as_float(total) == 0.0
    total.backward()                                             # graph kept
    assert p.grad is not None


# L = 3, one pixel p = (.5, .3, .2); A = I; uniform M → v = ((1 - p)/2) = (.25, .35, .40).
NEG_P = torch.tensor([[[0.5], [0.3], [0.2]]])
M_NONUNIFORM = [[0.0, 0.5, 0.5], [0.2, 0.0, 0.8], [0.6, 0.4, 0.0]]   # v = (.18, .33, .49)


@pytest.mark.parametrize("excluded, m, multi, expected", [
    ([0], None, "mean", -math.log(0.25)),
    ([0, 1], None, "mean", -(math.log(0.25) + math.log(0.35)) / 2),
    ([0, 1], None, "mass", -math.log(0.60)),
    ([1], M_NONUNIFORM, "mean", -math.log(0.33)),
    ([0, 2], M_NONUNIFORM, "mass", -math.log(0.67)),
    ([0, 1, 2], None, "mean", 0.0),                               # contradictory: skipped
    ([], None, "mean", 0.0),                                      # no negative label
])
def test_negative_hand(excluded, m, multi, expected):
    not_mask = torch.zeros(1, 3, 1, dtype=torch.bool)
    not_mask[0, excluded, 0] = True
    mm = None if m is None else torch.tensor(m)
    assert_close(negative_coarse_loss(NEG_P, None, not_mask, mm, multi=multi), expected)


def test_negative_uses_transition_field():
    """u = A·p before Mᵀ: A swapping classes 0 and 1 turns "not 0" into "not 1" of p."""
    swap = _field([[0, 1, 0], [1, 0, 0], [0, 0, 1]], 1, (1,))
    not0 = torch.zeros(1, 3, 1, dtype=torch.bool)
    not0[0, 0] = True
    assert_close(negative_coarse_loss(NEG_P, swap, not0), -math.log(0.35))


@pytest.mark.parametrize("matrix, expected", [
    (HAND_A, 0.01 + 0.04 + 0.01 + 0.04), ([[1.0, 0.0], [0.0, 1.0]], 0.0),
    ([[0.0, 1.0], [1.0, 0.0]], 4.0)])
def test_regulariser_hand(matrix, expected):
    assert_close(identity_regulariser(_field(matrix, 2, (3, 2))), expected)


# ----------------------------------------------------------------------------- A = I reduction
@pytest.mark.parametrize("seed", [0, 1])
def test_identity_reduces_to_partial_ce_plus_dice(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 5, 5, generator=g)
    coarse = torch.randint(-1, 3, (2, 5, 5), generator=g)
    probs = torch.softmax(logits, 1)
    pce = F.cross_entropy(logits, coarse, ignore_index=-1)
    # independent per-class Dice on the labelled pixels (numpy)
    p = probs.permute(0, 2, 3, 1).numpy()[coarse.numpy() >= 0]
    y = np.eye(3)[coarse.numpy()[coarse.numpy() >= 0]]
    ks = [k for k in range(3) if y[:, k].any()]
    dice = 1 - np.mean([2 * (p[:, k] * y[:, k]).sum() / (p[:, k] + y[:, k]).sum() for k in ks])
    for a in (None, _field(torch.eye(3), 2, (5, 5))):
        total, ce, d = positive_coarse_loss(probs, a, coarse, dice_smooth=0.0)
        assert_close(ce, pce)
        assert_close(d, dice)
        assert_close(total, 0.6 * float(pce) + 0.4 * dice)


# ----------------------------------------------------------------------------- heads
@pytest.mark.parametrize("normalisation", ["softmax", "softplus"])
def test_heads_column_stochastic_and_near_identity(normalisation):
    torch.manual_seed(0)
    head = AnnotationHead(6, 4, normalisation, init_diag=0.9)
    with torch.no_grad():
        a = head(torch.randn(2, 6, 7, 5))
    assert a.shape == (2, 4, 4, 7, 5)
    assert (a >= 0).all()
    torch.testing.assert_close(a.sum(1), torch.ones(2, 4, 7, 5))
    diag = a.diagonal(dim1=1, dim2=2)
    assert diag.min() > 0.8 and diag.mean() == pytest.approx(0.9, abs=0.03)
    assert float(identity_regulariser(a)) < 0.1


def test_learnable_complementary_keeps_zero_diagonal():
    m = ComplementaryTransition(4, learnable=True)
    with torch.no_grad():
        m.logits.normal_()
    mat = m()
    assert torch.all(mat.diagonal() == 0)
    torch.testing.assert_close(mat.sum(1), torch.ones(4))


# ----------------------------------------------------------------------------- the method
class TinyNet(nn.Module):
    def __init__(self, classes=3, feats=4):
        super().__init__()
        self.enc = nn.Conv2d(1, feats, 1)
        self.head = nn.Conv2d(feats, classes, 1)

    def forward(self, x):
        f = torch.tanh(self.enc(x))
        return self.head(f), f


def _batch(p=2, q=1, seed=0, classes=3, size=6):
    g = torch.Generator().manual_seed(seed)
    coarse_pos = torch.randint(-1, classes, (2, p, size, size), generator=g)
    coarse_neg = torch.rand(2, q, classes, size, size, generator=g) > 0.7
    return {"image": torch.rand(2, 1, size, size, generator=g), "coarse_pos": coarse_pos,
            "coarse_neg": coarse_neg, "valid": torch.ones(2, size, size, dtype=torch.bool)}


def test_method_class_attributes():
    assert issubclass(RefineSeg, Method) and RefineSeg.id == "refineseg"
    opt = RefineSeg.optimizer
    assert (opt.name, opt.lr, opt.weight_decay) == ("adamw", 1e-3, 2e-5)
    assert RefineSeg.kinds == {"coarse_pos", "coarse_neg"}


@pytest.mark.parametrize("learn_m", [False, True])
def test_gradients_reach_net_and_heads(learn_m):
    torch.manual_seed(0)
    net = TinyNet()
    method = RefineSeg(3, 4, num_positive=2, num_negative=1, learn_complementary=learn_m)
    out = method.loss(net, _batch(), step=0)
    out.total.backward()
    for name, p in list(net.named_parameters()) + \
            list(method.extra_modules()["refineseg"].named_parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert len(method.aux.positive) == 2 and len(method.aux.negative) == 1


def test_method_total_matches_pure_functions():
    torch.manual_seed(1)
    net, batch = TinyNet(), _batch()
    method = RefineSeg(3, 4, num_positive=2, num_negative=1)
    out = method.loss(net, batch, 0)
    logits, feats = net(batch["image"])
    probs = torch.softmax(logits, 1)
    expected = 0.0
    for r in range(2):
        a = method.aux.positive[r](feats)
        expected += positive_coarse_loss(probs, a, batch["coarse_pos"][:, r])[0]
        expected += 0.2 * identity_regulariser(a)
    expected += negative_coarse_loss(probs, method.aux.negative[0](feats),
                                     batch["coarse_neg"][:, 0])
    assert_close(out.total, expected)
    assert_close(out.scalar_terms()["pos"] + out.scalar_terms()["neg"] + 0.2 * out.scalar_terms()["reg"], expected, rtol=1e-4)


@pytest.mark.parametrize("preset, has_heads, neg_zero, reg_zero", [
    ("full", True, False, False),
    ("positive_only", True, True, False),
    ("positive_negative", True, False, True),
    ("no_regulariser", True, False, True),
    ("no_heads", False, False, True),
])
def test_ablation_presets(preset, has_heads, neg_zero, reg_zero):
    torch.manual_seed(2)
    net, batch = TinyNet(), _batch(p=1)
    method = RefineSeg(3, 4, ablation=preset)
    out = method.loss(net, batch, 0)
    assert bool(method.extra_modules()) == has_heads
    assert (out.scalar_terms()["neg"] == 0.0) == neg_zero
    assert (out.scalar_terms()["reg"] == 0.0) == reg_zero
    assert_close(out.total, out.scalar_terms()["pos"] + out.scalar_terms()["neg"] + 0.2 * out.scalar_terms()["reg"], rtol=1e-4)
    if not has_heads:  # A = I: exactly the pure terms without transition fields
        logits, _ = net(batch["image"])
        probs = torch.softmax(logits, 1)
        expected = positive_coarse_loss(probs, None, batch["coarse_pos"][:, 0])[0] + \
            negative_coarse_loss(probs, None, batch["coarse_neg"][:, 0])
        assert_close(out.total, expected)


def test_explicit_option_overrides_preset():
    method = RefineSeg(3, 4, ablation="positive_only", use_negative=True)
    assert method.options.use_negative


@pytest.mark.parametrize("kwargs", [{"ablation": "nope"}, {"head_normalisation": "relu"},
                                    {"head_init_diag": 0.2}])
def test_bad_options(kwargs):
    with pytest.raises(ValueError):
        RefineSeg(3, 4, **kwargs)


def test_more_strategies_than_heads_refused():
    net = TinyNet()
    with pytest.raises(ValueError, match="num_positive"):
        RefineSeg(3, 4, num_positive=1).loss(net, _batch(p=2), 0)


def test_missing_negative_key_is_positive_only():
    torch.manual_seed(3)
    net, batch = TinyNet(), _batch(p=1)
    del batch["coarse_neg"]
    out = RefineSeg(3, 4).loss(net, batch, 0)
    assert out.scalar_terms()["neg"] == 0.0 and out.scalar_terms()["pos"] > 0
