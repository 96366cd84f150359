"""Full supervision: the WSL4MIS soft Dice and the 0.5·(CE + Dice) loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_weakseg.methods import get_method
from napari_weakseg.methods.full import FullSupervision, soft_dice_loss
from napari_weakseg.nets.unet import UNet2D


def numpy_dice_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Independent re-statement: per class over kept pixels, squared denominators, 1e-5."""
    keep = labels >= 0
    losses = []
    for c in range(probs.shape[1]):
        p = probs[:, c][keep].astype(np.float64)
        y = (labels[keep] == c).astype(np.float64)
        losses.append(1 - (2 * (p * y).sum() + 1e-5) / ((p * p).sum() + (y * y).sum() + 1e-5))
    return float(np.mean(losses))


@pytest.mark.parametrize("seed,num_classes,unknown_fraction", [
    (0, 4, 0.0), (1, 2, 0.0), (2, 4, 0.3), (3, 3, 0.9),
])
def test_soft_dice_matches_restatement(seed, num_classes, unknown_fraction):
    rng = np.random.default_rng(seed)
    probs = torch.softmax(torch.from_numpy(rng.normal(size=(2, num_classes, 8, 8))).float(), 1)
    labels = rng.integers(0, num_classes, size=(2, 8, 8))
    labels[rng.random((2, 8, 8)) < unknown_fraction] = -1
    value = soft_dice_loss(probs, torch.from_numpy(labels))
    assert float(value) == pytest.approx(numpy_dice_loss(probs.numpy(), labels), rel=1e-5)


def test_soft_dice_perfect_and_worst():
    labels = torch.tensor([[[0, 1], [2, 1]]])
    perfect = F.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    assert float(soft_dice_loss(perfect, labels)) == pytest.approx(0.0, abs=1e-5)
    wrong = F.one_hot((labels + 1) % 3, 3).permute(0, 3, 1, 2).float()
    assert float(soft_dice_loss(wrong, labels)) == pytest.approx(1.0, abs=1e-5)


def test_registration_kinds_optimizer():
    assert get_method("full") is FullSupervision
    assert "dense" in FullSupervision.kinds and "scribble" not in FullSupervision.kinds
    spec = FullSupervision.optimizer
    assert (spec.name, spec.lr, spec.momentum, spec.weight_decay) == ("sgd", 0.03, 0.9, 1e-4)


def test_loss_is_half_ce_plus_half_dice_and_trains():
    torch.manual_seed(0)
    net = UNet2D(1, 3, 4)
    labels = torch.randint(0, 3, (2, 32, 32))
    labels[1, :4] = -1
    batch = {"image": torch.rand(2, 1, 32, 32), "labels": labels,
             "valid": torch.ones(2, 32, 32, dtype=torch.bool)}
    method = FullSupervision(3)
    torch.manual_seed(1)
    out = method.loss(net, batch, step=0)
    torch.manual_seed(1)
    logits, _ = net(batch["image"])
    ce = F.cross_entropy(logits, labels, ignore_index=-1)
    dice = soft_dice_loss(torch.softmax(logits, 1), labels)
    assert out.total.item() == pytest.approx((0.5 * (ce + dice)).item(), rel=1e-6)
    assert out.scalar_terms() == pytest.approx({"ce": ce.item(), "dice": dice.item()}, rel=1e-6)
    out.total.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
