"""Which slices to annotate next: per-slice ranking measures, and whether they find the bad
slices.

Measures (:data:`MEASURES`, chosen by name in :func:`slice_scores`), each giving one score
per slice, higher = look here first:

* ``mean_entropy`` — the Review tab's measure: the prediction's entropy averaged over the
  whole slice. Dominated by the slice's field of view and by how much boundary it holds
  (a large heart has more uncertain rim pixels), so it is nearly flat across slices.
* ``foreground_entropy`` — entropy averaged only over the pixels that may be foreground
  (``1 − p(background) ≥ threshold``): how unsure the model is *about the structures*,
  independent of their size. A slice with no possible foreground scores 0.
* ``flip_disagreement`` — flip test-time augmentation: the slice is predicted as is,
  flipped left-right and up-down (three passes through the one ``Predictor``); score =
  1 − the mean foreground Dice between the plain label map and each flipped one (classes
  present in either). Costs three predictions instead of one.
* ``all_structures_entropy`` — for choosing slices to *scribble*: ``foreground_entropy``
  times :func:`structure_presence`, how fully the slice shows every foreground structure
  (1 when each class's predicted area there is at least :data:`PRESENCE_FRACTION` of its
  largest over the volume). The most uncertain slices are mostly the volume's ends —
  basal slices above the ventricles, the apex — where a scribble is nearly all
  background; a fine-tune on a handful of those unlearns the structures they lack (the RV
  was lost after one such round on ACDC, docs/results.md). This measure prefers uncertain
  slices that show every structure, so each round's strokes teach every class.

:func:`ranking_quality` measures whether top-ranked slices really are the worse ones:
Spearman correlation between score and per-slice Dice (:func:`slice_dice`; negative is
good), and the mean Dice of the top-ranked slices against the rest (a positive ``gap`` =
the suggestions point at worse slices). Numpy (and scipy) only, except :func:`flip_members`,
which predicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum

import numpy as np

MEASURES = ("mean_entropy", "foreground_entropy", "flip_disagreement",
            "all_structures_entropy")
#: ``1 − p(background)`` from which a pixel counts as possible foreground.
FOREGROUND_THRESHOLD = 0.1
#: Share of a structure's largest expected area (over the volume's slices) from which a
#: slice counts as showing it fully (:func:`structure_presence`).
PRESENCE_FRACTION = 0.5


class SuggestFor(str, Enum):
    """What the suggested slices are for; each purpose has its measure
    (:data:`MEASURE_FOR`)."""

    #: correct the prediction and accept it: the slices the model is most unsure about
    CORRECTION = "correction"
    #: scribble and fine-tune: unsure slices that show every structure
    SCRIBBLES = "scribbles"


#: The ranking measure of each purpose. Correction: ``foreground_entropy`` finds the bad
#: slices (docs/results.md: top 2 per volume Dice 0.54 vs 0.86); scribbles:
#: ``all_structures_entropy`` (the most uncertain slices made a scribble fine-tune of the
#: zoo model lose the RV; these do not).
MEASURE_FOR = {SuggestFor.CORRECTION: "foreground_entropy",
               SuggestFor.SCRIBBLES: "all_structures_entropy"}


def _entropy(probabilities: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probabilities, np.float64), 1e-12, None)
    return -(p * np.log(p)).sum(axis=0)


def mean_entropy(entropy: np.ndarray) -> np.ndarray:
    """(Z,) mean entropy per slice (the Review tab's measure)."""
    entropy = np.asarray(entropy, dtype=np.float64)
    return entropy.reshape(len(entropy), -1).mean(axis=1)


def foreground_entropy(probabilities: np.ndarray, entropy: np.ndarray | None = None,
                       threshold: float = FOREGROUND_THRESHOLD) -> np.ndarray:
    """(Z,) entropy averaged over each slice's possible-foreground pixels
    (``probabilities`` (C, Z, Y, X), class 0 = background); 0 where there are none."""
    probabilities = np.asarray(probabilities)
    if entropy is None:
        entropy = _entropy(probabilities)
    entropy = np.asarray(entropy, dtype=np.float64)
    region = (1.0 - probabilities[0]) >= threshold
    flat_region = region.reshape(len(region), -1)
    counts = flat_region.sum(axis=1)
    sums = np.where(flat_region, entropy.reshape(len(entropy), -1), 0.0).sum(axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)


def structure_presence(probabilities: np.ndarray,
                       fraction: float = PRESENCE_FRACTION) -> np.ndarray:
    """(Z,) in [0, 1]: how fully each slice shows *every* foreground structure.

    ``probabilities`` (C, Z, Y, X), class 0 = background. Per class, the slice's predicted
    area (pixels where the class is the most probable) over ``fraction`` × the class's
    largest predicted area in the volume, clipped to 1; the slice's value is the minimum
    over the classes (a class predicted nowhere in the volume counts as 0 everywhere).
    Argmax areas, not summed probabilities: a faint probability spread over a large field
    of view would otherwise count as a structure."""
    probabilities = np.asarray(probabilities)
    classes, depth = probabilities.shape[:2]
    if classes < 2:
        return np.ones(depth)
    labels = np.argmax(probabilities, axis=0).reshape(depth, -1)
    area = np.stack([(labels == c).sum(axis=1) for c in range(1, classes)]
                    ).astype(np.float64)                                   # (C − 1, Z)
    peak = area.max(axis=1, keepdims=True)
    share = np.where(peak > 0, area / np.maximum(fraction * peak, 1e-12), 0.0)
    return np.clip(share, 0.0, 1.0).min(axis=0)


def all_structures_entropy(probabilities: np.ndarray, entropy: np.ndarray | None = None
                           ) -> np.ndarray:
    """(Z,) :func:`foreground_entropy` × :func:`structure_presence`: uncertain slices that
    show every structure first (the slices worth scribbling)."""
    return foreground_entropy(probabilities, entropy) * structure_presence(probabilities)


#: The measures computed from one prediction's probabilities (and entropy).
_FROM_PROBABILITIES = {"foreground_entropy": foreground_entropy,
                       "all_structures_entropy": all_structures_entropy}


def _slice_fg_dice(a: np.ndarray, b: np.ndarray, num_classes: int) -> float:
    """Mean Dice over foreground classes present in either 2D map (1.0 when none is)."""
    scores = []
    for c in range(1, num_classes):
        x, y = a == c, b == c
        total = int(x.sum()) + int(y.sum())
        if total:
            scores.append(2.0 * float((x & y).sum()) / total)
    return float(np.mean(scores)) if scores else 1.0


def slice_dice(prediction: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """(Z,) per-slice Dice of label maps: mean over foreground classes present in the
    prediction or the truth of that slice; 1.0 for a slice where both are empty."""
    prediction, truth = np.asarray(prediction), np.asarray(truth)
    return np.array([_slice_fg_dice(p, t, num_classes) for p, t in zip(prediction, truth)])


def flip_disagreement(member_labels: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """(Z,) 1 − mean foreground Dice between the first label map and each other one."""
    first, others = member_labels[0], member_labels[1:]
    if not others:
        return np.zeros(len(first))
    return np.array([1.0 - np.mean([_slice_fg_dice(first[z], o[z], num_classes)
                                    for o in others]) for z in range(len(first))])


def flip_members(predictor, image: np.ndarray, spacing=None) -> list:
    """Three predictions of ``image`` (Z, Y, X) through ``predictor``: plain, left-right
    and up-down flipped (mapped back). Each is a ``Prediction`` (raw argmax labels and
    probabilities, no post-processing)."""
    from .predict import Prediction

    members = []
    for axis in (None, 2, 1):
        flipped = image if axis is None else np.flip(image, axis=axis)
        prediction = predictor.predict(np.ascontiguousarray(flipped), spacing,
                                       postprocess="none", flip_tta=False)
        if axis is not None:
            prediction = Prediction(
                np.ascontiguousarray(np.flip(prediction.labels, axis)),
                np.ascontiguousarray(np.flip(prediction.probabilities, axis + 1)),
                np.ascontiguousarray(np.flip(prediction.entropy, axis)))
        members.append(prediction)
    return members


def slice_scores(measure: str, prediction=None, *, members: Sequence | None = None,
                 num_classes: int | None = None) -> np.ndarray:
    """(Z,) scores of ``measure`` (:data:`MEASURES`). ``prediction``: a ``Prediction``
    (probabilities and entropy); ``members``: the :func:`flip_members` of the volume
    (``flip_disagreement``; also usable for the other measures, from the first member)."""
    if measure not in MEASURES:
        raise ValueError(f"unknown ranking measure {measure!r}; measures: "
                         f"{', '.join(MEASURES)}")
    if prediction is None and members:
        prediction = members[0]
    if measure == "mean_entropy":
        return mean_entropy(prediction.entropy)
    if measure in _FROM_PROBABILITIES:
        return _FROM_PROBABILITIES[measure](prediction.probabilities, prediction.entropy)
    if not members:
        raise ValueError("flip_disagreement needs the flip members (flip_members)")
    classes = num_classes or members[0].probabilities.shape[0]
    return flip_disagreement([m.labels for m in members], classes)


def purpose_scores(purpose: SuggestFor | str, probabilities: np.ndarray,
                   entropy: np.ndarray | None = None) -> np.ndarray:
    """(Z,) scores of the measure for ``purpose`` (:data:`MEASURE_FOR`) from a prediction's
    ``probabilities`` (C, Z, Y, X) and ``entropy`` (Z, Y, X; computed when ``None``)."""
    return _FROM_PROBABILITIES[MEASURE_FOR[SuggestFor(purpose)]](probabilities, entropy)


def rank_by(scores: np.ndarray, exclude: Iterable[int] = ()) -> list[tuple[int, float]]:
    """Slices by score, highest first (``exclude``: already complete)."""
    skip = {int(z) for z in exclude}
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    return [(int(z), float(scores[z])) for z in order if int(z) not in skip]


def spread_over_volumes(scores: dict, k: int, exclude: dict | None = None
                        ) -> list[tuple[str, int]]:
    """``k`` ``(volume, z)`` picks from per-volume slice ``scores`` ((Z,) each, higher
    first), spread over the volumes: each pass takes every volume's best remaining slice,
    volumes in order of that slice's score, so no volume gets a second pick before every
    volume with slices left has one. ``exclude``: volume → slices already done. Equal
    scores within a volume go to the slice nearer its middle (a model that sees nothing
    yet scores every slice 0; the middle slices show every structure), then the lower z;
    across volumes, to the volume name."""
    remaining = {}
    for name, values in scores.items():
        values = np.asarray(values, dtype=np.float64)
        done = {int(z) for z in (exclude or {}).get(name, ())}
        middle = (len(values) - 1) / 2
        remaining[name] = sorted((z for z in range(len(values)) if z not in done),
                                 key=lambda z, v=values, m=middle: (-v[z], abs(z - m), z))
    picks: list[tuple[str, int]] = []
    while len(picks) < k and any(remaining.values()):
        heads = sorted((-float(scores[name][zs[0]]), name) for name, zs in remaining.items()
                       if zs)
        for _, name in heads:
            if len(picks) == k:
                break
            picks.append((name, remaining[name].pop(0)))
    return picks


def needs_members(measure: str) -> bool:
    """Whether ``measure`` needs :func:`flip_members` (three predictions per volume)."""
    return measure == "flip_disagreement"


def ranking_quality(scores: Sequence[float], dice: Sequence[float], *,
                    groups: Sequence | None = None, top_k: int | None = None,
                    top_fraction: float = 0.2) -> dict:
    """Do high scores mark low-Dice slices?

    ``scores``/``dice``: one value per slice (pooled over volumes); ``groups``: the volume
    of each slice — then the top ``top_k`` slices *of each volume* (as the Review tab
    suggests per volume) are compared with the rest; without groups the top ``top_fraction``
    of all slices. Returns ``spearman`` (score vs Dice, pooled; negative = high scores on
    bad slices), ``top_dice``, ``rest_dice``, ``gap`` (rest − top; positive = the ranking
    finds worse slices), ``n``, ``n_top``.
    """
    from scipy.stats import spearmanr

    scores = np.asarray(scores, dtype=np.float64)
    dice = np.asarray(dice, dtype=np.float64)
    if scores.shape != dice.shape or scores.ndim != 1:
        raise ValueError("scores and dice need one value per slice each")
    n = len(scores)
    top = np.zeros(n, bool)
    if groups is not None:
        groups = np.asarray(groups)
        k = top_k or 1
        for group in dict.fromkeys(groups.tolist()):
            index = np.flatnonzero(groups == group)
            order = index[np.argsort(-scores[index], kind="stable")]
            top[order[:k]] = True
    else:
        k = top_k or max(1, int(round(top_fraction * n)))
        top[np.argsort(-scores, kind="stable")[:k]] = True
    if n > 2 and np.ptp(scores) > 0 and np.ptp(dice) > 0:
        rho = float(spearmanr(scores, dice).statistic)
    else:
        rho = float("nan")
    top_dice = float(dice[top].mean()) if top.any() else float("nan")
    rest_dice = float(dice[~top].mean()) if (~top).any() else float("nan")
    return {"spearman": rho, "top_dice": top_dice, "rest_dice": rest_dice,
            "gap": rest_dice - top_dice, "n": int(n), "n_top": int(top.sum())}


__all__ = ["FOREGROUND_THRESHOLD", "MEASURES", "MEASURE_FOR", "PRESENCE_FRACTION",
           "SuggestFor", "all_structures_entropy", "flip_disagreement", "flip_members",
           "foreground_entropy", "mean_entropy", "needs_members", "purpose_scores",
           "rank_by", "ranking_quality", "slice_dice", "slice_scores", "spread_over_volumes",
           "structure_presence"]
