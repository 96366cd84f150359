"""Post-processing by name: none / largest / anatomy, the schema's rules, the records."""

from __future__ import annotations

import numpy as np
import pytest

from napari_weakseg.postprocess import (Postprocessing, enclosed_fraction, fill_enclosed,
                                        keep_largest_component, postprocess_labels)
from napari_weakseg.schema import LabelClass, LabelSchema

CLASSES = LabelSchema.cardiac().names  # background, RV, MYO, LV
RV, MYO, LV = 1, 2, 3


def heart_with_far_blob() -> np.ndarray:
    """A small heart (RV beside an LV inside a MYO ring, 3 slices) and, far away on the
    'chest wall', a blob of LV bigger than the heart's LV (but smaller than the heart)."""
    labels = np.zeros((3, 40, 60), np.uint8)
    yy, xx = np.mgrid[:40, :60]
    r = np.hypot(yy - 20, xx - 20)
    for z in range(3):
        labels[z][r < 9] = MYO
        labels[z][r < 4] = LV          # ~49 px per slice
        labels[z][(np.abs(yy - 20) < 6) & (xx >= 29) & (xx < 36)] = RV  # touches the MYO
    labels[:, 2:12, 48:58] = LV        # the far blob: 100 px per slice > the heart's LV
    return labels


def test_anatomy_removes_a_far_blob_that_largest_keeps():
    labels = heart_with_far_blob()
    heart_lv = (labels[:, :, :40] == LV)
    largest = postprocess_labels(labels, CLASSES, "largest")
    assert (largest[:, 2:12, 48:58] == LV).all()      # largest kept the blob …
    assert not (largest[:, :, :40] == LV).any()       # … and dropped the heart's LV
    anatomy = postprocess_labels(labels, CLASSES, "anatomy")
    assert not anatomy[:, :, 45:].any()               # the blob is gone
    np.testing.assert_array_equal(anatomy[:, :, :40] == LV, heart_lv)
    assert ((anatomy == RV).sum(), (anatomy == MYO).sum()) == \
        ((labels == RV).sum(), (labels == MYO).sum())
    np.testing.assert_array_equal(postprocess_labels(labels, CLASSES, "none"), labels)


def test_anatomy_keeps_every_class_component_inside_the_organ():
    labels = heart_with_far_blob()[:, :, :40].copy()
    labels[1, 19:22, 25:27] = RV  # a second RV piece inside the myocardium ring
    out = postprocess_labels(labels, CLASSES, "anatomy")
    np.testing.assert_array_equal(out, labels)  # nothing outside the organ to remove
    assert (keep_largest_component(labels, 4)[1, 19:22, 25:27] == MYO).sum() == 0


@pytest.mark.parametrize("apply_rules, filled", [(True, True), (False, False)])
def test_enclosed_by_rule_fills_the_cavity_and_can_be_switched_off(apply_rules, filled):
    labels = heart_with_far_blob()[:, :, :40].copy()
    labels[1, 19:22, 19:22] = 0  # a hole in the LV, inside the MYO ring
    post = Postprocessing("anatomy", LabelSchema.cardiac().rules(), apply_rules)
    out = post(labels, CLASSES)
    assert (out[1, 19:22, 19:22] == LV).all() == filled


@pytest.mark.parametrize("rows, expected", [
    # a ring of MYO around LV and a background hole: the hole becomes LV
    (["22222", "23002", "22222"], ["22222", "23332", "22222"]),
    # an open ring: no hole, nothing filled
    (["22222", "23000", "22222"], ["22222", "23000", "22222"]),
    # no MYO on the slice: nothing to do
    (["00300", "03030", "00300"], ["00300", "03030", "00300"]),
])
def test_fill_enclosed(rows, expected):
    plane = np.array([[int(c) for c in row] for row in rows], np.uint8)[None]
    want = np.array([[int(c) for c in row] for row in expected], np.uint8)[None]
    np.testing.assert_array_equal(fill_enclosed(plane, LV, MYO), want)


def test_enclosed_fraction():
    labels = heart_with_far_blob()
    inside = enclosed_fraction(labels[:, :, :40], LV, MYO)
    assert inside == pytest.approx(1.0)
    assert enclosed_fraction(labels, LV, MYO) < 0.5  # the blob is outside any MYO ring
    assert enclosed_fraction(np.zeros((1, 4, 4), np.uint8), LV, MYO) is None


@pytest.mark.parametrize("record, name, rules", [
    (None, "none", {}),                                    # a model from before: as before
    ({"largest_component": True}, "largest", {}),           # the legacy record
    ({"largest_component": False}, "none", {}),
    ({"name": "anatomy", "rules": {"LV": {"enclosed_by": "MYO"}}}, "anatomy",
     {"LV": {"enclosed_by": "MYO"}}),
])
def test_recorded_postprocessing_is_read_back(record, name, rules):
    post = Postprocessing.from_config(record)
    assert (post.name, dict(post.rules)) == (name, rules)
    assert Postprocessing.from_config(post.to_config()) == post


def test_unknown_postprocessing_is_refused():
    with pytest.raises(ValueError, match="unknown post-processing 'blobs'"):
        Postprocessing.from_config({"name": "blobs"})


def test_rules_come_from_the_schema_not_from_names():
    schema = LabelSchema((LabelClass("bg", (0, 0, 0, 1)), LabelClass("wall", (1, 0, 0, 1)),
                          LabelClass("lumen", (0, 1, 0, 1), enclosed_by="wall")))
    assert schema.rules() == {"lumen": {"enclosed_by": "wall"}}
    assert LabelSchema.from_dict(schema.to_dict()) == schema
    assert LabelSchema.from_names(CLASSES).rules() == {}  # no rule unless declared
    assert LabelSchema.cardiac().rules() == {"LV": {"enclosed_by": "MYO"}}
    with pytest.raises(ValueError, match="enclosed_by"):
        LabelSchema((LabelClass("bg", (0, 0, 0, 1)),
                     LabelClass("lumen", (0, 1, 0, 1), enclosed_by="nowhere")))


def test_anatomy_picks_the_confident_organ_over_a_bigger_uncertain_one():
    """Given the softmax, the organ is the component with the most confident volume
    (Σ 2·p − 1), not merely the largest: a big, hesitant false positive loses."""
    labels = np.zeros((3, 40, 80), np.uint8)
    labels[:, :, :40] = heart_with_far_blob()[:, :, :40]
    labels[:, 5:35, 50:75] = MYO                       # a bigger blob, far from the heart
    probabilities = np.full((4,) + labels.shape, 0.01, np.float32)
    for c in range(4):
        probabilities[c][labels == c] = 0.97
    probabilities[MYO][:, 5:35, 50:75] = 0.55          # … that the network hesitates on
    heart = labels[:, :, :40] > 0
    assert (labels[:, :, 40:] > 0).sum() > heart.sum()
    by_size = postprocess_labels(labels, CLASSES, "anatomy")
    assert by_size[:, :, 40:].any() and not by_size[:, :, :40].any()
    confident = postprocess_labels(labels, CLASSES, "anatomy", probabilities=probabilities)
    assert not confident[:, :, 40:].any()
    np.testing.assert_array_equal(confident[:, :, :40], labels[:, :, :40])
