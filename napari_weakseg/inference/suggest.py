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

:func:`ranking_quality` measures whether top-ranked slices really are the worse ones:
Spearman correlation between score and per-slice Dice (:func:`slice_dice`; negative is
good), and the mean Dice of the top-ranked slices against the rest (a positive ``gap`` =
the suggestions point at worse slices). Numpy (and scipy) only, except :func:`flip_members`,
which predicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

MEASURES = ("mean_entropy", "foreground_entropy", "flip_disagreement")
#: ``1 − p(background)`` from which a pixel counts as possible foreground.
FOREGROUND_THRESHOLD = 0.1


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
    if measure == "foreground_entropy":
        return foreground_entropy(prediction.probabilities, prediction.entropy)
    if not members:
        raise ValueError("flip_disagreement needs the flip members (flip_members)")
    classes = num_classes or members[0].probabilities.shape[0]
    return flip_disagreement([m.labels for m in members], classes)


def rank_by(scores: np.ndarray, exclude: Iterable[int] = ()) -> list[tuple[int, float]]:
    """Slices by score, highest first (``exclude``: already complete)."""
    skip = {int(z) for z in exclude}
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    return [(int(z), float(scores[z])) for z in order if int(z) not in skip]


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


__all__ = ["FOREGROUND_THRESHOLD", "MEASURES", "flip_disagreement", "flip_members",
           "foreground_entropy", "mean_entropy", "needs_members", "rank_by",
           "ranking_quality", "slice_dice", "slice_scores"]
