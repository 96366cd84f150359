"""pCE: the WSL4MIS oracle, ignore semantics, the Method wrapper."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_weakseg.methods import get_method
from napari_weakseg.methods.pce import PartialCrossEntropy, known_labels, partial_cross_entropy
from napari_weakseg.nets.unet import UNet2D


def wsl4mis_to_ours(scribble: np.ndarray) -> torch.Tensor:
    """WSL4MIS scribble (4 = unlabelled) → our labels (−1 = unknown)."""
    labels = scribble.astype(np.int64)
    labels[labels == 4] = -1
    return torch.from_numpy(labels)


def test_matches_reference_pce(oracle):
    d = oracle("effdnet_pce_pseudo")
    value = partial_cross_entropy(torch.from_numpy(d["logits"]), wsl4mis_to_ours(d["scribble"]))
    assert float(value) == pytest.approx(float(d["pce"]), rel=1e-5)


@pytest.mark.parametrize("num_classes", [2, 4, 7])
def test_uniform_logits_give_log_c(num_classes):
    labels = torch.full((2, 8, 8), -1)
    labels[0, 1, 1], labels[1, 5, 2] = 0, num_classes - 1
    value = partial_cross_entropy(torch.zeros(2, num_classes, 8, 8), labels)
    assert float(value) == pytest.approx(math.log(num_classes), rel=1e-6)


def test_mean_over_labelled_pixels_of_whole_batch():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    labels = torch.full((2, 4, 4), -1)
    labels[0, 0, 0], labels[0, 1, 2], labels[1, 3, 3] = 2, 0, 1
    logp = F.log_softmax(logits, 1)
    expected = -(logp[0, 2, 0, 0] + logp[0, 0, 1, 2] + logp[1, 1, 3, 3]) / 3
    assert float(partial_cross_entropy(logits, labels)) == pytest.approx(float(expected), rel=1e-6)
    # Unlabelled pixels have no influence.
    changed = logits.clone()
    changed[:, :, 2, :] += 5.0
    assert float(partial_cross_entropy(changed, labels)) == pytest.approx(float(expected), rel=1e-6)


def test_no_labelled_pixel_gives_zero_with_gradient_path():
    logits = torch.randn(1, 4, 4, 4, requires_grad=True)
    value = partial_cross_entropy(logits, torch.full((1, 4, 4), -1))
    value.backward()
    assert float(value.detach()) == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_known_labels_masks_invalid_and_fills_from_coarse_pos():
    labels = torch.tensor([[[0, -1, -1, 2]]])
    valid = torch.tensor([[[True, True, True, False]]])
    coarse = torch.tensor([[[[-1, 1, -1, 1]], [[3, 3, 2, -1]]]])          # (B=1, P=2, 1, 4)
    batch = {"labels": labels, "valid": valid, "coarse_pos": coarse}
    assert known_labels(batch).tolist() == [[[0, -1, -1, -1]]]
    assert known_labels(batch, use_coarse_pos=True).tolist() == [[[0, 1, 2, -1]]]


def test_method_registration_and_optimizer():
    assert get_method("pce") is PartialCrossEntropy
    spec = PartialCrossEntropy.optimizer
    assert (spec.name, spec.lr, spec.momentum, spec.weight_decay, spec.poly_power) == \
        ("sgd", 0.03, 0.9, 1e-4, 0.9)
    assert "scribble" in PartialCrossEntropy.kinds and "coarse_neg" not in PartialCrossEntropy.kinds
    with pytest.raises(ValueError, match="unknown options"):
        PartialCrossEntropy(4, use_coarse_negative=True)


@pytest.mark.parametrize("use_coarse_pos", [True, False])
def test_method_loss_equals_pure_function(use_coarse_pos):
    torch.manual_seed(0)
    net = UNet2D(1, 3, 4)
    labels = torch.full((2, 32, 32), -1)
    labels[0, 4:6, 4:20], labels[1, 10, 3:9] = 1, 0
    coarse = torch.full((2, 1, 32, 32), -1)
    coarse[1, 0, 20:24, 20:24] = 2
    batch = {"image": torch.rand(2, 1, 32, 32), "labels": labels,
             "valid": torch.ones(2, 32, 32, dtype=torch.bool), "coarse_pos": coarse}
    method = PartialCrossEntropy(3, use_coarse_pos=use_coarse_pos)
    torch.manual_seed(1)
    out = method.loss(net, batch, step=0)
    torch.manual_seed(1)
    logits, _ = net(batch["image"])
    expected = partial_cross_entropy(logits, known_labels(batch, use_coarse_pos))
    assert out.total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert out.scalar_terms()["pce"] == pytest.approx(expected.item(), rel=1e-6)
    out.total.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
