"""weak.accept (the Review tab's accept, Qt-free) and weak.effort (strokes, seconds)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_weakseg.weak import accept
from napari_weakseg.weak.effort import (Effort, EffortModel, correction_effort,
                                        region_effort, scribble_effort)


def test_accept_corrected_slices_and_merge():
    original = np.zeros((4, 8, 8), np.int64)
    edited = original.copy()
    edited[1, 2:4, 2:4] = 3
    got = accept.accepted_annotation(edited, original, "corrected_slices", 4)
    assert got.kind == "sparse" and got.slices == {1: (0, 1, 2, 3)}
    assert got.data[1, 2, 2] == 4 and got.data[1, 0, 0] == 1 and not got.data[0].any()
    with pytest.raises(ValueError):
        accept.accepted_annotation(original, original, "corrected_slices", 4)
    same = accept.accepted_annotation(original, original, "current_slice", 4, current_slice=2)
    assert same.slices == {2: (0, 1, 2, 3)}

    class Existing:  # a store.Annotation's fields
        data = got.data
        declared_slices = got.slices
        declared_classes = None

    merged = accept.merge_accepted(Existing, same)
    assert merged.slices == {1: (0, 1, 2, 3), 2: (0, 1, 2, 3)}
    assert merged.data[1, 2, 2] == 4 and (merged.data[2] == 1).all()


def test_accept_matches_the_review_panel_logic():
    from napari_weakseg.widgets import logic

    rng = np.random.default_rng(0)
    original = rng.integers(0, 4, (3, 6, 6))
    edited = original.copy()
    edited[2] = 1
    for mode in ("corrected_slices", "corrected_classes", "volume"):
        ours = accept.accepted_annotation(edited, original, mode, 4)
        theirs = logic.accepted_annotation(edited, original, mode, 4)
        assert ours.kind == theirs.kind and ours.slices == theirs.slices
        assert ours.classes == theirs.classes and np.array_equal(ours.data, theirs.data)


def test_scribble_effort_counts_strokes_and_length():
    slice_ = np.zeros((20, 20), np.uint8)
    slice_[5, 2:12] = 2       # one 10-px stroke of class 1
    slice_[15, 3:8] = 1       # one 5-px background stroke
    slice_[10, 15:18] = 2     # a second stroke of class 1
    effort = scribble_effort(slice_)
    assert effort.strokes == 3 and effort.pixels == 18
    assert effort.free_px == pytest.approx(18, abs=2)


def test_region_and_correction_effort():
    mask = np.zeros((12, 12), np.uint8)
    mask[2:6, 2:6] = 4
    region = region_effort(mask)
    assert region.strokes == 1 and region.trace_px == 12  # the 4×4 square's outline
    before = np.zeros((12, 12), np.int64)
    after = before.copy()
    after[2:4, 2:10] = 3      # one band painted in
    after[8, 8] = 1           # one dot
    corrected = correction_effort(before, after, brush_px=2)
    assert corrected.strokes == 2 and corrected.pixels == 17 and corrected.slices == 1
    assert correction_effort(before, before).strokes == 0


def test_effort_model_seconds():
    model = EffortModel(slice_s=2, stroke_s=1, free_speed_px_s=10, trace_speed_px_s=5)
    effort = Effort(strokes=3, pixels=0, free_px=20, trace_px=10, slices=2) + Effort(slices=1)
    assert effort.slices == 3 and effort.length_px == 30
    assert model.seconds(effort) == pytest.approx(3 * 2 + 3 + 2 + 2)
