"""EFFDNet (Liu et al., MICCAI 2025) as its authors' code computes it (methods-as-coded §2.4–2.6).

Pure, separately testable pieces: :func:`pseudo_label_cross_entropy`, :func:`fbsl_regions`,
:func:`supcon_region_loss`, :func:`fbsl_loss`, :func:`scribble_boxes`,
:func:`fadc_sources_as_coded`, :func:`fadc`, :func:`effdnet_objective`, :func:`ema_update`.
Label convention: −1 = unlabelled (the reference's 4), 0 = background stroke, 1.. = classes.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..runtime import mix_seed
from .base import LossOutput, Method, MethodOptions, OptimizerSpec, detach_terms
from .pce import IGNORE, known_labels, partial_cross_entropy

__all__ = ["EFFDNet", "EFFDNetOptions", "effdnet_objective", "ema_alpha", "ema_update",
           "fadc", "fadc_sources_as_coded", "fbsl_loss", "fbsl_regions",
           "pseudo_label_cross_entropy", "scribble_boxes", "supcon_region_loss"]


# --------------------------------------------------------------------------- losses

def pseudo_label_cross_entropy(logits: torch.Tensor, pseudo_label: torch.Tensor) -> torch.Tensor:
    """CE of ``logits`` (B, C, H, W) against hard pseudo-labels (B, H, W): mean over all B·H·W
    pixels (the reference's ``ignore_index=-1`` never triggers on an argmax)."""
    return F.cross_entropy(logits.float(), pseudo_label.long(), ignore_index=IGNORE)


def _block_matrix(size: int, k: int, device) -> torch.Tensor:
    """(k, size) one-hot: entry [j, x] = 1 when pixel x lies in block j of ``ceil(size/k)`` px."""
    block = math.ceil(size / k)
    if block * (k - 1) >= size:
        raise ValueError(f"FBSL: {size} px cannot be cut into {k} non-empty blocks of "
                         f"ceil({size}/{k}) = {block} px; use a smaller K or a larger input")
    index = torch.arange(size, device=device) // block
    return (index.unsqueeze(0) == torch.arange(k, device=device).unsqueeze(1)).float()


def fbsl_regions(features: torch.Tensor, labels: torch.Tensor,
                 k: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Region embeddings and labels of FBSL.

    ``features`` (B, F, H, W), ``labels`` (B, H, W) (−1 unlabelled). The image is cut into
    K×K blocks of ``ceil(H/K)`` rows × ``ceil(W/K)`` columns (the last row/column of blocks may
    be smaller; the reference uses ``ceil(W/K)`` for both axes — identical for square inputs,
    per-axis is our choice for non-square ones). Returns ``z`` (B, K², F): block mean of the
    features, L2-normalised (eps 1e-12); ``region_label`` (B, K²) float: 1 if the block holds a
    pixel of class ≥ 1, else 0 (background strokes do not count). Region index =
    row_block·K + col_block. Computed in float32 with autocast off. ``ValueError`` when some
    block would be empty.
    """
    _, _, h, w = features.shape
    rows = _block_matrix(h, k, features.device)
    cols = _block_matrix(w, k, features.device)
    counts = rows.sum(1)[:, None] * cols.sum(1)[None, :]                        # (K, K)
    with torch.autocast(device_type=features.device.type, enabled=False):      # float32 sums
        sums = torch.einsum("kh,bfhw,lw->bfkl", rows, features.float(), cols)
        means = (sums / counts).flatten(2).transpose(1, 2)                       # (B, K², F)
        z = F.normalize(means, p=2, dim=2, eps=1e-12)
        fg = (labels >= 1).float()
        fg_count = torch.einsum("kh,bhw,lw->bkl", rows, fg, cols).flatten(1)
    return z, (fg_count > 0).float()


def supcon_region_loss(z: torch.Tensor, region_label: torch.Tensor,
                       tau: float = 0.07) -> torch.Tensor:
    """The reference's ``SupConLoss`` on pooled regions.

    ``z`` (N, F) unit vectors, ``region_label`` (N,). s_ij = ⟨z_i, z_j⟩/τ; positives of i: j ≠ i
    with the same label; negatives: the other label. Per positive
    ``log((e^{s_ij} + 1e-12) / (e^{s_ij} + Σ_neg e^{s_in} + 1e-12))``; anchor loss =
    −Σ_pos / (#pos + 1e-12); result = plain mean over all N anchors (anchors without a
    positive contribute 0 and are counted). No max-subtraction, no τ/τ_base factor. Computed
    in float32 with autocast off (e^{1/τ} ≈ 1.6e6 overflows float16).
    """
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = z.float()
        logits = z @ z.t() / tau
        same = region_label.reshape(-1, 1) == region_label.reshape(1, -1)
        eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
        positive = (same & ~eye).float()
        negative = (~same).float()
        exp = torch.exp(logits)
        neg_sum = (exp * negative).sum(1, keepdim=True)
        log_prob = torch.log((exp + 1e-12) / (exp + neg_sum + 1e-12))
        per_anchor = -(positive * log_prob).sum(1) / (positive.sum(1) + 1e-12)
        return per_anchor.mean()


def fbsl_loss(features: torch.Tensor, labels: torch.Tensor, k: int = 8,
              tau: float = 0.07) -> torch.Tensor:
    """Foreground-Background Separation Loss: :func:`fbsl_regions` of the batch, all B·K²
    regions pooled into one set (cross-image positives/negatives), :func:`supcon_region_loss`."""
    z, region_label = fbsl_regions(features, labels, k)
    return supcon_region_loss(z.reshape(-1, z.shape[-1]), region_label.reshape(-1), tau)


def effdnet_objective(logits: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
                      pseudo_label: torch.Tensor, logits_aug: torch.Tensor | None = None,
                      labels_aug: torch.Tensor | None = None,
                      pseudo_label_aug: torch.Tensor | None = None, *, lam: float = 0.6,
                      delta: float = 0.3, k: int = 8, tau: float = 0.07,
                      use_fbsl: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L = CE(s(x), y) + λ·[CE(s(x), ŷ) + δ·FBSL] + CE(s(x′), y′) + λ·CE(s(x′), ŷ′).

    The primed terms are added only when ``logits_aug`` is given; FBSL (on the original batch
    only) only with ``use_fbsl``. Returns ``(total, terms)`` with the unweighted terms.
    """
    terms = {"pce": partial_cross_entropy(logits, labels),
             "pseudo_ce": pseudo_label_cross_entropy(logits, pseudo_label)}
    inner = terms["pseudo_ce"]
    if use_fbsl:
        terms["fbsl"] = fbsl_loss(features, labels, k, tau)
        inner = inner + delta * terms["fbsl"]
    total = terms["pce"] + lam * inner
    if logits_aug is not None:
        terms["pce_aug"] = partial_cross_entropy(logits_aug, labels_aug)
        terms["pseudo_ce_aug"] = pseudo_label_cross_entropy(logits_aug, pseudo_label_aug)
        total = total + terms["pce_aug"] + lam * terms["pseudo_ce_aug"]
    return total, terms


# --------------------------------------------------------------------------- FADC

def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def scribble_boxes(labels, foreground_only: bool = False) -> np.ndarray:
    """Per-sample box of the scribble pixels, (B, 4) int64 ``[row_min, row_max, col_min,
    col_max]``, used as the half-open crop ``rows [row_min, row_max) × cols [col_min, col_max)``
    (as coded: the last stroke row/column is excluded). ``labels`` (B, H, W), −1 unlabelled.
    Default: all strokes incl. background (as coded); ``foreground_only``: classes ≥ 1 (the
    paper's "foreground region"). No stroke → ``[0, 0, 0, 0]``."""
    labels = _numpy(labels)
    boxes = np.zeros((labels.shape[0], 4), dtype=np.int64)
    for b, lab in enumerate(labels):
        rows, cols = np.nonzero(lab >= 1 if foreground_only else lab != IGNORE)
        if len(rows):
            boxes[b] = rows.min(), rows.max(), cols.min(), cols.max()
    return boxes


def _box_nonempty(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 1] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 2])


def fadc_sources_as_coded(rng: random.Random, n: int, height: int, width: int,
                          crop_nonempty: Sequence[bool],
                          max_redraws: int | None = None) -> np.ndarray:
    """The reference's random draws with Python ``random`` (same call sequence, so the same
    seed gives the same realisation): three unused ``randint`` per sample, one ``shuffle`` of
    the crop list, then per target ``randint(0, n−1)`` into the shuffled list, redrawn while
    the drawn crop is empty, at most ``max_redraws`` times (the reference's ``--batch_size``;
    default ``n``); a target whose redraws were exhausted gets −1 (left unchanged — as coded,
    even when the last redraw hit a non-empty crop). Returns (n,) int64: source sample of
    each target (= shuffled_perm[choice]). Ours: "empty" = zero height *or* width (the
    reference tests the width only and would divide by zero on a one-row box)."""
    max_redraws = n if max_redraws is None else max_redraws
    for _ in range(n):
        rng.randint(height // 3, height // 2)
        rng.randint(width // 3, width // 2)
        rng.randint(0, n)
    perm = list(range(n))
    rng.shuffle(perm)
    sources = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        choice = rng.randint(0, n - 1)
        tries = 0
        while not crop_nonempty[perm[choice]] and tries < max_redraws:
            choice = rng.randint(0, n - 1)
            tries += 1
        if tries < max_redraws:
            sources[i] = perm[choice]
    return sources


def fadc(image, labels, pseudo_label, source_for_target, *, boxes=None,
         foreground_only: bool = False):
    """Foreground Augmentation with Diverse Context, as coded (sequential, in place).

    ``image`` (B, Ch, H, W) float, ``labels`` (B, H, W) int (−1 unlabelled), ``pseudo_label``
    (B, H, W) int; numpy arrays or torch tensors (returned as the same type/device, new
    objects; inputs are not modified). ``source_for_target`` (B,) int: the sample whose crop
    is pasted into target i (−1 = leave i unchanged); inject the reference's draws or use
    :func:`fadc_sources_as_coded`. ``boxes`` default :func:`scribble_boxes` of ``labels``.

    For i = 0..B−1 in order: if both boxes are non-empty, the source box is read from the
    *current, partly edited* batch (the reference's crops are views, so content pasted earlier
    travels on), resized with ``scipy.ndimage.zoom(order=0)`` by (target/source) box size per
    axis, and written over target i's box in image (every channel), labels and pseudo-label.
    """
    as_torch = isinstance(image, torch.Tensor)
    img = _numpy(image).copy()
    lab = _numpy(labels).copy()
    pse = _numpy(pseudo_label).copy()
    if boxes is None:
        boxes = scribble_boxes(lab, foreground_only)
    boxes = np.asarray(boxes, dtype=np.int64)
    for i, s in enumerate(np.asarray(source_for_target, dtype=np.int64)):
        if s < 0:
            continue
        r0, r1, c0, c1 = boxes[i]
        q0, q1, d0, d1 = boxes[s]
        th, tw, sh, sw = r1 - r0, c1 - c0, q1 - q0, d1 - d0
        if min(th, tw, sh, sw) <= 0:
            continue
        factors = (th / sh, tw / sw)
        for ch in range(img.shape[1]):
            img[i, ch, r0:r1, c0:c1] = ndimage.zoom(img[s, ch, q0:q1, d0:d1], factors, order=0)
        lab[i, r0:r1, c0:c1] = ndimage.zoom(lab[s, q0:q1, d0:d1], factors, order=0)
        pse[i, r0:r1, c0:c1] = ndimage.zoom(pse[s, q0:q1, d0:d1], factors, order=0)
    if as_torch:
        return (torch.from_numpy(img).to(image.device), torch.from_numpy(lab).to(labels.device),
                torch.from_numpy(pse).to(pseudo_label.device))
    return img, lab, pse


# --------------------------------------------------------------------------- mean teacher

def ema_alpha(step: int, decay: float = 0.99) -> float:
    """a = min(1 − 1/(t+1), decay) for the 0-based iteration ``t`` (0 at the first update)."""
    return min(1.0 - 1.0 / (step + 1), decay)


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, alpha: float,
               copy_buffers: bool = False) -> None:
    """θ_t ← α·θ_t + (1−α)·θ_s for every parameter (buffers untouched, as coded, unless
    ``copy_buffers``: then BN statistics are copied from the student)."""
    for tp, sp in zip(teacher.parameters(), student.parameters()):
        tp.mul_(alpha).add_(sp.detach(), alpha=1.0 - alpha)
    if copy_buffers:
        for tb, sb in zip(teacher.buffers(), student.buffers()):
            tb.copy_(sb)


def _unwrap(net):
    """The module inside a (Distributed)DataParallel wrapper, else ``net``."""
    return getattr(net, "module", net)


@dataclass(frozen=True)
class EFFDNetOptions(MethodOptions):
    """Options of ``effdnet`` (defaults as coded; see :class:`EFFDNet`)."""

    lam: float = 0.6  # λ: weight of the pseudo-label CE + δ·FBSL bracket
    delta: float = 0.3  # δ: weight of FBSL inside the bracket
    fbsl_k: int = 8  # K: FBSL cuts the image into K×K blocks
    tau: float = 0.07  # τ: temperature of the FBSL contrastive loss
    use_fbsl: bool = True  # FBSL term on (ablation: off)
    use_fadc: bool = True  # FADC augmented pass on (ablation: off)
    fadc_box: str = "all"  # "all" strokes (as coded) | "foreground" (paper) FADC box
    fadc_max_redraws: int | None = None  # FADC redraws of an empty crop (None: batch size)
    teacher_mode: str = "train"  # teacher predicts in "train" (as coded) | "eval" mode
    teacher_init: str = "random"  # teacher starts "random" (as coded) | "copy" of student
    ema_decay: float = 0.99  # EMA factor cap: a = min(1 − 1/(t+1), ema_decay)
    noise_std: float = 0.1  # std of the teacher's input noise (intensity units, [0, 1])
    noise_clip: float = 0.05  # the teacher's input noise is clamped to ±noise_clip
    seed: int = 2022  # seed of the FADC draws (random.Random(mix_seed(seed, step)))


class EFFDNet(Method):
    """EFFDNet: mean-teacher pseudo-labels + pCE + FBSL + FADC, following the authors' code.

    Loss (§2.4): L = CE(s(x), y) + λ·[CE(s(x), ŷ) + δ·FBSL] + CE(s(x′), y′) + λ·CE(s(x′), ŷ′),
    λ = ``lam`` 0.6, δ = ``delta`` 0.3, constant from step 0; y = scribble (−1 ignored, mean
    over labelled pixels of the batch), ŷ = teacher argmax on x + clamp(N(0, 0.1²), ±0.05)
    (hard, no threshold, mean over all pixels); x′, y′, ŷ′ = FADC of (x, y, ŷ) (no second
    teacher pass); FBSL on the student's decoder features of the original batch only (K 8,
    τ 0.07). Ablations: ``use_fbsl``, ``use_fadc`` (the paper's Table 2).

    Teacher: built in :meth:`setup` as a copy of the network's architecture with freshly
    initialised weights (``teacher_init="random"``, as coded; ``"copy"`` starts from the
    student); EMA of parameters only after every step with a = min(1 − 1/(t+1), 0.99)
    (:meth:`after_step`); in train mode when predicting (dropout on, batch-statistics BN),
    as coded; ``teacher_mode="eval"`` uses eval mode and then copies the student's BN
    statistics at each update. Its weights are in :meth:`state_dict`.

    Deliberately as coded rather than as in the paper (methods-as-coded §2.9): plain batch
    means in both CE terms (no 1/C); τ 0.07, anchors without positives counted, 1e-12
    epsilons; FADC box over all strokes incl. background (``fadc_box="foreground"`` for the
    paper's foreground box), source crop *resized* to the target box, one source per target
    drawn with replacement (maybe itself) after a shuffle, sequential in-place pasting,
    exclusive max index; EMA warm-up instead of a fixed 0.99; teacher in train mode; noise
    clamp ±0.05; no λ ramp-up. Optimiser as coded: SGD lr 1e-2, momentum 0.9, wd 1e-4, poly
    0.9 (batch 12, 256² are the trainer's defaults).

    Ours, where the code is silent or breaks: non-square inputs use per-axis FBSL blocks of
    ceil(H/K) × ceil(W/K); a batch without labelled pixels gives pCE 0 (not NaN); a one-row or
    one-column scribble box counts as empty in FADC (the reference would divide by zero); the
    FADC draws use ``random.Random(seed·1000003 + step)`` so a resumed run replays them;
    model selection belongs to the trainer's validation split (the reference used the test
    fold).
    """

    id = "effdnet"
    description = ("EFFDNet: mean teacher + partial CE + foreground-background separation "
                   "loss + foreground crop-and-paste augmentation (scribbles)")
    kinds = frozenset({"scribble"})
    optimizer = OptimizerSpec(name="sgd", lr=1e-2, momentum=0.9, weight_decay=1e-4,
                              poly_power=0.9)
    Options = EFFDNetOptions

    def __init__(self, num_classes: int, feature_channels: int = 16, **options: Any):
        super().__init__(num_classes, feature_channels, **options)
        options = self.options
        if options.fadc_box not in ("all", "foreground"):
            raise ValueError("fadc_box must be 'all' or 'foreground'")
        if options.teacher_mode not in ("train", "eval"):
            raise ValueError("teacher_mode must be 'train' or 'eval'")
        if options.teacher_init not in ("random", "copy"):
            raise ValueError("teacher_init must be 'random' or 'copy'")
        self.teacher: torch.nn.Module | None = None
        self._pending_state: dict[str, Any] | None = None

    # -- teacher ------------------------------------------------------------------------
    def setup(self, net) -> None:
        teacher = copy.deepcopy(_unwrap(net))
        if self.options.teacher_init == "random":
            for module in teacher.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.teacher = teacher
        if self._pending_state is not None:
            self.load_state_dict(self._pending_state)
            self._pending_state = None

    @torch.no_grad()
    def pseudo_labels(self, image: torch.Tensor) -> torch.Tensor:
        """Teacher argmax on ``image`` + clamp(N(0, noise_std²), ±noise_clip): (B, H, W) int64."""
        if self.teacher is None:
            raise RuntimeError("EFFDNet.setup(net) must be called before training")
        teacher = self.teacher
        if next(teacher.parameters()).device != image.device:
            teacher.to(image.device)
        teacher.train(self.options.teacher_mode == "train")
        noise = torch.clamp(torch.randn_like(image) * self.options.noise_std,
                            -self.options.noise_clip, self.options.noise_clip)
        logits, _ = teacher(image + noise)
        return torch.argmax(torch.softmax(logits.float(), dim=1), dim=1)

    def after_step(self, net, step: int) -> None:
        """EMA update; ``step`` = 0-based index of the iteration just optimised."""
        if self.teacher is None:
            raise RuntimeError("EFFDNet.setup(net) must be called before training")
        ema_update(self.teacher, _unwrap(net), ema_alpha(step, self.options.ema_decay),
                   copy_buffers=self.options.teacher_mode == "eval")

    def state_dict(self) -> dict[str, Any]:
        return {} if self.teacher is None else {"teacher": self.teacher.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "teacher" not in state:
            return
        if self.teacher is None:
            self._pending_state = state
        else:
            self.teacher.load_state_dict(state["teacher"])

    # -- loss ---------------------------------------------------------------------------
    def fadc_batch(self, image: torch.Tensor, labels: torch.Tensor, pseudo: torch.Tensor,
                   step: int):
        """FADC of the batch with this step's draws (see :func:`fadc_sources_as_coded`)."""
        fg_only = self.options.fadc_box == "foreground"
        boxes = scribble_boxes(labels, fg_only)
        rng = random.Random(mix_seed(self.options.seed, step))
        n, _, h, w = image.shape
        sources = fadc_sources_as_coded(rng, n, h, w, _box_nonempty(boxes),
                                        self.options.fadc_max_redraws)
        return fadc(image, labels, pseudo, sources, boxes=boxes)

    def loss(self, net, batch: dict[str, Any], step: int) -> LossOutput:
        opts = self.options
        image = batch["image"]
        labels = known_labels(batch)
        logits, features = net(image)
        pseudo = self.pseudo_labels(image)
        aug = (None, None, None)
        if opts.use_fadc:
            image_aug, labels_aug, pseudo_aug = self.fadc_batch(image, labels, pseudo, step)
            logits_aug, _ = net(image_aug)
            aug = (logits_aug, labels_aug, pseudo_aug)
        total, terms = effdnet_objective(logits, features, labels, pseudo, *aug,
                                         lam=opts.lam, delta=opts.delta,
                                         k=opts.fbsl_k, tau=opts.tau,
                                         use_fbsl=opts.use_fbsl)
        return LossOutput(total=total, terms=detach_terms(terms))
