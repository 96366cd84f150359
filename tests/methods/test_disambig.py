"""Self-disambiguation losses: the authors' oracles, hand cases, declared vs present sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from napari_weakseg.methods.base import Method
from napari_weakseg.methods.disambig import (
    SelfDisambiguation, ambiguity_dice, ambiguity_focal_ce, annotated_sets, categories_to_mask,
    entropy_regulariser, self_disambiguation_loss, sparse_terms,
)

from .helpers import as_float, as_tensor, assert_close



# ----------------------------------------------------------------------------- partial oracle
@pytest.fixture
def partial(oracle):
    d = oracle("versatile_partial")
    return d, as_tensor(d["probs"]), as_tensor(d["target"]), categories_to_mask(d["annotated_fg_categories"], 4)


@pytest.mark.parametrize("key", ["focal_ce", "dice", "entropy_reg", "total"])
@pytest.mark.parametrize("squeeze_depth", [False, True])
def test_partial_oracle(partial, key, squeeze_depth):
    d, probs, target, ann = partial
    if squeeze_depth:  # the same data as 2D (B, C, H, W): the losses are dimension-agnostic
        probs, target = probs[:, :, 0], target[:, 0]
    out = self_disambiguation_loss(probs, target, ann)
    assert_close(out[key], d[key])


@pytest.mark.parametrize("sample", [0, 1, 2])
def test_partial_oracle_per_sample(partial, sample):
    d, probs, target, ann = partial
    sl = slice(sample, sample + 1)
    out = self_disambiguation_loss(probs[sl], target[sl], ann[sl])
    focal, reg, dice = d["per_sample_focal_reg_dice"][sample]
    assert_close(out["focal_ce"], focal, atol=1e-12)
    assert_close(out["entropy_reg"], reg)
    assert_close(out["dice"], dice)


def test_categories_to_mask():
    m = categories_to_mask([[1, 2, -1, -1], [3, -1, -1, -1], [-1, -1, -1, -1]], 4)
    assert m.tolist() == [[False, True, True, False], [False, False, False, True],
                          [False, False, False, False]]


def test_present_fallback_differs_only_where_a_declared_class_is_absent(partial):
    """Sample 1 declares {1, 3} but only 3 is present: "present" throws class 1 away."""
    d, probs, target, ann = partial
    present = categories_to_mask([[1, 2], [3, -1], [-1, -1]], 4)
    assert torch.equal(annotated_sets(target, 4, None), present)
    f_decl, _ = ambiguity_focal_ce(probs, target, ann)
    f_none, _ = ambiguity_focal_ce(probs, target, None)
    f_pres, _ = ambiguity_focal_ce(probs, target, present)
    assert torch.allclose(f_none, f_pres)
    assert torch.allclose(f_decl[[0, 2]], f_none[[0, 2]])
    # declared-absent class 1 leaves the merged class: q0 smaller → larger loss
    assert f_decl[1] > f_none[1] + 1e-3


def test_row_without_declaration_falls_back_to_present():
    target = torch.tensor([[[0, 2], [1, 0]], [[0, 2], [0, 0]]])
    declared = torch.tensor([[False, False, False, False], [False, False, True, True]])
    phi = annotated_sets(target, 4, declared)
    assert phi.tolist() == [[False, True, True, False], [False, False, True, True]]


# ----------------------------------------------------------------------------- sparse oracle
@pytest.fixture
def sparse(oracle):
    d = oracle("versatile_sparse")
    axes = [as_tensor(d[f"annotated_categories_{a}_axis"]) for a in "zyx"]
    return d, as_tensor(d["probs"]), as_tensor(d["target"]), as_tensor(d["mask"]), axes


@pytest.mark.parametrize("use_axes", [True, False])
@pytest.mark.parametrize("reference_bug, dice_key", [
    (False, "dice_helper_merged_bg_fixed"), (True, "dice_reference")])
def test_sparse_oracle(sparse, use_axes, reference_bug, dice_key):
    d, probs, target, mask, axes = sparse
    out = self_disambiguation_loss(probs, target, sparse_mask=mask,
                                   annotated_per_axis=axes if use_axes else None,
                                   reference_bug=reference_bug)
    assert_close(out["focal_ce"], d["focal_ce"])
    assert_close(out["entropy_reg"], d["entropy_reg"])
    assert_close(out["dice"], d[dice_key])
    assert out["counted"].tolist() == [True, True]


def test_sparse_declared_empty_slice_is_kept():
    """A declared slice whose declared class is absent carries information (kept); the
    "present" rule sees an empty slice and skips it."""
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(1, 3, 2, 4, 4, generator=g), 1)
    target = torch.zeros(1, 2, 4, 4, dtype=torch.long)
    mask = torch.zeros(1, 2, 4, 4)
    mask[0, 1] = 1                                       # only slice 1 annotated, all 0
    ann_z = torch.zeros(1, 2, 3, dtype=torch.bool)
    ann_z[0, 1, 2] = True                                # ... declared: "class 2 complete"
    none_y = torch.zeros(1, 4, 3, dtype=torch.bool)
    f, d, counted = sparse_terms(probs, target, mask, [ann_z, none_y, none_y])
    assert counted.tolist() == [True]
    phi = torch.tensor([[False, False, True]])
    f_ref, _ = ambiguity_focal_ce(probs[:, :, 1], target[:, 1], phi)
    d_ref, _ = ambiguity_dice(probs[:, :, 1], target[:, 1], phi)
    assert_close(f[0], f_ref[0])
    assert_close(d[0], d_ref[0])
    _, _, counted_present = sparse_terms(probs, target, mask, None)
    assert counted_present.tolist() == [False]


# ----------------------------------------------------------------------------- hand cases
# 1 sample, C = 3, two pixels: a labelled 1 with p = (.2, .5, .3); b labelled 0 with
# p = (.6, .1, .3).
HAND_PROBS = torch.tensor([[[0.2, 0.6], [0.5, 0.1], [0.3, 0.3]]])   # (1, 3, 2)
HAND_TARGET = torch.tensor([[1, 0]])


@pytest.mark.parametrize("declared, q_b", [
    ([False, True, False], 0.9),   # Φ = {1}: merged {0, 2} → q_b = .6 + .3
    ([False, True, True], 0.6),    # Φ = {1, 2} (2 declared, absent): merged {0} → q_b = .6
])
def test_focal_hand(declared, q_b):
    value, counted = ambiguity_focal_ce(HAND_PROBS, HAND_TARGET, torch.tensor([declared]))
    expected = (-(0.5 ** 2) * math.log(0.5) - (1 - q_b) ** 2 * math.log(q_b)) / 2
    assert_close(value[0], expected)
    assert counted.tolist() == [True]


def test_dice_hand():
    value, _ = ambiguity_dice(HAND_PROBS, HAND_TARGET, torch.tensor([[False, True, False]]))
    d1 = (2 * 0.5 + 1) / (2 * 0.5 + 0.1 + 0.5 + 1)          # class 1: TP .5, FP .1, FN .5
    d0 = (2 * 0.9 + 1) / (2 * 0.9 + 0.5 + 0.1 + 1)          # merged: pred (.5, .9), tgt (0, 1)
    assert_close(value[0], 1 - (d0 + d1) / 2)
    bug, _ = ambiguity_dice(HAND_PROBS, HAND_TARGET, torch.tensor([[False, True, False]]),
                            merged_over_all=True)
    d0_bug = (2 * 1 + 1) / (2 * 1 + 1 + 0 + 1)               # merged pred ≡ 1
    assert_close(bug[0], 1 - (d0_bug + d1) / 2)


@pytest.mark.parametrize("labelled, weight", [(True, 1.0), (False, 3.0)])
def test_entropy_hand(labelled, weight):
    probs = torch.full((1, 4, 3, 3), 0.25)
    target = torch.zeros(1, 3, 3, dtype=torch.long)
    if labelled:
        target[0, 1, 1] = 2
    assert_close(entropy_regulariser(probs, target)[0], weight * math.log(4))


def test_valid_mask_restricts_focal_and_dice():
    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(2, 3, 4, 4, generator=g), 1)
    target = torch.randint(0, 3, (2, 4, 4), generator=g)
    valid = torch.zeros(2, 4, 4, dtype=torch.bool)
    valid[0, :2] = True                                   # sample 1 has no valid pixel
    ann = torch.tensor([[False, True, True], [False, True, False]])
    out = self_disambiguation_loss(probs, target, ann, valid=valid)
    f_sub, _ = ambiguity_focal_ce(probs[:1, :, :2], target[:1, :2], ann[:1])
    d_sub, _ = ambiguity_dice(probs[:1, :, :2], target[:1, :2], ann[:1])
    assert out["counted"].tolist() == [True, False]
    assert_close(out["focal_ce"], f_sub[0])
    assert_close(out["dice"], d_sub[0])
    assert_close(out["entropy_reg"], entropy_regulariser(probs, target).mean())


def test_nothing_counted_gives_zero_with_graph():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    out = self_disambiguation_loss(torch.softmax(logits, 1),
                                   torch.zeros(1, 4, 4, dtype=torch.long),
                                   valid=torch.zeros(1, 4, 4, dtype=torch.bool))
    assert as_float(out["focal_ce"]) == 0.0 and as_float(out["dice"]) == 0.0
    out["total"].backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


# ----------------------------------------------------------------------------- the method
class TinyNet(nn.Module):
    def __init__(self, classes=4, feats=5):
        super().__init__()
        self.enc = nn.Conv2d(1, feats, 1)
        self.head = nn.Conv2d(feats, classes, 1)

    def forward(self, x):
        f = torch.tanh(self.enc(x))
        return self.head(f), f


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.full((3, 6, 6), -1, dtype=torch.long)
    labels[0, :2, :2] = 1                                  # partial slice, Φ = {1, 3}
    labels[1, 3:, 3:] = 2                                  # sparse declared slice, Φ = {2}
    annotated = torch.tensor([[False, True, False, True], [False, False, True, False],
                              [False, False, False, False]])
    valid = torch.ones(3, 6, 6, dtype=torch.bool)
    valid[2] = False                                       # undeclared sparse slice
    return {"image": torch.rand(3, 1, 6, 6, generator=g), "labels": labels,
            "annotated": annotated, "valid": valid}


def test_method_registration_and_optimizer():
    assert issubclass(SelfDisambiguation, Method) and SelfDisambiguation.id == "disambig"
    opt = SelfDisambiguation.optimizer
    assert (opt.name, opt.lr, opt.weight_decay, opt.poly_power) == ("adamw", 1e-3, 1e-5, 0.9)


@pytest.mark.parametrize("annotated_from", ["declared", "present"])
def test_method_loss_maps_batch_and_backpropagates(annotated_from):
    torch.manual_seed(0)
    net, batch = TinyNet(), _batch()
    method = SelfDisambiguation(4, 5, annotated_from=annotated_from)
    out = method.loss(net, batch, step=0)
    logits, _ = net(batch["image"])
    ann = batch["annotated"] if annotated_from == "declared" else None
    ref = self_disambiguation_loss(torch.softmax(logits, 1), batch["labels"].clamp(min=0), ann,
                                   valid=batch["valid"])
    assert_close(out.total, ref["total"])
    assert set(out.terms) == {"focal_ce", "dice", "entropy_reg"}
    assert ref["counted"].tolist() == [True, True, False]
    out.total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_method_declared_differs_from_present():
    torch.manual_seed(0)
    net, batch = TinyNet(), _batch()
    declared = SelfDisambiguation(4, 5).loss(net, batch, 0).total
    present = SelfDisambiguation(4, 5, annotated_from="present").loss(net, batch, 0).total
    assert abs(as_float(declared) - as_float(present)) > 1e-4


@pytest.mark.parametrize("options", [{"annotated_from": "guess"}, {"entropy_wieght": 0.0}])
def test_method_rejects_unknown_option(options):
    with pytest.raises(ValueError):
        SelfDisambiguation(4, **options)


@pytest.mark.parametrize("entropy_weight", [0.0, 0.5, 1.0])
def test_entropy_weight_scales_only_the_regulariser(entropy_weight):
    torch.manual_seed(0)
    net, batch = TinyNet(), _batch()
    out = SelfDisambiguation(4, 5, entropy_weight=entropy_weight).loss(net, batch, 0)
    expected = out.scalar_terms()["focal_ce"] + out.scalar_terms()["dice"] + entropy_weight * out.scalar_terms()["entropy_reg"]
    assert out.scalar_terms()["entropy_reg"] > 0.1
    assert_close(out.total, expected)
