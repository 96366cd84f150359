"""The annotation encoding of every kind (docs/annotations.md)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_weakseg.methods.base import ANNOTATION_KINDS
from napari_weakseg.weak.encoding import (KINDS, AnnotationValueError, decode_classes,
                                          decode_not_classes, encode_classes,
                                          encode_not_classes, from_wsl4mis, max_value,
                                          not_class_value, storage_dtype, to_wsl4mis,
                                          validate_annotation, validate_ground_truth)

C = 4  # cardiac: background, RV, MYO, LV


def test_kinds_match_the_method_interface():
    assert tuple(KINDS) == tuple(ANNOTATION_KINDS)


@pytest.mark.parametrize("kind, top, dtype", [
    ("scribble", 4, np.uint8), ("coarse_pos", 4, np.uint8), ("partial", 4, np.uint8),
    ("sparse", 4, np.uint8), ("dense", 4, np.uint8), ("coarse_neg", 14, np.uint8),
])
def test_value_range_per_kind(kind, top, dtype):
    assert max_value(kind, C) == top
    assert storage_dtype(kind, C) == dtype
    ok = np.zeros((2, 3, 3), np.int64)
    ok[0, 0, 0] = top
    stored = validate_annotation(kind, ok, C)
    assert stored.dtype == dtype and stored[0, 0, 0] == top
    too_big = ok.copy()
    too_big[1, 1, 1] = top + 1
    with pytest.raises(AnnotationValueError, match=rf"{top + 1} \(1 voxels\)"):
        validate_annotation(kind, too_big, C, source="file.nii.gz")


@pytest.mark.parametrize("array, message", [
    (np.full((1, 2, 2), -1), "outside the label schema"),
    (np.full((1, 2, 2), 1.5), "non-integer"),
    (np.full((1, 2, 2), np.nan), "non-integer"),
    (np.ones((2, 2), np.uint8), "3D"),
    (np.array([["a"]]), "dtype"),
])
def test_bad_arrays_are_refused_naming_the_source(array, message):
    with pytest.raises(AnnotationValueError, match=message) as info:
        validate_annotation("scribble", array, C, source="my_scribble.nii.gz")
    assert "my_scribble.nii.gz" in str(info.value)


def test_integral_floats_and_bools_are_accepted():
    assert validate_annotation("scribble", np.full((1, 2, 2), 3.0), C).dtype == np.uint8
    assert validate_annotation("partial", np.ones((1, 2, 2), bool), C).max() == 1


def test_coarse_neg_all_bits_is_a_contradiction():
    with pytest.raises(AnnotationValueError, match="not any class"):
        validate_annotation("coarse_neg", np.full((1, 1, 1), 15), C)


def test_coarse_neg_supports_at_most_16_classes():
    assert storage_dtype("coarse_neg", 9) == np.uint16
    with pytest.raises(ValueError, match="16"):
        max_value("coarse_neg", 17)


@pytest.mark.parametrize("classes, expected", [
    ([-1, 0, 1, 3], [0, 1, 2, 4]),  # −1 unannotated; annotated background is 1
    ([2, -1], [3, 0]),
])
def test_class_encoding_round_trip(classes, expected):
    classes = np.array(classes)
    stored = encode_classes(classes)
    assert stored.tolist() == expected
    assert decode_classes(stored).tolist() == classes.tolist()


def test_class_encoding_with_a_mask():
    assert encode_classes(np.array([0, 1, 2]), mask=np.array([True, False, True])).tolist() \
        == [1, 0, 3]


@pytest.mark.parametrize("excluded_classes, value", [
    ((), 0), ((0,), 1), ((1,), 2), ((3,), 8), ((1, 3), 10), ((1, 2, 3), 14),
])
def test_not_class_bitmask(excluded_classes, value):
    excluded = np.zeros((C, 1, 1, 1), bool)
    for c in excluded_classes:
        excluded[c] = True
    assert int(encode_not_classes(excluded)[0, 0, 0]) == value
    assert int(sum(not_class_value(c) for c in excluded_classes)) == value
    decoded = decode_not_classes(np.full((1, 1, 1), value), C)
    assert decoded.shape == (C, 1, 1, 1)
    assert set(np.flatnonzero(decoded[:, 0, 0, 0])) == set(excluded_classes)


@pytest.mark.parametrize("wsl, ours", [
    ([0, 1, 2, 3, 4], [1, 2, 3, 4, 0]),
    ([4, 4, 0], [0, 0, 1]),
])
def test_wsl4mis_convention_round_trip(wsl, ours):
    assert from_wsl4mis(np.array(wsl), C).tolist() == ours
    assert to_wsl4mis(np.array(ours), C).tolist() == wsl


def test_wsl4mis_generator_ignore_value_can_be_accepted():
    assert from_wsl4mis(np.array([255, 0]), C, unannotated=(4, 255)).tolist() == [0, 1]
    with pytest.raises(AnnotationValueError, match="255"):
        from_wsl4mis(np.array([255, 0]), C, source="gen.nii.gz")


@pytest.mark.parametrize("values, ok", [([0, 3], True), ([4], False), ([-1], False)])
def test_ground_truth_values(values, ok):
    array = np.array(values).reshape(1, 1, -1)
    if ok:
        assert validate_ground_truth(array, C).tolist() == array.tolist()
    else:
        with pytest.raises(AnnotationValueError, match="outside the label schema"):
            validate_ground_truth(array, C, source="gt.nii.gz")
