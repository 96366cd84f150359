"""inference.suggest: slice-ranking measures and whether they find the bad slices."""

from __future__ import annotations

import numpy as np
import pytest

from napari_weakseg.inference import suggest


def _probabilities(confidence_by_slice, size=32, disk=6):
    """(4, Z, Y, X): an LV disk whose probability is ``confidence`` on slice z, the rest
    background at 0.98."""
    z = len(confidence_by_slice)
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size // 2) ** 2 + (xx - size // 2) ** 2 < disk ** 2
    probs = np.zeros((4, z, size, size), np.float32)
    probs[0] = 0.98
    probs[1:] = 0.02 / 3
    for k, confidence in enumerate(confidence_by_slice):
        probs[3, k][inside] = confidence
        probs[0, k][inside] = 1 - confidence - 0.02
        probs[1:3, k][:, inside] = 0.01
    return probs


def test_foreground_entropy_separates_what_mean_entropy_flattens():
    probs = _probabilities([0.97, 0.55, 0.97, 0.9])
    entropy = -(probs * np.log(probs)).sum(axis=0)
    mean = suggest.mean_entropy(entropy)
    fg = suggest.foreground_entropy(probs, entropy)
    assert int(np.argmax(fg)) == 1 and int(np.argmax(mean)) == 1
    # the foreground measure is not diluted by the background pixels
    spread = lambda s: (s.max() - s.min()) / s.mean()  # noqa: E731
    assert spread(fg) > 2 * spread(mean)
    assert suggest.rank_by(fg, exclude=[1])[0][0] == 3


def test_slice_dice_and_flip_disagreement():
    truth = np.zeros((3, 8, 8), np.int64)
    truth[0, 2:6, 2:6] = 3
    pred = truth.copy()
    pred[1, 0, 0] = 1  # a false positive where nothing is
    assert suggest.slice_dice(pred, truth, 4).tolist() == [1.0, 0.0, 1.0]
    shifted = np.roll(pred, 1, axis=2)
    disagreement = suggest.flip_disagreement([pred, pred, shifted], 4)
    assert disagreement[2] == 0 and disagreement[0] > 0 and disagreement[1] == 0.5


def test_ranking_quality_top_k_gap_and_spearman():
    scores = np.array([0.9, 0.1, 0.5, 0.8, 0.2, 0.3])
    dice = np.array([0.2, 0.95, 0.7, 0.4, 0.9, 0.85])  # high score ↔ low Dice
    q = suggest.ranking_quality(scores, dice, top_fraction=1 / 3)
    assert q["spearman"] == pytest.approx(-1.0)
    assert q["n_top"] == 2 and q["top_dice"] == pytest.approx(0.3)
    assert q["gap"] > 0.5
    per_volume = suggest.ranking_quality(scores, dice, groups=["a"] * 3 + ["b"] * 3, top_k=1)
    assert per_volume["n_top"] == 2 and per_volume["top_dice"] == pytest.approx(0.3)
    useless = suggest.ranking_quality(-scores, dice, top_fraction=1 / 3)
    assert useless["gap"] < 0 and useless["spearman"] == pytest.approx(1.0)


def test_unknown_measure_is_refused():
    with pytest.raises(ValueError, match="measures"):
        suggest.slice_scores("nope", None)
