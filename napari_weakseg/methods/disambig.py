"""Self-disambiguation for partially and sparsely labelled multi-source data.

Chen et al., "Versatile Medical Image Segmentation Learned from Multi-Source Datasets via
Model Self-Disambiguation", CVPR 2024; authors' code xychen2022/VersatileSegmentation
(``networks/loss.py``), restated in ``methods-as-coded.md`` §3.

Conventions of the pure functions below (dimension-agnostic: ``*S`` = (H, W) or (D, H, W)):

* ``probs``  (B, C, *S) float, softmax probabilities (the losses take probabilities).
* ``target`` (B, *S) int: k ≥ 1 = voxel known to be class k; 0 = background **or**
  unannotated (the reference code's convention; the engine's −1 "unknown" maps to 0).
* ``annotated`` (B, C) bool, the annotated (declared complete) set Φ of each sample; column
  0 is ignored (background is always part of the merged class). ``None`` → Φ = the non-zero
  labels present in the sample ("present", as the reference code builds it). A row that
  declares no foreground class also falls back to "present".
* ``valid`` (B, *S) bool, optional: voxels that take part in the focal CE and Dice.

The merged class of a sample is Ψ = {0} ∪ {c ≥ 1 : c ∉ Φ}: a voxel with label 0 lies in Ψ, its
probability is q₀ = Σ_{j∈Ψ} p_j. Per-sample values are returned as (B,) tensors; batch values
are plain means over the samples that count (as coded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .base import LossOutput, Method, MethodOptions, OptimizerSpec, detach_terms

__all__ = [
    "SelfDisambiguation", "SelfDisambiguationOptions", "categories_to_mask", "annotated_sets",
    "merged_classes", "ambiguity_focal_ce", "ambiguity_dice", "entropy_regulariser", "sparse_terms",
    "self_disambiguation_loss",
]

GAMMA = 2.0
EPS = 1e-6
SMOOTH = 1.0
UNLABELLED_WEIGHT = 3.0


# --------------------------------------------------------------------------- annotated sets
def categories_to_mask(categories, num_classes: int) -> torch.Tensor:
    """Padded category lists (B, K) (−1 = padding, the reference's format) → (B, C) bool."""
    cats = torch.as_tensor(categories).long()
    out = torch.zeros(cats.shape[0], num_classes, dtype=torch.bool, device=cats.device)
    ok = (cats >= 0) & (cats < num_classes)
    rows = torch.arange(cats.shape[0], device=cats.device)[:, None].expand_as(cats)
    out[rows[ok], cats[ok]] = True
    return out


def _present(target: torch.Tensor, num_classes: int, valid: torch.Tensor | None = None):
    """(B, C) bool: class k occurs in the sample's target (over valid voxels)."""
    t = target.reshape(target.shape[0], -1).long()
    hit = F.one_hot(t.clamp(0, num_classes - 1), num_classes).bool()  # (B, N, C)
    if valid is not None:
        hit = hit & valid.reshape(t.shape)[..., None].bool()
    return hit.any(1)


def annotated_sets(target: torch.Tensor, num_classes: int, annotated=None,
                   valid: torch.Tensor | None = None) -> torch.Tensor:
    """Φ per sample, (B, C) bool with column 0 False.

    ``annotated`` given: the declared sets; rows declaring no foreground class fall back to
    the labels present. ``None``: the labels present (the reference code's rule).
    """
    present = _present(target, num_classes, valid)
    present[:, 0] = False
    if annotated is None:
        return present
    ann = torch.as_tensor(annotated, device=target.device).bool().clone()
    ann[:, 0] = False
    none = ~ann.any(1)
    ann[none] = present[none]
    return ann


def merged_classes(phi: torch.Tensor) -> torch.Tensor:
    """Ψ = {0} ∪ (classes ∉ Φ), (B, C) bool."""
    psi = ~phi.bool()
    psi[:, 0] = True
    return psi


# --------------------------------------------------------------------------- the losses
def _flatten(probs, target, valid):
    b, c = probs.shape[:2]
    p = probs.reshape(b, c, -1)
    t = target.reshape(b, -1).long()
    w = (torch.ones_like(t, dtype=probs.dtype) if valid is None
         else valid.reshape(b, -1).to(probs.dtype))
    return p, t, w


def ambiguity_focal_ce(probs, target, annotated=None, valid=None, *, gamma: float = GAMMA,
                       eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Ambiguity-aware focal CE per sample → (values (B,), counted (B,) bool).

    q = p_k for a voxel labelled k ≥ 1, q = Σ_{j∈Ψ} p_j for a 0 voxel; term
    −(1 − q)^γ · log(clamp(q, ε, 1 − ε)) (focal factor on the unclamped q, as coded); mean over
    the sample's valid voxels. Samples without a valid voxel are not counted (value 0).
    """
    p, t, w = _flatten(probs, target, valid)
    psi = merged_classes(annotated_sets(target, p.shape[1], annotated, valid)).to(p.dtype)
    q0 = (p * psi[:, :, None]).sum(1)
    pk = p.gather(1, t.clamp(min=0)[:, None]).squeeze(1)
    q = torch.where(t > 0, pk, q0)
    term = -(1 - q).pow(gamma) * torch.log(q.clamp(eps, 1 - eps))
    n = w.sum(1)
    counted = n > 0
    return (term * w).sum(1) / n.clamp(min=1), counted


def ambiguity_dice(probs, target, annotated=None, valid=None, *, smooth: float = SMOOTH,
                   merged_over_all: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Ambiguity-aware soft Dice loss per sample → (values (B,), counted (B,) bool).

    Classes = labels present in the sample (0 → the merged class Ψ: prediction Σ_{j∈Ψ} p_j,
    target 1[label ∈ Ψ]); per class d = (2TP + s)/(2TP + FP + FN + s); loss = 1 − mean d.
    ``merged_over_all=True`` sums the merged prediction over *all* classes (≡ 1) — the
    reference code's sparse-branch bug, kept only to reproduce it.
    """
    p, t, w = _flatten(probs, target, valid)
    c = p.shape[1]
    psi = merged_classes(annotated_sets(target, c, annotated, valid)).to(p.dtype)
    y = F.one_hot(t.clamp(0, c - 1), c).permute(0, 2, 1).to(p.dtype)  # (B, C, N)
    q0 = p.sum(1) if merged_over_all else (p * psi[:, :, None]).sum(1)
    y0 = (y * psi[:, :, None]).sum(1)
    pred = torch.cat([q0[:, None], p[:, 1:]], 1) * w[:, None]
    tgt = torch.cat([y0[:, None], y[:, 1:]], 1) * w[:, None]
    tp = (pred * tgt).sum(2)
    fp = (pred * (w[:, None] - tgt)).sum(2)
    fn = ((w[:, None] - pred) * tgt).sum(2)
    d = (2 * tp + smooth) / (2 * tp + fp + fn + smooth)
    present = _present(target, c, valid).to(p.dtype)
    k = present.sum(1)
    counted = k > 0
    return 1 - (d * present).sum(1) / k.clamp(min=1), counted


def entropy_regulariser(probs, target, *, eps: float = EPS,
                        unlabelled_weight: float = UNLABELLED_WEIGHT) -> torch.Tensor:
    """Per-sample entropy −mean_voxels Σ_c p_c log(clamp(p_c, ε, 1 − ε)), (B,), over all
    voxels; ×``unlabelled_weight`` for samples whose target has no label ≥ 1 (as coded)."""
    b, c = probs.shape[:2]
    p = probs.reshape(b, c, -1)
    h = -(p * torch.log(p.clamp(eps, 1 - eps))).sum(1).mean(1)
    labelled = (target.reshape(b, -1) > 0).any(1)
    return h * torch.where(labelled, 1.0, unlabelled_weight).to(h.dtype)


def sparse_terms(probs, target, mask, annotated_per_axis: Sequence | None = None, *,
                 gamma: float = GAMMA, eps: float = EPS, smooth: float = SMOOTH,
                 reference_bug: bool = False):
    """Slice-wise focal CE and Dice of sparsely labelled samples.

    ``mask`` (B, *S): 1 on annotated voxels; along every spatial axis a slice counts when its
    mask is 1 over the whole slice. ``annotated_per_axis``: one (B, n_slices_a, C) array per
    spatial axis (in the order of ``*S``) giving each slice's Φ (declared, with the per-slice
    "present" fallback), or ``None`` → Φ = labels present in the slice. A counted slice is
    skipped when it carries no information: no label ≥ 1 **and** an empty Φ (with the
    "present" rule this is exactly the reference's "skip all-zero slices"; a declared slice
    whose declared classes are absent is kept). Focal CE: mean over the voxels of an axis's
    kept slices; Dice: mean over those slices; each then averaged over the axes with kept
    slices. ``reference_bug`` reproduces the reference's merged-background Dice (sum over
    all classes). Returns (focal (B,), dice (B,), counted (B,) bool).
    """
    b, c = probs.shape[:2]
    nsp = probs.dim() - 2
    focal = probs.new_zeros(b)
    dice = probs.new_zeros(b)
    counted = torch.zeros(b, dtype=torch.bool, device=probs.device)
    focal_vals = []
    for i in range(b):
        f_axes, d_axes = [], []
        for a in range(nsp):
            m = torch.as_tensor(mask[i], device=probs.device).movedim(a, 0)
            full = m.reshape(m.shape[0], -1).bool().all(1)
            if not full.any():
                continue
            idx = torch.nonzero(full).flatten()
            ps = probs[i].movedim(a + 1, 0)[idx]            # (n, C, *rest)
            ts = target[i].movedim(a, 0)[idx]                # (n, *rest)
            ann = None
            if annotated_per_axis is not None:
                ann = torch.as_tensor(annotated_per_axis[a][i], device=probs.device)[idx]
            phi = annotated_sets(ts, c, ann)
            keep = (ts.reshape(len(idx), -1) > 0).any(1) | phi.any(1)
            if not keep.any():
                continue
            ps, ts, phi = ps[keep], ts[keep], phi[keep]
            f, _ = ambiguity_focal_ce(ps, ts, phi, gamma=gamma, eps=eps)
            d, _ = ambiguity_dice(ps, ts, phi, smooth=smooth, merged_over_all=reference_bug)
            f_axes.append(f.mean())  # equal-size slices: = mean over concatenated voxels
            d_axes.append(d.mean())
        if f_axes:
            counted[i] = True
            focal_vals.append((i, torch.stack(f_axes).mean(), torch.stack(d_axes).mean()))
    if focal_vals:
        rows = torch.tensor([i for i, _, _ in focal_vals], device=probs.device)
        focal = focal.index_put((rows,), torch.stack([f for _, f, _ in focal_vals]))
        dice = dice.index_put((rows,), torch.stack([d for _, _, d in focal_vals]))
    return focal, dice, counted


def _masked_mean(values, counted, like):
    if counted.any():
        return values[counted].mean()
    return like.sum() * 0.0  # zero that keeps the graph


def self_disambiguation_loss(probs, target, annotated=None, *, valid=None, sparse_mask=None,
                             is_sparse=None, annotated_per_axis: Sequence | None = None,
                             gamma: float = GAMMA, eps: float = EPS, smooth: float = SMOOTH,
                             unlabelled_weight: float = UNLABELLED_WEIGHT,
                             entropy_weight: float = 1.0,
                             reference_bug: bool = False) -> dict[str, torch.Tensor]:
    """Focal CE + Dice + entropy regulariser of a batch of partial and/or sparse samples.

    Partial samples use ``annotated``/``valid``; sparse samples (``is_sparse`` (B,) bool, or
    all samples when only ``sparse_mask`` is given) use ``sparse_mask`` and
    ``annotated_per_axis`` (see :func:`sparse_terms`). Batch focal CE / Dice = mean over the
    samples that count (0 when none); entropy = Σ over all B samples / B. Returns scalars
    ``focal_ce``, ``dice``, ``entropy_reg``, ``total`` (= focal CE + Dice + ``entropy_weight``
    × entropy; 1, 1, 1 as coded, ``entropy_weight`` 0 = the regulariser ablation) and the
    per-sample ``focal_per_sample``, ``dice_per_sample``, ``entropy_per_sample``, ``counted``.
    """
    b = probs.shape[0]
    if is_sparse is None:
        is_sparse = torch.full((b,), sparse_mask is not None, dtype=torch.bool)
    is_sparse = torch.as_tensor(is_sparse, device=probs.device).bool().reshape(b)
    focal, counted = ambiguity_focal_ce(probs, target, annotated, valid, gamma=gamma, eps=eps)
    dice, _ = ambiguity_dice(probs, target, annotated, valid, smooth=smooth)
    if is_sparse.any():
        if sparse_mask is None:
            raise ValueError("sparse samples need sparse_mask")
        fs, ds, cs = sparse_terms(probs, target, sparse_mask, annotated_per_axis, gamma=gamma,
                                  eps=eps, smooth=smooth, reference_bug=reference_bug)
        focal = torch.where(is_sparse, fs, focal)
        dice = torch.where(is_sparse, ds, dice)
        counted = torch.where(is_sparse, cs, counted)
    ent = entropy_regulariser(probs, target, eps=eps, unlabelled_weight=unlabelled_weight)
    out = {
        "focal_ce": _masked_mean(focal, counted, probs),
        "dice": _masked_mean(dice, counted, probs),
        "entropy_reg": ent.sum() / b,
        "focal_per_sample": focal, "dice_per_sample": dice, "entropy_per_sample": ent,
        "counted": counted,
    }
    out["total"] = out["focal_ce"] + out["dice"] + entropy_weight * out["entropy_reg"]
    return out


# --------------------------------------------------------------------------- the method
@dataclass(frozen=True)
class SelfDisambiguationOptions(MethodOptions):
    """Options of ``disambig`` (see :class:`SelfDisambiguation`)."""

    annotated_from: str = "declared"  # Φ: "declared" classes | labels "present" (as coded)
    gamma: float = GAMMA  # γ: focal exponent of the ambiguity-aware CE
    eps: float = EPS  # probabilities are clamped to [eps, 1 − eps] inside the logs
    smooth: float = SMOOTH  # smoothing s of the ambiguity-aware Dice
    unlabelled_weight: float = UNLABELLED_WEIGHT  # entropy ×this on samples with no label ≥ 1
    entropy_weight: float = 1.0  # weight of the entropy regulariser (0: the ablation)


class SelfDisambiguation(Method):
    """Model self-disambiguation (Chen et al., CVPR'24) on the engine's 2D slices.

    Loss = ambiguity-aware focal CE (γ 2, ε 1e-6) + ambiguity-aware Dice (smooth 1) + entropy
    minimisation (×3 on samples without any label ≥ 1), weights 1, 1, 1. Batch mapping: each
    slice is a *partial* sample with Φ = the batch's ``annotated`` row (a slice of a partial
    volume carries the volume's declared classes; a declared slice of a sparse volume its own
    class subset); ``labels`` −1 and 0 both become the merged target 0; voxels with ``valid``
    False take no part in focal CE / Dice, and a sample without valid voxels (an undeclared
    sparse slice) is left out of their batch means but still gets the entropy term.

    Options: ``annotated_from`` "declared" (default; rows declaring nothing fall back to the
    labels present) | "present" (the reference code's rule); ``gamma``, ``eps``, ``smooth``,
    ``unlabelled_weight``, ``entropy_weight`` (1; 0 drops the regulariser — the paper's
    ablation). AdamW lr 1e-3, wd 1e-5, poly 0.9 (the reference code: lr decayed
    per epoch; the engine decays per iteration).

    Code vs paper (methods-as-coded §3.8) and what we do:

    1. Eq. 1 lacks a minus sign — we use the code's (correct) sign.
    2. Φ: the code uses "labels present" (volume or slice); we use the declared sets, so a
       declared-but-absent class is supervised as absent (its probability leaves the merged
       class); "present" remains available (option) and is the fallback for samples that
       declare nothing.
    3. Dice classes = labels present in the sample (not {0} ∪ Φ), as coded.
    4. Sparse Dice: the reference's merged background sums p over *all* classes (always 1) —
       a bug; :func:`sparse_terms` follows the paper (sum over Ψ) unless ``reference_bug``.
    5. Sparse slices whose target is all 0 are skipped as coded only when their Φ is also
       empty (no information); a declared slice with absent classes is kept (our choice).
    6. The ×3 entropy weight is triggered per sample by "no label ≥ 1 in the target", as coded
       (for our 2D slices: per slice).
    7. Normalisation: mean over voxels per sample (per slice for 3D sparse), then over samples.
    8. Unstated in the paper, taken from the code: wd 1e-5, ε = 1e-6 clamps, poly 0.9.
    The hierarchical class → modality → dataset → volume sampling lives in
    :mod:`napari_weakseg.training.sampling`.
    """

    id = "disambig"
    description = "Self-disambiguation (CVPR'24): partial/sparse labels from several sources"
    sampling = "hierarchical"  # class → modality → dataset → volume, as coded
    kinds = frozenset({"partial", "sparse", "dense"})
    optimizer = OptimizerSpec(name="adamw", lr=1e-3, weight_decay=1e-5, poly_power=0.9)
    Options = SelfDisambiguationOptions

    def __init__(self, num_classes: int, feature_channels: int = 16, **options: Any):
        super().__init__(num_classes, feature_channels, **options)
        if self.options.annotated_from not in ("declared", "present"):
            raise ValueError(f"annotated_from must be 'declared' or 'present', "
                             f"not {self.options.annotated_from!r}")

    def loss(self, net, batch: dict[str, Any], step: int) -> LossOutput:
        logits, _ = net(batch["image"])
        probs = torch.softmax(logits.float(), 1)
        target = batch["labels"].long().clamp(min=0)
        o = self.options
        annotated = batch.get("annotated") if o.annotated_from == "declared" else None
        out = self_disambiguation_loss(
            probs, target, annotated, valid=batch.get("valid"), gamma=o.gamma,
            eps=o.eps, smooth=o.smooth, unlabelled_weight=o.unlabelled_weight,
            entropy_weight=o.entropy_weight)
        terms = detach_terms({k: out[k] for k in ("focal_ce", "dice", "entropy_reg")})
        return LossOutput(total=out["total"], terms=terms)
