"""RefineSeg: segmentation from positive and negative coarse masks (Du et al., MICCAI 2025).

No public code exists (``methods-as-coded.md`` §1); this is implemented from the paper, with
the pieces it borrows checked against its two published ancestors (Zhang et al. NeurIPS'20
pixel-wise confusion matrices; Yu et al. ECCV'18 complementary "forward" loss).

Conventions (L = number of classes; ``*S`` = spatial dims, 2D or 3D for the pure functions):

* ``probs`` (B, L, *S): p(y|x), softmax of the segmentation logits.
* A transition field ``A`` (B, L, L, *S) with ``A[:, m, k] = p(ỹ = m | y = k, x)``: every
  **column** k sums to 1 (column-stochastic); the coarse prediction is (A·p)_m = Σ_k A_mk p_k.
  Head output channel m·L + k holds entry (row m, column k) (the ancestor's layout).
* Positive coarse labels ``coarse`` (B, *S) int64, −1 = no positive label.
* Negative coarse labels ``not_mask`` (B, L, *S) bool, True = "the pixel is not class c".
* Complementary matrix ``M`` (L, L) stored **row-stochastic**, ``M[k, m] = p(ȳ = m | y = k)``,
  zero diagonal, so that v = Mᵀu (paper Eq. 6) is a distribution over complementary labels
  (Yu et al.'s convention q = p·Q). The paper's index statement (M_mk = p(ỹ=m|y=k)) would
  make Mᵀu meaningless for a non-symmetric M; for the default uniform M both coincide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import LossOutput, Method, MethodOptions, OptimizerSpec, detach_terms

__all__ = [
    "RefineSeg", "RefineSegOptions", "AnnotationHead", "ComplementaryTransition",
    "RefineSegModules",
    "column_stochastic", "apply_transition", "positive_coarse_loss", "negative_coarse_loss",
    "identity_regulariser", "uniform_complementary",
]

ALPHA, BETA, LAMBDA, EPS = 0.6, 0.4, 0.2, 1e-6
DICE_SMOOTH = 1e-5
ABLATIONS = {
    "full": {},
    "positive_only": {"use_negative": False},
    "positive_negative": {"use_regulariser": False},
    "no_regulariser": {"use_regulariser": False},
    "no_heads": {"use_heads": False},
}


# --------------------------------------------------------------------------- matrices
def column_stochastic(z: torch.Tensor, num_classes: int, mode: str = "softmax") -> torch.Tensor:
    """Head output (B, L², *S) → column-stochastic field (B, L, L, *S), entry [m, k] from
    channel m·L + k. ``mode``: "softmax" (over m), "softplus" (softplus, then divide by the
    column sum, as the ancestor), "sum" (input already non-negative: divide by column sum)."""
    b, spatial = z.shape[0], z.shape[2:]
    a = z.reshape(b, num_classes, num_classes, *spatial)
    if mode == "softmax":
        return torch.softmax(a, dim=1)
    if mode == "softplus":
        a = F.softplus(a)
    elif mode != "sum":
        raise ValueError(f"unknown normalisation {mode!r}")
    return a / a.sum(dim=1, keepdim=True)


def apply_transition(a: torch.Tensor | None, probs: torch.Tensor) -> torch.Tensor:
    """(A·p) per pixel: (B, L, L, *S) × (B, L, *S) → (B, L, *S); ``a=None`` means A = I."""
    if a is None:
        return probs
    return torch.einsum("bmk...,bk...->bm...", a, probs)


def uniform_complementary(num_classes: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """(1 − I)/(L − 1): zero diagonal, uniform off-diagonal."""
    eye = torch.eye(num_classes, dtype=dtype, device=device)
    return (1 - eye) / (num_classes - 1)


# --------------------------------------------------------------------------- loss terms
def _zero(like: torch.Tensor) -> torch.Tensor:
    return like.sum() * 0.0  # a zero that keeps the graph


def positive_coarse_loss(probs, a, coarse, *, alpha: float = ALPHA, beta: float = BETA,
                         eps: float = EPS, dice_mode: str = "per_class",
                         dice_smooth: float = DICE_SMOOTH, mask=None):
    """Eq. 2–4: α·CE + β·Dice of q = A·p against the positive coarse label, on R_pos only.

    CE = mean over R_pos of −log(clamp(q_ỹ, ε, 1)) (log of the probability, not the
    ancestor's CE-on-probabilities). Dice: ``"per_class"`` (default) = 1 − mean over the
    classes occurring among the R_pos labels of (2Σq_k y_k + s)/(Σ(q_k + y_k) + s), sums over
    the R_pos pixels of the whole batch; ``"global"`` = the paper's literal
    1 − (2Σq·y + s)/(Σ(q + y) + s) summed over classes and pixels together. ``mask`` (B, *S)
    bool further restricts R_pos. Returns (total, ce, dice); zeros when R_pos is empty.
    """
    coarse = coarse.long()
    region = coarse >= 0
    if mask is not None:
        region = region & mask.bool()
    if not region.any():
        z = _zero(probs)
        return z, z, z
    q = apply_transition(a, probs)
    lq = q.movedim(1, -1)[region]                       # (N, L)
    y = coarse[region]
    ce = -torch.log(lq.gather(1, y[:, None]).squeeze(1).clamp(eps, 1.0)).mean()
    oh = F.one_hot(y, lq.shape[1]).to(lq.dtype)
    if dice_mode == "per_class":
        inter = (lq * oh).sum(0)
        denom = (lq + oh).sum(0)
        present = oh.sum(0) > 0
        dice = 1 - ((2 * inter + dice_smooth) / (denom + dice_smooth))[present].mean()
    elif dice_mode == "global":
        dice = 1 - (2 * (lq * oh).sum() + dice_smooth) / ((lq + oh).sum() + dice_smooth)
    else:
        raise ValueError(f"unknown dice_mode {dice_mode!r}")
    return alpha * ce + beta * dice, ce, dice


def negative_coarse_loss(probs, a, not_mask, m=None, *, eps: float = EPS,
                         multi: str = "mean", mask=None):
    """Eq. 5–6: u = A^(c)·p, v = Mᵀu, NLL of v at the "not c" labels.

    ``not_mask`` (B, L, *S) bool; ``m`` (L, L) row-stochastic zero-diagonal (``None`` →
    uniform). Pixels carrying at least one "not c" (and not all L of them: contradictory,
    skipped) count; a pixel with complementary set E contributes ``multi``: "mean" (default)
    = mean over c ∈ E of −log v_c (each "not c" an independent complementary observation),
    or "mass" = −log Σ_{c∈E} v_c (E observed as one event). With |E| = 1, A = I and uniform M
    both are Yu et al.'s forward loss −log((1 − p_ȳ)/(L − 1)). Logs use clamp(v, ε, 1).
    Returns the mean over the counted pixels (0 when none).
    """
    nm = not_mask.bool()
    n_not = nm.sum(1)
    region = (n_not > 0) & (n_not < nm.shape[1])
    if mask is not None:
        region = region & mask.bool()
    if not region.any():
        return _zero(probs)
    u = apply_transition(a, probs)
    if m is None:
        m = uniform_complementary(probs.shape[1], probs.dtype, probs.device)
    v = torch.einsum("km,bk...->bm...", m, u)
    vr = v.movedim(1, -1)[region]                        # (N, L)
    er = nm.movedim(1, -1)[region].to(vr.dtype)          # (N, L)
    if multi == "mean":
        per_pixel = -(torch.log(vr.clamp(eps, 1.0)) * er).sum(1) / er.sum(1)
    elif multi == "mass":
        per_pixel = -torch.log((vr * er).sum(1).clamp(eps, 1.0))
    else:
        raise ValueError(f"unknown multi {multi!r}")
    return per_pixel.mean()


def identity_regulariser(a: torch.Tensor) -> torch.Tensor:
    """Eq. 7 for one strategy: ‖A − I‖²_F per pixel, averaged over all B·|S| pixels."""
    num = a.shape[1]
    eye = torch.eye(num, dtype=a.dtype, device=a.device).reshape(1, num, num,
                                                               *([1] * (a.dim() - 3)))
    return (a - eye).pow(2).sum((1, 2)).mean()


# --------------------------------------------------------------------------- modules
def _double_conv(ch: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(2):
        layers += [nn.Conv2d(ch, ch, 3, padding=1, bias=False),
                   nn.InstanceNorm2d(ch, affine=True), nn.PReLU()]
    return nn.Sequential(*layers)


class AnnotationHead(nn.Module):
    """Pixel-wise transition field from decoder features (the Zhang'20 ``cm_layers``).

    Two double-conv blocks ([3×3 conv no bias → InstanceNorm(affine) → PReLU] × 2, channels
    kept), 1×1 conv to L², column normalisation (``normalisation`` as in
    :func:`column_stochastic`). Initialised near the identity: the 1×1 conv's weights are
    scaled by ``init_scale`` and its bias set so that, at zero weights, every column is
    ``init_diag`` on the diagonal and (1 − init_diag)/(L − 1) elsewhere.
    Input (B, F, H, W) → output (B, L, L, H, W).
    """

    def __init__(self, in_channels: int, num_classes: int, normalisation: str = "softmax",
                 init_diag: float = 0.9, init_scale: float = 0.1):
        super().__init__()
        if not 1.0 / num_classes < init_diag < 1.0:
            raise ValueError("init_diag must lie in (1/L, 1)")
        if normalisation not in ("softmax", "softplus"):
            raise ValueError("normalisation must be 'softmax' or 'softplus'")
        self.num_classes = num_classes
        self.normalisation = normalisation
        self.body = nn.Sequential(_double_conv(in_channels), _double_conv(in_channels))
        self.out = nn.Conv2d(in_channels, num_classes * num_classes, 1)
        off = (1 - init_diag) / (num_classes - 1)
        if normalisation == "softmax":
            diag_b, off_b = math.log(init_diag / off), 0.0
        else:  # inverse softplus of the target entries
            diag_b, off_b = math.log(math.expm1(init_diag)), math.log(math.expm1(off))
        with torch.no_grad():
            self.out.weight.mul_(init_scale)
            eye = torch.eye(num_classes).flatten()
            self.out.bias.copy_(eye * diag_b + (1 - eye) * off_b)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return column_stochastic(self.out(self.body(features)), self.num_classes,
                                 self.normalisation)


class ComplementaryTransition(nn.Module):
    """M (L, L), row-stochastic with zero diagonal: fixed uniform (1 − I)/(L − 1), or
    learnable (a row softmax over the off-diagonal entries, initialised uniform)."""

    def __init__(self, num_classes: int, learnable: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.learnable = learnable
        if learnable:
            self.logits = nn.Parameter(torch.zeros(num_classes, num_classes))
        else:
            self.register_buffer("fixed", uniform_complementary(num_classes))

    def forward(self) -> torch.Tensor:
        if not self.learnable:
            return self.fixed
        eye = torch.eye(self.num_classes, dtype=torch.bool, device=self.logits.device)
        return torch.softmax(self.logits.masked_fill(eye, float("-inf")), dim=1)


class RefineSegModules(nn.Module):
    """Everything RefineSeg trains besides the network: P positive heads, Q negative heads
    (absent when heads are off) and the complementary matrix M."""

    def __init__(self, feature_channels: int, num_classes: int, num_positive: int,
                 num_negative: int, use_heads: bool, learn_complementary: bool,
                 normalisation: str, init_diag: float, init_scale: float):
        super().__init__()
        def heads(n):
            return nn.ModuleList(
                AnnotationHead(feature_channels, num_classes, normalisation, init_diag,
                               init_scale) for _ in range(n if use_heads else 0))
        self.positive = heads(num_positive)
        self.negative = heads(num_negative)
        self.complementary = ComplementaryTransition(num_classes, learn_complementary)


# --------------------------------------------------------------------------- the method
@dataclass(frozen=True)
class RefineSegOptions(MethodOptions):
    """Options of ``refineseg`` (our choices where the paper is silent: :class:`RefineSeg`).
    ``ablation`` names a preset of :data:`ABLATIONS` whose values the method applies under
    the explicit options; the other fields hold the values in effect."""

    ablation: str = "full"  # preset of ABLATIONS ("full": none), under explicit options
    alpha: float = ALPHA  # α: weight of the positive CE
    beta: float = BETA  # β: weight of the positive Dice
    lam: float = LAMBDA  # λ: weight of the ‖A − I‖² regulariser
    eps: float = EPS  # probabilities are clamped to [eps, 1] inside the logs
    dice_mode: str = "per_class"  # positive Dice: "per_class" (ours) | "global" (Eq. 4)
    negative_multi: str = "mean"  # several "not" labels at a pixel: "mean" | "mass"
    use_heads: bool = True  # transition heads (off: A = I)
    use_negative: bool = True  # negative coarse loss (off: positive only)
    use_regulariser: bool = True  # the identity regulariser (off: λ term dropped)
    regularise_negative: bool = False  # regularise the negative heads too
    num_positive: int = 1  # P: positive heads (the trainer sets it from the data)
    num_negative: int = 1  # Q: negative heads (the trainer sets it from the data)
    learn_complementary: bool = False  # M learnable (off: fixed uniform (1 − I)/(L − 1))
    head_normalisation: str = "softmax"  # head columns: "softmax" | "softplus" (ancestor)
    head_init_diag: float = 0.9  # start of the heads: diagonal of each column, in (1/L, 1)
    head_init_scale: float = 0.1  # start of the heads: scale of the 1×1 conv weights


class RefineSeg(Method):
    """RefineSeg (Du et al., MICCAI'25): coarse positive/negative masks through pixel-wise
    transition matrices. Inference uses the segmentation network's p(y|x) only; the heads
    exist for training.

    Loss (Eq. 8) = Σ_r L_pos^(r) + Σ_s L_neg^(s) + λ·Σ_r mean_pixels ‖A^(r) − I‖²_F, with
    r over the P positive strategies (``coarse_pos`` channels) and s over the Q negative
    ones (``coarse_neg`` channels); a strategy without labelled pixels in the batch adds 0.

    Our choices where the paper is silent (methods-as-coded §1.5), all options:

    * ``num_positive`` P = 1, ``num_negative`` Q = 1: heads per strategy; the trainer passes
      the counts from the data; a batch with more strategies than heads is refused.
    * Heads (``use_heads`` True): the Zhang'20 annotation network on the last decoder
      features (two double-conv blocks, 1×1 conv to L²); ``head_normalisation`` "softmax"
      over m (default; column-stochastic by construction) or "softplus" + column sum (the
      ancestor); near-identity start ``head_init_diag`` 0.9 (weights × ``head_init_scale``
      0.1). ``use_heads`` False fixes A = I (no heads) — an ablation.
    * Positive loss: α 0.6 · CE + β 0.4 · Dice on R_pos; CE on log(clamp(A·p, ε=1e-6, 1))
      (not the ancestor's CE on probabilities); Dice per class (mean over the classes that
      occur among the positive labels of the batch; linear denominator Σ(q + y) as Eq. 4;
      smooth 1e-5), ``dice_mode`` "global" gives the literal single Dice of Eq. 4.
    * Negative loss: NLL on v = Mᵀ(A^(c)·p) (the loss is unnamed in the paper; NLL makes it
      Yu et al.'s forward loss, which the paper cites). M uniform (1 − I)/(L − 1) fixed by
      default; ``learn_complementary`` makes it a learnable row-stochastic matrix with zero
      diagonal (initialised uniform). Several "not" labels at a pixel: ``negative_multi``
      "mean" (mean of the per-label NLLs; default) or "mass" (−log of v's mass on the set);
      pixels marked "not" every class are contradictory and skipped. Negative heads are not
      regularised (Eq. 7 sums over positive strategies only); ``regularise_negative`` adds
      them — without it a negative head can absorb the negative signal on its own.
    * Regulariser: ‖A − I‖²_F summed over entries, averaged over all pixels (not only labelled
      ones), summed over positive strategies, λ 0.2; ``use_regulariser`` False drops it.
    * ``use_negative`` False = positive only. ``ablation`` presets: "full",
      "positive_only", "positive_negative" / "no_regulariser" (pos + neg, λ = 0),
      "no_heads" (A = I); explicit options override the preset.
    * ``valid`` (when present) further restricts the labelled pixels.
    * AdamW lr 1e-3, wd 2e-5 (paper); the schedule is unstated: we keep poly 0.9.
    """

    id = "refineseg"
    description = "RefineSeg (MICCAI'25): positive + negative coarse masks, transition heads"
    kinds = frozenset({"coarse_pos", "coarse_neg"})
    optimizer = OptimizerSpec(name="adamw", lr=1e-3, weight_decay=2e-5, poly_power=0.9)
    Options = RefineSegOptions

    @classmethod
    def options_from_data(cls, targets: dict) -> dict:
        """P and Q from the volume targets' ``coarse_pos`` (P, …) / ``coarse_neg`` (Q, C, …)."""
        options = {}
        if "coarse_pos" in targets:
            options["num_positive"] = int(targets["coarse_pos"].shape[0])
        if "coarse_neg" in targets:
            options["num_negative"] = int(targets["coarse_neg"].shape[0])
        return options

    def __init__(self, num_classes: int, feature_channels: int = 16, **options: Any):
        preset = options.get("ablation", "full")
        if not isinstance(preset, str) or preset not in ABLATIONS:
            raise ValueError(f"unknown ablation {preset!r}; choose from {sorted(ABLATIONS)}")
        opts = {**ABLATIONS[preset], **options}
        super().__init__(num_classes, feature_channels, **opts)
        o = self.options
        self.aux = RefineSegModules(
            feature_channels, num_classes, o.num_positive, o.num_negative, o.use_heads,
            o.learn_complementary, o.head_normalisation, o.head_init_diag, o.head_init_scale)

    def extra_modules(self) -> dict[str, Any]:
        if any(True for _ in self.aux.parameters()):
            return {"refineseg": self.aux}
        return {}

    def _head(self, heads: nn.ModuleList, index: int, features):
        if not self.options.use_heads:
            return None
        if index >= len(heads):
            raise ValueError(f"batch has more coarse strategies than RefineSeg heads "
                             f"({len(heads)}); set num_positive/num_negative from the data")
        return heads[index](features)

    def loss(self, net, batch: dict[str, Any], step: int) -> LossOutput:
        logits, features = net(batch["image"])
        total, terms = self.coarse_terms(logits, features, batch)
        return LossOutput(total=total,
                          terms=detach_terms(terms))

    def coarse_terms(self, logits, features, batch: dict[str, Any]
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 8 from the network's outputs (``logits`` (B, L, H, W), ``features``) and the
        batch's ``coarse_pos``/``coarse_neg``/``valid``: ``(total, terms)`` with the
        tensors ``pos``, ``pos_ce``, ``pos_dice``, ``neg``, ``reg`` (the ``mixed`` method
        calls this on its coarse samples)."""
        o = self.options
        probs = torch.softmax(logits.float(), 1)
        valid = batch.get("valid")
        pos_sum, ce_sum, dice_sum, reg_sum, neg_sum = (_zero(probs) for _ in range(5))
        coarse_pos = batch.get("coarse_pos")
        if coarse_pos is not None:
            for r in range(coarse_pos.shape[1]):
                a = self._head(self.aux.positive, r, features)
                a = None if a is None else a.float()
                lp, ce, dice = positive_coarse_loss(
                    probs, a, coarse_pos[:, r], alpha=o.alpha, beta=o.beta,
                    eps=o.eps, dice_mode=o.dice_mode, mask=valid)
                pos_sum, ce_sum, dice_sum = pos_sum + lp, ce_sum + ce, dice_sum + dice
                if a is not None and o.use_regulariser:
                    reg_sum = reg_sum + identity_regulariser(a)
        coarse_neg = batch.get("coarse_neg")
        if o.use_negative and coarse_neg is not None:
            m = self.aux.complementary().float()
            for s in range(coarse_neg.shape[1]):
                a = self._head(self.aux.negative, s, features)
                a = None if a is None else a.float()
                neg_sum = neg_sum + negative_coarse_loss(
                    probs, a, coarse_neg[:, s], m, eps=o.eps, multi=o.negative_multi,
                    mask=valid)
                if a is not None and o.use_regulariser and o.regularise_negative:
                    reg_sum = reg_sum + identity_regulariser(a)
        total = pos_sum + neg_sum + o.lam * reg_sum
        terms = {"pos": pos_sum, "pos_ce": ce_sum, "pos_dice": dice_sum, "neg": neg_sum,
                 "reg": reg_sum}
        return total, terms
