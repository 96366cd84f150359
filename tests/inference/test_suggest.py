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


def _three_structures(areas_by_slice, size=40):
    """(4, Z, Y, X): per slice, a square of the given side per class (RV, MYO, LV) where
    that class has probability 0.6; background 0.97 elsewhere."""
    z = len(areas_by_slice)
    probs = np.zeros((4, z, size, size))
    probs[0] = 0.97
    probs[1:] = 0.01
    for k, sides in enumerate(areas_by_slice):
        for c, side in enumerate(sides, start=1):
            y0 = 2 + 12 * (c - 1)
            region = (slice(y0, y0 + side), slice(2, 2 + side))
            probs[1:, k][(slice(None), *region)] = 0.1
            probs[c, k][region] = 0.6
            probs[0, k][region] = 0.2
    return probs


@pytest.mark.parametrize("sides, expected", [
    # every structure at its full size on slice 0; RV missing on slice 1 (a basal slice
    # above the ventricle); all small (side 5 = a quarter of the area: half of the 0.5
    # share that counts as full) on slice 2
    ([(10, 10, 10), (0, 10, 10), (5, 5, 5)], [1.0, 0.0, 0.5]),
    # a structure the model sees nowhere counts as missing everywhere
    ([(0, 10, 10), (0, 8, 8)], [0.0, 0.0]),
])
def test_structure_presence(sides, expected):
    presence = suggest.structure_presence(_three_structures(sides))
    assert presence == pytest.approx(expected, abs=0.02)


def test_all_structures_entropy_prefers_slices_showing_every_structure():
    probs = _three_structures([(10, 10, 10), (0, 10, 10), (10, 10, 10)])
    probs[:, 2] = probs[:, 0]
    # slice 2: as full as slice 0 but less sure about its LV; slice 1 lacks the RV and is
    # the least sure of all
    probs[3, 2][26:36, 2:12] = 0.45
    probs[0, 2][26:36, 2:12] = 0.35
    probs[3, 1][26:36, 2:12] = 0.3
    probs[0, 1][26:36, 2:12] = 0.5
    entropy = -(probs * np.log(probs)).sum(axis=0)
    foreground = suggest.foreground_entropy(probs, entropy)
    assert int(np.argmax(foreground)) == 1
    scores = suggest.all_structures_entropy(probs, entropy)
    assert [z for z, _ in suggest.rank_by(scores)] == [2, 0, 1]
    assert scores[1] == 0.0
    # reachable by name, as the benchmarks and the Review tab ask for it
    from napari_weakseg.inference.predict import Prediction

    named = suggest.slice_scores("all_structures_entropy",
                                 Prediction(np.argmax(probs, 0), probs, entropy))
    assert named == pytest.approx(scores)


def test_spread_over_volumes():
    scores = {"a": np.array([0.9, 0.8, 0.7]), "b": np.array([0.1, 0.5]),
              "c": np.array([0.95])}
    picks = suggest.spread_over_volumes(scores, 5, exclude={"c": [0]})
    # pass 1: a's best (0.9), b's best (0.5); pass 2: a's next (0.8), b's next (0.1)
    assert picks == [("a", 0), ("b", 1), ("a", 1), ("b", 0), ("a", 2)]
    assert suggest.spread_over_volumes(scores, 99) == [
        ("c", 0), ("a", 0), ("b", 1), ("a", 1), ("b", 0), ("a", 2)]
    assert suggest.spread_over_volumes(scores, 0) == []
    # a model that sees nothing: the middle slices first
    flat = {"a": np.zeros(7), "b": np.zeros(4)}
    assert suggest.spread_over_volumes(flat, 4) == [("a", 3), ("b", 1), ("a", 2), ("b", 2)]


def test_unknown_measure_is_refused():
    with pytest.raises(ValueError, match="measures"):
        suggest.slice_scores("nope", None)
