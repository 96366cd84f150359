"""EFFDNet as coded: oracle values of every loss term, FADC replay, EMA, a full step."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_weakseg.methods import get_method
from napari_weakseg.methods.effdnet import (EFFDNet, effdnet_objective, ema_alpha, ema_update,
                                            fadc, fadc_sources_as_coded, fbsl_loss, fbsl_regions,
                                            pseudo_label_cross_entropy, scribble_boxes,
                                            supcon_region_loss)
from napari_weakseg.methods.pce import partial_cross_entropy
from napari_weakseg.nets.unet import UNet2D


def ours(scribble: np.ndarray) -> np.ndarray:
    """WSL4MIS scribble (4 = unlabelled) → our labels (−1 = unknown)."""
    labels = scribble.astype(np.int64)
    labels[labels == 4] = -1
    return labels


def wsl4mis(labels: np.ndarray) -> np.ndarray:
    out = labels.copy()
    out[out == -1] = 4
    return out


# ------------------------------------------------------------------ oracle: loss terms

def test_pce_and_pseudo_ce_match_reference(oracle):
    d = oracle("effdnet_pce_pseudo")
    logits = torch.from_numpy(d["logits"])
    pseudo = torch.argmax(torch.softmax(torch.from_numpy(d["teacher_logits"]), 1), 1)
    assert np.array_equal(pseudo.numpy(), d["pseudo_label"])
    pce = partial_cross_entropy(logits, torch.from_numpy(ours(d["scribble"])))
    assert float(pce) == pytest.approx(float(d["pce"]), rel=1e-5)
    pseudo_ce = pseudo_label_cross_entropy(logits, torch.from_numpy(d["pseudo_label"]))
    assert float(pseudo_ce) == pytest.approx(float(d["pseudo_ce"]), rel=1e-5)


@pytest.mark.parametrize("k", [8, 4])
def test_fbsl_matches_reference(oracle, k):
    d = oracle("effdnet_fbsl")
    features = torch.from_numpy(d["feature"])
    labels = torch.from_numpy(ours(d["scribble"]))
    z, region_label = fbsl_regions(features, labels, k)
    np.testing.assert_allclose(z.numpy(), d[f"z_K{k}"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(region_label.numpy(), d[f"region_label_K{k}"])
    value = fbsl_loss(features, labels, k=k, tau=float(d["tau"]))
    assert float(value) == pytest.approx(float(d[f"fbsl_K{k}"]), rel=1e-5)


def test_fbsl_tiny_hand_case(oracle):
    d = oracle("effdnet_fbsl_tiny")
    features = torch.from_numpy(d["feature"])
    labels = torch.from_numpy(ours(d["scribble"]))
    z, region_label = fbsl_regions(features, labels, k=2)
    np.testing.assert_allclose(z.numpy(), d["z"], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(region_label.numpy(), d["region_label"])
    assert float(fbsl_loss(features, labels, k=2)) == pytest.approx(float(d["fbsl"]), rel=1e-6)


def test_fbsl_tiny_by_hand():
    # Four unit vectors, labels [1,0,1,0]; every anchor has one positive and two negatives.
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2 ** -0.5, 2 ** -0.5], [-1.0, 0.0]])
    lab = torch.tensor([1.0, 0.0, 1.0, 0.0])
    tau = 0.07
    s = (z @ z.t() / tau).double().exp()
    expected = 0.0
    for i, (pos, negs) in enumerate([(2, (1, 3)), (3, (0, 2)), (0, (1, 3)), (1, (0, 2))]):
        expected -= math.log((s[i, pos] + 1e-12) / (s[i, pos] + s[i, negs[0]] + s[i, negs[1]]
                                                    + 1e-12))
    assert float(supcon_region_loss(z, lab, tau)) == pytest.approx(expected / 4, rel=1e-5)


def test_total_loss_without_fadc_matches_reference(oracle):
    a, b = oracle("effdnet_pce_pseudo"), oracle("effdnet_fbsl")
    assert np.array_equal(a["scribble"], b["scribble"])
    total, terms = effdnet_objective(
        torch.from_numpy(a["logits"]), torch.from_numpy(b["feature"]),
        torch.from_numpy(ours(a["scribble"])), torch.from_numpy(a["pseudo_label"]),
        lam=float(b["lambda_value"]), delta=float(b["contrast_loss_weight"]), k=8,
        tau=float(b["tau"]))
    assert float(total) == pytest.approx(float(b["total_loss_L1_K8"]), rel=1e-5)
    assert set(terms) == {"pce", "pseudo_ce", "fbsl"}


def test_anchor_without_positive_counts_in_the_mean():
    z = F.normalize(torch.tensor([[1.0, 0.2], [0.3, 1.0], [1.0, 1.0]]), dim=1)
    lab = torch.tensor([1.0, 0.0, 0.0])         # anchor 0 has no positive → contributes 0
    full = supcon_region_loss(z, lab)
    tau = 0.07
    s = (z @ z.t() / tau).double().exp()
    l1 = -math.log((s[1, 2] + 1e-12) / (s[1, 2] + s[1, 0] + 1e-12))
    l2 = -math.log((s[2, 1] + 1e-12) / (s[2, 1] + s[2, 0] + 1e-12))
    assert float(full) == pytest.approx((0 + l1 + l2) / 3, rel=1e-5)


@pytest.mark.parametrize("h,w,k", [(8, 16, 2), (12, 20, 4), (32, 48, 8), (30, 30, 4)])
def test_fbsl_regions_non_square_uses_per_axis_blocks(h, w, k):
    torch.manual_seed(0)
    features = torch.randn(2, 3, h, w)
    labels = torch.full((2, h, w), -1)
    labels[0, h - 1, w - 1] = 2                  # last block of sample 0 is foreground
    labels[1, 0, 0] = 0                          # background stroke only: not foreground
    z, region_label = fbsl_regions(features, labels, k)
    bh, bw = math.ceil(h / k), math.ceil(w / k)
    for j in range(k):
        for i in range(k):
            block = features[:, :, j * bh:(j + 1) * bh, i * bw:(i + 1) * bw].mean(dim=(2, 3))
            torch.testing.assert_close(z[:, j * k + i], F.normalize(block, dim=1),
                                       rtol=1e-5, atol=1e-6)
    expected = torch.zeros(2, k * k)
    expected[0, -1] = 1
    assert torch.equal(region_label, expected)


def test_fbsl_refuses_inputs_with_empty_blocks():
    with pytest.raises(ValueError, match="non-empty blocks"):
        fbsl_regions(torch.zeros(1, 2, 9, 32), torch.zeros(1, 9, 32, dtype=torch.long), k=8)


def test_fbsl_is_float32_safe_under_half_inputs():
    torch.manual_seed(0)
    features = torch.randn(2, 4, 32, 32)
    labels = torch.full((2, 32, 32), -1)
    labels[0, :8, :8] = 1
    reference = fbsl_loss(features, labels)
    half = fbsl_loss(features.half(), labels)
    assert torch.isfinite(half)
    assert float(half) == pytest.approx(float(reference), rel=1e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = fbsl_loss(features, labels)
    assert under_autocast.dtype == torch.float32
    assert float(under_autocast) == pytest.approx(float(reference), rel=1e-6)


# ------------------------------------------------------------------ FADC

def test_fadc_boxes_and_draws_match_reference(oracle):
    d = oracle("effdnet_fadc")
    labels = ours(d["scribble"])
    boxes = scribble_boxes(labels)
    np.testing.assert_array_equal(boxes, d["bbox_rows_cols"])
    n, _, h, w = d["image"].shape
    nonempty = (boxes[:, 1] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 2])
    sources = fadc_sources_as_coded(random.Random(int(d["python_random_seed"])), n, h, w,
                                    nonempty)
    np.testing.assert_array_equal(sources, d["source_sample_for_target"])
    np.testing.assert_array_equal(sources, d["shuffle_perm"][d["choice_in_shuffled"]])


@pytest.mark.parametrize("as_torch", [False, True])
def test_fadc_replays_reference_realisation_exactly(oracle, as_torch):
    d = oracle("effdnet_fadc")
    image, labels, pseudo = d["image"], ours(d["scribble"]), d["pseudo_label"]
    args = [image, labels, pseudo]
    if as_torch:
        args = [torch.from_numpy(a.copy()) for a in args]
    before = [np.array(a) for a in args]
    out_image, out_labels, out_pseudo = fadc(*args, d["source_sample_for_target"])
    if as_torch:
        assert all(isinstance(t, torch.Tensor) for t in (out_image, out_labels, out_pseudo))
        out_image, out_labels, out_pseudo = (t.numpy() for t in (out_image, out_labels, out_pseudo))
    np.testing.assert_array_equal(out_image, d["out_image"])
    np.testing.assert_array_equal(wsl4mis(out_labels), d["out_scribble"])
    np.testing.assert_array_equal(out_pseudo, d["out_pseudo_label"])
    for a, b in zip(args, before):                                    # inputs untouched
        np.testing.assert_array_equal(np.array(a), b)
    assert not np.array_equal(out_image, image)


def test_fadc_pastes_sequentially_and_resizes_nearest():
    # Sample 0: box rows [0,2) cols [0,2); sample 1: box rows [0,4) cols [0,4).
    labels = np.full((2, 6, 6), -1)
    labels[0, 0, 0], labels[0, 2, 2] = 1, 0
    labels[1, 0, 0], labels[1, 4, 4] = 2, 0
    image = np.zeros((2, 1, 6, 6), np.float32)
    image[0, 0, :2, :2] = [[1, 2], [3, 4]]
    image[1, 0, :4, :4] = 7
    pseudo = np.zeros((2, 6, 6), np.int64)
    # Target 0 gets sample 1's 4×4 box shrunk to 2×2; target 1 then gets sample 0's
    # *already pasted* box (all 7s) enlarged to 4×4.
    out_image, out_labels, _ = fadc(image, labels, pseudo, [1, 0])
    assert np.all(out_image[0, 0, :2, :2] == 7)
    assert np.all(out_image[1, 0, :4, :4] == 7)
    assert out_labels[0, 0, 0] == 2 and out_labels[0, 2, 2] == 0
    # Own crop, enlarged/same size → unchanged; −1 source → unchanged.
    same, _, _ = fadc(image, labels, pseudo, [0, -1])
    np.testing.assert_array_equal(same, image)
    # 2×2 → 4×4 nearest-neighbour (scipy zoom order 0) as the reference does.
    up, _, _ = fadc(image, labels, pseudo, [0, 0])
    np.testing.assert_array_equal(up[1, 0, :4, :4], [[1, 1, 2, 2], [1, 1, 2, 2],
                                                     [3, 3, 4, 4], [3, 3, 4, 4]])


@pytest.mark.parametrize("foreground_only,expected", [
    (False, [[1, 7, 0, 6], [0, 0, 0, 0]]),
    (True, [[3, 5, 2, 4], [0, 0, 0, 0]]),
])
def test_scribble_boxes_all_strokes_or_foreground(foreground_only, expected):
    labels = np.full((2, 8, 8), -1)
    labels[0, 1, 0] = 0          # background stroke widens the as-coded box
    labels[0, 7, 6] = 0
    labels[0, 3, 2], labels[0, 5, 4] = 1, 3
    labels[1, 2, 2] = 0          # sample 1: background only → empty foreground box below
    boxes = scribble_boxes(labels, foreground_only)
    if not foreground_only:
        expected[1] = [2, 2, 2, 2]
    np.testing.assert_array_equal(boxes, expected)


def test_fadc_draws_skip_empty_crops():
    rng = random.Random(0)
    sources = fadc_sources_as_coded(rng, 5, 32, 32, [False, True, False, False, False],
                                    max_redraws=1000)
    assert list(sources) == [1] * 5
    sources = fadc_sources_as_coded(random.Random(0), 3, 32, 32, [False] * 3)
    assert list(sources) == [-1] * 3


# ------------------------------------------------------------------ mean teacher

@pytest.mark.parametrize("step,expected_alpha", [(0, 0.0), (1, 0.5), (2, 2 / 3), (98, 0.9899),
                                                 (99, 0.99), (5000, 0.99)])
def test_ema_alpha_warm_up(step, expected_alpha):
    assert ema_alpha(step) == pytest.approx(expected_alpha, abs=1e-4 if step == 98 else 1e-12)


@pytest.mark.parametrize("steps,expected", [
    ([0], 3.0),                  # a = 0: copy of the student
    ([1], 2.0),                  # a = 0.5: (1 + 3) / 2
    ([1, 1], 2.5),               # 0.5·2 + 0.5·3
    ([500], 1.02),               # a = 0.99: 0.99·1 + 0.01·3
])
def test_after_step_ema_arithmetic(steps, expected):
    student = torch.nn.Linear(2, 1)
    with torch.no_grad():
        for p in student.parameters():
            p.fill_(3.0)
    method = EFFDNet(1, teacher_init="copy")
    method.setup(student)
    with torch.no_grad():
        for p in method.teacher.parameters():
            p.fill_(1.0)
    for step in steps:
        method.after_step(student, step)
    for p in method.teacher.parameters():
        assert torch.allclose(p, torch.full_like(p, expected), atol=1e-6)
    assert all(torch.equal(p.detach(), torch.full_like(p, 3.0)) for p in student.parameters())


def test_ema_update_leaves_buffers_unless_asked():
    student, teacher = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    student.running_mean.fill_(5.0)
    ema_update(teacher, student, 0.5)
    assert torch.equal(teacher.running_mean, torch.zeros(2))
    ema_update(teacher, student, 0.5, copy_buffers=True)
    assert torch.equal(teacher.running_mean, torch.full((2,), 5.0))


@pytest.mark.parametrize("init", ["random", "copy"])
def test_teacher_created_in_setup(init):
    torch.manual_seed(0)
    net = UNet2D(1, 4, 4)
    method = EFFDNet(4, feature_channels=4, teacher_init=init)
    with pytest.raises(RuntimeError, match="setup"):
        method.pseudo_labels(torch.zeros(1, 1, 32, 32))
    method.setup(net)
    same = all(torch.equal(a, b) for a, b in zip(method.teacher.parameters(), net.parameters()))
    assert same == (init == "copy")
    assert not any(p.requires_grad for p in method.teacher.parameters())
    assert method.teacher is not net


def test_state_dict_round_trip_including_load_before_setup():
    torch.manual_seed(0)
    net = UNet2D(1, 4, 4)
    first = EFFDNet(4, feature_channels=4)
    first.setup(net)
    state = first.state_dict()
    for late in (False, True):
        second = EFFDNet(4, feature_channels=4)
        if late:
            second.load_state_dict(state)
            second.setup(net)
        else:
            second.setup(net)
            second.load_state_dict(state)
        for a, b in zip(second.teacher.state_dict().values(), state["teacher"].values()):
            assert torch.equal(a, b)


def test_pseudo_labels_are_teacher_argmax_on_noisy_input():
    torch.manual_seed(0)
    net = UNet2D(1, 4, 4)
    method = EFFDNet(4, feature_channels=4, teacher_mode="eval")
    method.setup(net)
    image = torch.rand(2, 1, 32, 32)
    torch.manual_seed(5)
    pseudo = method.pseudo_labels(image)
    torch.manual_seed(5)
    noise = torch.clamp(torch.randn_like(image) * 0.1, -0.05, 0.05)
    method.teacher.eval()
    with torch.no_grad():
        expected = method.teacher(image + noise)[0].argmax(1)
    assert torch.equal(pseudo, expected)
    assert not method.teacher.training


# ------------------------------------------------------------------ whole method

def tiny_batch(b: int = 2, size: int = 32):
    gen = torch.Generator().manual_seed(3)
    labels = torch.full((b, size, size), -1)
    labels[0, 6:8, 5:20], labels[0, 20, 4:28] = 1, 0
    labels[1, 10:12, 8:14], labels[1, 25:27, 20:26] = 2, 3
    labels[1, 2, 2:30] = 0
    return {"image": torch.rand(b, 1, size, size, generator=gen), "labels": labels,
            "valid": torch.ones(b, size, size, dtype=torch.bool)}


@pytest.mark.parametrize("use_fbsl,use_fadc,fadc_box,expected_terms", [
    (True, True, "all", {"pce", "pseudo_ce", "fbsl", "pce_aug", "pseudo_ce_aug"}),
    (False, True, "foreground", {"pce", "pseudo_ce", "pce_aug", "pseudo_ce_aug"}),
    (True, False, "all", {"pce", "pseudo_ce", "fbsl"}),
    (False, False, "all", {"pce", "pseudo_ce"}),
])
def test_full_loss_backward_finite(use_fbsl, use_fadc, fadc_box, expected_terms):
    torch.manual_seed(0)
    net = UNet2D(1, 4, 4)
    method = EFFDNet(4, feature_channels=4, use_fbsl=use_fbsl, use_fadc=use_fadc,
                     fadc_box=fadc_box, fbsl_k=8)
    method.setup(net)
    out = method.loss(net, tiny_batch(), step=3)
    assert set(out.terms) == expected_terms
    lam, delta = 0.6, 0.3
    t = out.scalar_terms()
    recombined = t["pce"] + lam * (t["pseudo_ce"] + delta * t.get("fbsl", 0.0)) \
        + t.get("pce_aug", 0.0) + lam * t.get("pseudo_ce_aug", 0.0)
    assert out.total.item() == pytest.approx(recombined, rel=1e-5)
    out.total.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert len(grads) == len(list(net.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)
    assert all(p.grad is None for p in method.teacher.parameters())
    method.after_step(net, 3)


def test_fadc_draws_depend_only_on_seed_and_step():
    torch.manual_seed(0)
    batch = tiny_batch(b=2)
    method = EFFDNet(4, feature_channels=4, seed=7)
    pseudo = torch.zeros(2, 32, 32, dtype=torch.long)
    a = method.fadc_batch(batch["image"], batch["labels"], pseudo, step=11)
    b = method.fadc_batch(batch["image"], batch["labels"], pseudo, step=11)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_registration_and_options():
    assert get_method("effdnet") is EFFDNet
    spec = EFFDNet.optimizer
    assert (spec.name, spec.lr, spec.momentum, spec.weight_decay, spec.poly_power) == \
        ("sgd", 1e-2, 0.9, 1e-4, 0.9)
    assert EFFDNet.kinds == frozenset({"scribble"})
    with pytest.raises(ValueError, match="unknown options"):
        EFFDNet(4, lambda_value=0.6)
    with pytest.raises(ValueError, match="fadc_box"):
        EFFDNet(4, fadc_box="paper")
