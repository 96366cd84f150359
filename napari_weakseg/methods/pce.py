"""Partial cross-entropy (pCE): the WSL4MIS scribble baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .base import LossOutput, Method, MethodOptions, OptimizerSpec

IGNORE = -1


def partial_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the labelled pixels of the whole batch.

    ``logits`` (B, C, H, W), ``labels`` (B, H, W) int64 with −1 = unknown. Equals torch
    ``cross_entropy(ignore_index=-1)`` (sum of −log softmax over labelled pixels / their
    number; no per-image or per-class normalisation) — WSL4MIS's ``ignore_index=4`` after
    mapping 4 → −1. With no labelled pixel at all it returns 0 (connected to the graph)
    instead of torch's NaN.
    """
    labels = labels.long()
    if not bool((labels != IGNORE).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE)


def known_labels(batch: dict[str, Any], use_coarse_pos: bool = False) -> torch.Tensor:
    """``batch["labels"]`` with pixels outside ``batch["valid"]`` set to −1.

    With ``use_coarse_pos``, still-unknown pixels take the first positive coarse label
    (``batch["coarse_pos"]`` (B, P, H, W), −1 = none) — "any kind reduced to labelled pixels".
    """
    labels = batch["labels"].long()
    valid = batch.get("valid")
    if valid is not None:
        labels = torch.where(valid.bool(), labels, torch.full_like(labels, IGNORE))
    coarse = batch.get("coarse_pos") if use_coarse_pos else None
    if coarse is not None and coarse.shape[1] > 0:
        for p in range(coarse.shape[1]):
            fill = (labels == IGNORE) & (coarse[:, p] >= 0)
            if valid is not None:
                fill &= valid.bool()
            labels = torch.where(fill, coarse[:, p].long(), labels)
    return labels


@dataclass(frozen=True)
class PCEOptions(MethodOptions):
    """Options of ``pce``."""

    use_coarse_pos: bool = True  # positive coarse labels fill still-unknown pixels


class PartialCrossEntropy(Method):
    """pCE: cross-entropy on pixels whose class is known (WSL4MIS pCE baseline).

    As coded in WSL4MIS ``train_weakly_supervised_pCE_2D.py``: loss = mean over the labelled
    pixels of the whole batch of −log softmax(logits)[label] (torch ``ignore_index``
    semantics; matches the oracle ``effdnet_pce_pseudo.npz`` ``pce``). Uses ``labels`` (masked
    by ``valid``); positive coarse labels fill still-unknown pixels (the first strategy that
    has one wins) unless ``use_coarse_pos=False`` — "any kind reduced to labelled pixels".

    As coded: SGD lr 0.03 (script default, also what ``train_wss.sh`` runs), momentum 0.9,
    weight decay 1e-4, poly 0.9; the partial Dice the script constructs is unused, so not
    here either. Ours: a batch without any labelled pixel gives loss 0, not NaN.
    """

    id = "pce"
    description = "Partial cross-entropy on annotated pixels only (WSL4MIS baseline)"
    kinds = frozenset({"scribble", "coarse_pos", "partial", "sparse", "dense"})
    optimizer = OptimizerSpec(name="sgd", lr=0.03, momentum=0.9, weight_decay=1e-4,
                              poly_power=0.9)
    Options = PCEOptions

    def loss(self, net, batch: dict[str, Any], step: int) -> LossOutput:
        logits, _ = net(batch["image"])
        labels = known_labels(batch, self.options.use_coarse_pos)
        total = partial_cross_entropy(logits, labels)
        return LossOutput(total=total, terms={"pce": total.detach()})
