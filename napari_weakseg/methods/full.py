"""Full supervision: CE + soft Dice on dense masks (the WSL4MIS upper bound)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .base import LossOutput, Method, MethodOptions, OptimizerSpec, detach_terms
from .pce import IGNORE, known_labels, partial_cross_entropy

DICE_SMOOTH = 1e-5


def soft_dice_loss(probs: torch.Tensor, labels: torch.Tensor,
                   smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """WSL4MIS ``DiceLoss``: mean over all C classes (background included) of
    ``1 − (2·Σ p·y + s) / (Σ p² + Σ y² + s)``, sums over the whole batch (batch Dice).

    ``probs`` (B, C, H, W) softmax probabilities, ``labels`` (B, H, W) int64; pixels with −1
    are left out of every sum (as WSL4MIS's ``pDLoss`` masks its ignore value). A class
    absent from the counted pixels and predicted nowhere gives ≈ 0 loss thanks to ``s``.
    """
    num_classes = probs.shape[1]
    keep = (labels != IGNORE).unsqueeze(1).to(probs.dtype)                   # (B,1,H,W)
    onehot = torch.zeros_like(probs).scatter_(1, labels.clamp(min=0).unsqueeze(1), 1.0)
    p = probs * keep
    y = onehot * keep
    dims = (0, 2, 3)
    intersect = (p * y).sum(dims)
    denom = (p * p).sum(dims) + (y * y).sum(dims)
    dice = (2 * intersect + smooth) / (denom + smooth)
    return (1.0 - dice).sum() / num_classes


@dataclass(frozen=True)
class FullOptions(MethodOptions):
    """Options of ``full``."""

    ce_weight: float = 0.5  # weight of the cross-entropy term
    dice_weight: float = 0.5  # weight of the soft Dice term


class FullSupervision(Method):
    """CE + soft Dice on dense labels (WSL4MIS ``train_fully_supervised_2D``).

    Loss = 0.5·(CE + Dice) as coded: CE = mean over labelled pixels (−1 ignored); Dice =
    :func:`soft_dice_loss` (squared-denominator soft Dice over the batch, all classes incl.
    background, smooth 1e-5, −1 pixels excluded). Meant for dense masks and for partial /
    sparse ones in which every class was declared (so −1 only marks pixels without any
    supervision).

    Optimiser as coded: SGD lr 0.03 (the script's default, which ``train_wss.sh`` does not
    override), momentum 0.9, weight decay 1e-4, poly 0.9.
    """

    id = "full"
    description = "Full supervision: cross-entropy + soft Dice on dense masks (upper bound)"
    kinds = frozenset({"dense", "partial"})
    optimizer = OptimizerSpec(name="sgd", lr=0.03, momentum=0.9, weight_decay=1e-4,
                              poly_power=0.9)
    Options = FullOptions

    def loss(self, net, batch: dict[str, Any], step: int) -> LossOutput:
        logits, _ = net(batch["image"])
        labels = known_labels(batch)
        ce = partial_cross_entropy(logits, labels)
        dice = soft_dice_loss(torch.softmax(logits.float(), dim=1), labels)
        total = self.options.ce_weight * ce + self.options.dice_weight * dice
        return LossOutput(total=total, terms=detach_terms({"ce": ce, "dice": dice}))
