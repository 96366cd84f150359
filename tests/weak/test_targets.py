"""Annotations → per-volume training targets (the batch keys of methods/base.py in 3D)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_weakseg.weak.targets import (SimpleAnnotation, VolumeTargets, build_targets,
                                         dense_targets)

C = 4
SHAPE = (3, 2, 3)  # Z, Y, X


def vol(*slices) -> np.ndarray:
    """Stack 2×3 slices given as nested lists."""
    return np.array(slices, dtype=np.uint8)


EMPTY = [[0, 0, 0], [0, 0, 0]]
GT_SLICE = [[1, 1, 2], [3, 4, 1]]  # stored encoding of classes [[0,0,1],[2,3,0]]


def check_contract(t: VolumeTargets, P: int = 0, Q: int = 0) -> None:
    """Shapes and dtypes of methods/base.py's batch keys (with Z in front)."""
    assert t.labels.shape == SHAPE and t.labels.dtype == np.int64
    assert t.annotated.shape == (SHAPE[0], C) and t.annotated.dtype == bool
    assert t.valid.shape == SHAPE and t.valid.dtype == bool
    assert t.coarse_pos.shape == (P,) + SHAPE and t.coarse_pos.dtype == np.int64
    assert t.coarse_neg.shape == (Q, C) + SHAPE and t.coarse_neg.dtype == bool
    sample = t.slice(1)
    assert sample["labels"].shape == SHAPE[1:] and sample["annotated"].shape == (C,)
    assert sample["coarse_pos"].shape == (P,) + SHAPE[1:]
    assert sample["coarse_neg"].shape == (Q, C) + SHAPE[1:]


# (annotation, expected labels per slice, annotated per slice, valid slices)
CASES = {
    "scribble": (
        SimpleAnnotation("scribble", vol(EMPTY, [[1, 0, 0], [0, 4, 0]], EMPTY)),
        [[[-1] * 3] * 2, [[0, -1, -1], [-1, 3, -1]], [[-1] * 3] * 2],
        [[]] * 3, [False, True, False]),
    "partial declared": (
        SimpleAnnotation("partial", vol(EMPTY, [[0, 4, 4], [0, 0, 0]], EMPTY),
                         declared_classes=(3,)),
        [[[-1] * 3] * 2, [[-1, 3, 3], [-1, -1, -1]], [[-1] * 3] * 2],
        [[3]] * 3, [True, True, True]),
    "partial declared but absent": (  # LV declared complete, absent: real information
        SimpleAnnotation("partial", vol(EMPTY, [[2, 0, 0], [0, 0, 0]], EMPTY),
                         declared_classes=(1, 3)),
        [[[-1] * 3] * 2, [[1, -1, -1], [-1, -1, -1]], [[-1] * 3] * 2],
        [[1, 3]] * 3, [True, True, True]),
    "partial fallback to present": (
        SimpleAnnotation("partial", vol(EMPTY, [[2, 0, 0], [0, 0, 0]], EMPTY)),
        [[[-1] * 3] * 2, [[1, -1, -1], [-1, -1, -1]], [[-1] * 3] * 2],
        [[1]] * 3, [True, True, True]),
    "partial all foreground → background completes": (
        SimpleAnnotation("partial", vol(EMPTY, [[2, 3, 0], [4, 0, 0]], EMPTY),
                         declared_classes=(1, 2, 3)),
        [[[0] * 3] * 2, [[1, 2, 0], [3, 0, 0]], [[0] * 3] * 2],
        [[0, 1, 2, 3]] * 3, [True, True, True]),
    "sparse declared slices": (
        SimpleAnnotation("sparse", vol(GT_SLICE, [[4, 0, 0], [0, 0, 0]], [[0, 4, 0], [0, 0, 2]]),
                         declared_slices={0: (1, 2, 3), 2: (3,)}),
        [[[0, 0, 1], [2, 3, 0]], [[-1] * 3] * 2, [[-1, 3, -1], [-1, -1, 1]]],
        [[0, 1, 2, 3], [], [3]], [True, False, True]),
    "sparse fallback to labelled slices": (
        SimpleAnnotation("sparse", vol(EMPTY, [[4, 0, 0], [0, 0, 0]], EMPTY)),
        [[[-1] * 3] * 2, [[3, -1, -1], [-1, -1, -1]], [[-1] * 3] * 2],
        [[], [3], []], [False, True, False]),
    "dense": (
        SimpleAnnotation("dense", vol(GT_SLICE, GT_SLICE, GT_SLICE)),
        [[[0, 0, 1], [2, 3, 0]]] * 3, [[0, 1, 2, 3]] * 3, [True, True, True]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_labels_annotated_valid_per_kind(name):
    annotation, labels, annotated, valid = CASES[name]
    t = build_targets([annotation], C)
    check_contract(t)
    assert t.labels.tolist() == labels
    expected = np.zeros((SHAPE[0], C), bool)
    for z, classes in enumerate(annotated):
        expected[z, list(classes)] = True
    assert t.annotated.tolist() == expected.tolist()
    assert t.valid.all(axis=(1, 2)).tolist() == valid
    assert t.kinds == (annotation.kind,)
    assert t.conflicts == 0


def test_coarse_pos_channels_follow_the_strategy_list():
    a = SimpleAnnotation("coarse_pos", vol(EMPTY, [[2, 0, 0], [0, 0, 4]], EMPTY), strategy="r2")
    t = build_targets([a], C, pos_strategies=["r1", "r2"])
    check_contract(t, P=2)
    assert (t.coarse_pos[0] == -1).all()  # strategy r1 absent from this volume
    assert t.coarse_pos[1, 1].tolist() == [[1, -1, -1], [-1, -1, 3]]
    assert (t.labels == -1).all() and not t.annotated.any()
    assert t.valid.all(axis=(1, 2)).tolist() == [False, True, False]
    with pytest.raises(ValueError, match="not in the channel list"):
        build_targets([a], C, pos_strategies=["r1"])


def test_coarse_neg_decodes_bits_per_strategy():
    a = SimpleAnnotation("coarse_neg", vol(EMPTY, [[14, 8, 0], [0, 0, 1]], EMPTY))
    t = build_targets([a], C)
    check_contract(t, Q=1)
    neg = t.coarse_neg[0, :, 1]  # (C, Y, X)
    assert neg[:, 0, 0].tolist() == [False, True, True, True]  # not RV, MYO, LV
    assert neg[:, 0, 1].tolist() == [False, False, False, True]  # not LV
    assert neg[:, 1, 2].tolist() == [True, False, False, False]  # not background
    assert not neg[:, 0, 2].any()


@pytest.mark.parametrize("kind, data, expected", [
    ("coarse_pos", [[2, 0, 0], [0, 0, 4]], [[1, -1, -1], [-1, -1, 3]]),
    # only "not RV, MYO, LV" (14) leaves a single class: background
    ("coarse_neg", [[14, 8, 0], [12, 0, 0]], [[0, -1, -1], [-1, -1, -1]]),
])
def test_as_labels_reduces_coarse_kinds_to_labelled_voxels(kind, data, expected):
    a = SimpleAnnotation(kind, vol(EMPTY, data, EMPTY))
    t = build_targets([a], C, as_labels={kind})
    check_contract(t)  # no coarse channels left
    assert t.labels[1].tolist() == expected


def test_several_kinds_combine_and_conflicts_are_dropped():
    scribble = SimpleAnnotation("scribble", vol([[2, 0, 0], [0, 0, 0]], EMPTY, EMPTY))
    partial = SimpleAnnotation("partial", vol([[4, 4, 0], [0, 0, 0]], EMPTY, EMPTY),
                               declared_classes=(3,))
    coarse = SimpleAnnotation("coarse_pos", vol(EMPTY, EMPTY, [[2, 0, 0], [0, 0, 0]]))
    t = build_targets([scribble, partial, coarse], C)
    check_contract(t, P=1)
    assert t.conflicts == 1
    assert t.labels[0, 0].tolist() == [-1, 3, -1]  # RV scribble vs LV partial: dropped
    assert not t.valid[0, 0, 0] and t.valid[0, 0, 1]
    assert t.annotated[:, 3].all() and not t.annotated[:, :3].any()
    assert t.kinds == ("scribble", "coarse_pos", "partial")
    assert t.coarse_pos[0, 2, 0, 0] == 1


def test_declarations_union_across_annotations():
    partial = SimpleAnnotation("partial", vol(EMPTY, EMPTY, EMPTY) + 0, declared_classes=(3,))
    sparse = SimpleAnnotation("sparse", vol(EMPTY, [[2, 3, 0], [0, 0, 0]], EMPTY),
                              declared_slices={1: (1, 2)})
    t = build_targets([partial, sparse], C)
    assert t.annotated[1].tolist() == [True, True, True, True]  # LV + RV/MYO → complete
    assert t.labels[1].tolist() == [[1, 2, 0], [0, 0, 0]]
    assert t.annotated[0].tolist() == [False, False, False, True]


def test_kinds_filter_and_errors():
    scribble = SimpleAnnotation("scribble", vol([[2, 0, 0], [0, 0, 0]], EMPTY, EMPTY))
    partial = SimpleAnnotation("partial", vol([[4, 4, 0], [0, 0, 0]], EMPTY, EMPTY))
    t = build_targets([scribble, partial], C, kinds={"scribble"})
    assert t.kinds == ("scribble",) and not t.annotated.any()
    with pytest.raises(ValueError, match="two scribble"):
        build_targets([scribble, scribble], C)
    with pytest.raises(ValueError, match="shape"):
        build_targets([scribble, SimpleAnnotation("partial", np.zeros((1, 2, 3)))], C)
    with pytest.raises(ValueError, match="no annotations"):
        build_targets([], C)
    empty = build_targets([], C, SHAPE)
    assert not empty.valid.any() and (empty.labels == -1).all()
    assert empty.supervised_slices().tolist() == []


def test_dense_targets_from_ground_truth():
    gt = np.array([[[0, 1, 2], [3, 0, 0]]] * 3)
    t = dense_targets(gt, C)
    assert (t.labels == gt).all() and t.annotated.all() and t.valid.all()
    assert t.supervised_slices().tolist() == [0, 1, 2]
