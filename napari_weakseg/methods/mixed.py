"""Mixed supervision: one network learns from every annotation a volume carries.

No paper or tool has this objective; it composes the existing, oracle-tested losses of the
single-kind methods (imported from their modules — nothing is re-implemented here) per
sample and, where kinds overlap on one slice, per pixel. The batch's ``kind`` bitmask
(``napari_weakseg.weak.targets.KIND_BITS``, built by ``build_targets``) says which
annotation supervises each pixel; each *term group* takes the samples that carry it:

=========  ==========================================  =====================================
group      pixels                                      term (the single method's objective)
=========  ==========================================  =====================================
scribble   stroke pixels (bit 1)                       pCE (:func:`.pce.partial_cross_entropy`);
                                                       with ``effdnet_terms``: EFFDNet's
                                                       :func:`.effdnet.effdnet_objective`
                                                       (pCE + λ·[pseudo-label CE + δ·FBSL],
                                                       mean-teacher pseudo-labels on the
                                                       whole image, FBSL on the whole image)
coarse     positive / negative coarse marks (bit 2)    RefineSeg :meth:`.refineseg.RefineSeg.
                                                       coarse_terms` (head-corrected positive
                                                       CE + Dice, complementary negative NLL,
                                                       λ·‖A − I‖² on those samples' pixels)
partial    slices of partial/sparse annotations that   self-disambiguation focal CE + Dice
           leave some class undeclared (bit 4)         (:func:`.disambig.self_disambiguation_
                                                       loss`) with the declared classes Φ
dense      complete slices: dense annotations, and     0.5·CE + 0.5·Dice (``full``:
           partial/sparse slices declaring every       :func:`.pce.partial_cross_entropy`,
           class — accepted corrected slices (bit 8)   :func:`.full.soft_dice_loss`)
=========  ==========================================  =====================================

**Weighting and normalisation.** Total = Σ_g w_g · L_g with one weight per group
(``scribble_weight``, ``coarse_weight``, ``partial_weight``, ``dense_weight``, all 1). Each
L_g is its method's objective computed on the sub-batch of the samples that carry group g,
with that method's own normalisation over *its own* pixels: pCE and CE are means over the
group's labelled pixels of the batch, Dice terms sum over those pixels, RefineSeg's
regulariser averages over the coarse samples' pixels, the disambiguation terms are means
over the partial samples. So L_g does not shrink when the batch holds fewer samples of
group g, and a batch mixing kinds gives exactly Σ_g L_g of the single methods applied to
their samples (tested). A group absent from the batch adds an exact 0 (no NaN) and is left
out of the logged terms.

**Choices the papers leave open (ours):**

1. A pixel supervised by two annotations (a stroke on an accepted slice) gets both terms.
2. On an incompletely declared partial/sparse slice, labels of classes outside Φ (strokes of
   a scribble drawn on the same slice) are merged into the background target of the
   disambiguation term (they are trained by the scribble term instead); otherwise the
   disambiguation Dice would count the unstroked rest of that class as false positives.
3. A partial/sparse slice that declares every class is trained like a dense slice (CE +
   Dice): with Φ = all classes the disambiguation loss has nothing to disambiguate.
4. EFFDNet's terms (``effdnet_terms``, on by default; off in the CPU profiles, where the
   teacher pass costs time) run on the scribble samples only; FADC is not used (it pastes
   crops between samples, which would mix kinds). The teacher's EMA follows every step.
5. The entropy regulariser of the disambiguation is off (``entropy_weight`` 0): the other
   groups supervise every sample, and at CPU budgets it delayed the minority classes.
6. One optimiser for all: AdamW lr 1e-3, wd 1e-5, poly 0.9 (the disambiguation's, which
   RefineSeg's AdamW 1e-3 also is up to wd); SGD 0.01 (EFFDNet) is unstable on the Dice terms.
7. Sampling: ``kinds`` (a term group uniformly, then a slice carrying it;
   ``training/sampling.py``), so rare kinds (a few corrected slices) are seen.

Options of the embedded methods pass through as dicts: ``effdnet`` (e.g. ``{"fbsl_k": 4}``),
``refineseg`` (e.g. ``{"ablation": "no_heads"}``), ``disambig`` (e.g. ``{"gamma": 2}``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..weak.targets import KIND_BITS
from .base import (ANNOTATION_KINDS, LossOutput, Method, MethodOptions, OptimizerSpec,
                   detach_terms)
from .disambig import SelfDisambiguation, annotated_sets, self_disambiguation_loss
from .effdnet import EFFDNet, effdnet_objective
from .full import soft_dice_loss
from .pce import IGNORE, partial_cross_entropy
from .refineseg import RefineSeg

__all__ = ["Mixed", "MixedOptions", "GROUPS", "group_pixels"]

GROUPS = tuple(KIND_BITS)  # scribble, coarse, partial, dense


def group_pixels(batch: dict[str, Any], group: str) -> torch.Tensor:
    """(B, H, W) bool: the pixels whose supervision belongs to ``group`` (``kind`` bit set,
    inside ``valid``; scribble and dense also need a known label)."""
    kind = batch["kind"]
    pixels = (kind.to(torch.int32) & KIND_BITS[group]) != 0
    valid = batch.get("valid")
    if valid is not None:
        pixels = pixels & valid.bool()
    if group in ("scribble", "dense"):
        pixels = pixels & (batch["labels"] >= 0)
    return pixels


def _samples(pixels: torch.Tensor) -> torch.Tensor:
    """Indices of the samples with at least one pixel."""
    return torch.nonzero(pixels.flatten(1).any(1)).flatten()


@dataclass(frozen=True)
class MixedOptions(MethodOptions):
    """Options of ``mixed``; ``effdnet``, ``refineseg``, ``disambig`` are the embedded
    methods' own options, passed through as dicts (checked when those are built)."""

    scribble_weight: float = 1.0  # w of the scribble group's term
    coarse_weight: float = 1.0  # w of the coarse group's term
    partial_weight: float = 1.0  # w of the partial group's term
    dense_weight: float = 1.0  # w of the dense group's term
    effdnet_terms: bool = True  # scribbles: EFFDNet's objective (off: pCE only)
    entropy_weight: float = 0.0  # disambiguation's entropy regulariser (unless in disambig)
    dense_ce_weight: float = 0.5  # dense group: weight of CE
    dense_dice_weight: float = 0.5  # dense group: weight of soft Dice
    num_positive: int = 1  # RefineSeg positive heads (unless in refineseg; set from data)
    num_negative: int = 1  # RefineSeg negative heads (unless in refineseg; set from data)
    effdnet: dict = field(default_factory=dict)  # EFFDNet options (no use_fadc)
    refineseg: dict = field(default_factory=dict)  # RefineSeg options
    disambig: dict = field(default_factory=dict)  # SelfDisambiguation options


class Mixed(Method):
    """Every annotation kind, each through its own method's loss, one network (module
    docstring: terms, weighting, normalisation and our choices)."""

    id = "mixed"
    description = ("Mixed supervision: every annotation of every volume (scribbles, coarse "
                   "masks, partial/sparse labels, corrected slices), each kind with its "
                   "method's loss")
    kinds = frozenset(ANNOTATION_KINDS)
    kind_masks = True
    sampling = "kinds"
    optimizer = OptimizerSpec(name="adamw", lr=1e-3, weight_decay=1e-5, poly_power=0.9)
    Options = MixedOptions

    @classmethod
    def options_from_data(cls, targets: dict) -> dict:
        return RefineSeg.options_from_data(targets)

    def __init__(self, num_classes: int, feature_channels: int = 16, **options: Any):
        super().__init__(num_classes, feature_channels, **options)
        opts = self.options
        if opts.effdnet.get("use_fadc"):
            raise ValueError("effdnet: FADC is not part of mixed (it pastes crops between "
                             "samples of different kinds)")
        self.weights = {g: float(getattr(opts, f"{g}_weight")) for g in GROUPS}
        #: the embedded methods: their options, modules and state (not their batches)
        self.effdnet = (EFFDNet(num_classes, feature_channels,
                                **{**opts.effdnet, "use_fadc": False})
                        if opts.effdnet_terms else None)
        self.refineseg = RefineSeg(num_classes, feature_channels,
                                   **{"num_positive": opts.num_positive,
                                      "num_negative": opts.num_negative,
                                      **opts.refineseg})
        self.disambig = SelfDisambiguation(
            num_classes, feature_channels,
            **{"entropy_weight": opts.entropy_weight, **opts.disambig})

    # -- modules and state (the teacher, the annotation heads) ---------------------------
    def setup(self, net) -> None:
        if self.effdnet is not None:
            self.effdnet.setup(net)

    def extra_modules(self) -> dict[str, Any]:
        return self.refineseg.extra_modules()

    def after_step(self, net, step: int) -> None:
        if self.effdnet is not None:
            self.effdnet.after_step(net, step)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.effdnet is None else {"effdnet": self.effdnet.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.effdnet is not None and "effdnet" in state:
            self.effdnet.load_state_dict(state["effdnet"])

    # -- the objective -------------------------------------------------------------------
    def loss(self, net, batch: dict[str, Any], step: int) -> LossOutput:
        logits, features = net(batch["image"])
        total, terms = self.objective(logits, features, batch)
        return LossOutput(total=total, terms=detach_terms(terms))

    def objective(self, logits: torch.Tensor, features: torch.Tensor, batch: dict[str, Any],
                  pseudo_label: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Σ_g w_g·L_g from the network outputs; ``(total, terms)`` with each present
        group's L_g under its name and its parts as ``group_part``. ``pseudo_label``
        (B, H, W): the teacher's labels (default: :meth:`EFFDNet.pseudo_labels` of the
        scribble samples)."""
        if "kind" not in batch:
            raise ValueError("mixed needs the batch key 'kind' (SliceDataset(kind_masks=True))")
        total = logits.sum() * 0.0  # a zero that keeps the graph (empty groups add nothing)
        terms: dict[str, torch.Tensor] = {}
        labels = batch["labels"].long()
        for group in GROUPS:
            pixels = group_pixels(batch, group) if group != "coarse" else None
            if group == "coarse":
                value, parts = self._coarse(logits, features, batch)
            else:
                idx = _samples(pixels)
                if not len(idx):
                    continue
                value, parts = getattr(self, f"_{group}")(logits, features, batch, labels,
                                                          pixels, idx, pseudo_label)
            if value is None:
                continue
            total = total + self.weights[group] * value
            terms[group] = value
            terms.update({f"{group}_{k}": v for k, v in parts.items()})
        return total, terms

    def _scribble(self, logits, features, batch, labels, pixels, idx, pseudo_label):
        strokes = torch.where(pixels, labels, torch.full_like(labels, IGNORE))[idx]
        if self.effdnet is None:
            pce = partial_cross_entropy(logits[idx], strokes)
            return pce, {"pce": pce}
        opts = self.effdnet.options
        pseudo = (self.effdnet.pseudo_labels(batch["image"][idx]) if pseudo_label is None
                  else pseudo_label[idx])
        return effdnet_objective(logits[idx], features[idx], strokes, pseudo,
                                 lam=opts.lam, delta=opts.delta, k=opts.fbsl_k,
                                 tau=opts.tau, use_fbsl=opts.use_fbsl)

    def _coarse(self, logits, features, batch):
        valid = batch.get("valid")
        marked = None
        for key in ("coarse_pos", "coarse_neg"):
            array = batch.get(key)
            if array is None or array.shape[1] == 0:
                continue
            m = (array >= 0) if key == "coarse_pos" else array.bool()
            m = m.flatten(2).any(1) if key == "coarse_pos" else m.flatten(3).any(2).any(1)
            if valid is not None:
                m = m & valid.bool().flatten(1)
            marked = m if marked is None else marked | m
        if marked is None:
            return None, {}
        idx = torch.nonzero(marked.any(1)).flatten()
        if not len(idx):
            return None, {}
        sub = {key: batch[key][idx] for key in ("coarse_pos", "coarse_neg", "valid")
               if batch.get(key) is not None}
        return self.refineseg.coarse_terms(logits[idx], features[idx], sub)

    def _partial(self, logits, features, batch, labels, pixels, idx, pseudo_label):
        d = self.disambig.options
        valid = pixels[idx]
        raw = torch.where(pixels, labels, torch.zeros_like(labels))[idx].clamp(min=0)
        annotated = batch.get("annotated") if d.annotated_from == "declared" else None
        annotated = None if annotated is None else annotated[idx]
        # labels of classes outside Φ come from other annotations (strokes): merged here
        phi = annotated_sets(raw, self.num_classes, annotated, valid)
        keep = phi.gather(1, raw.flatten(1)).reshape(raw.shape) & (raw > 0)
        target = torch.where(keep, raw, torch.zeros_like(raw))
        probs = torch.softmax(logits[idx].float(), 1)
        out = self_disambiguation_loss(
            probs, target, annotated, valid=valid, gamma=d.gamma, eps=d.eps, smooth=d.smooth,
            unlabelled_weight=d.unlabelled_weight, entropy_weight=d.entropy_weight)
        parts = {"focal_ce": out["focal_ce"], "dice": out["dice"]}
        if d.entropy_weight:
            parts["entropy_reg"] = out["entropy_reg"]
        return out["total"], parts

    def _dense(self, logits, features, batch, labels, pixels, idx, pseudo_label):
        known = torch.where(pixels, labels, torch.full_like(labels, IGNORE))[idx]
        ce = partial_cross_entropy(logits[idx], known)
        dice = soft_dice_loss(torch.softmax(logits[idx].float(), dim=1), known)
        total = self.options.dense_ce_weight * ce + self.options.dense_dice_weight * dice
        return total, {"ce": ce, "dice": dice}
