"""Seeded weak-label simulation from dense masks."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.morphology import disk, skeletonize

from napari_weakseg.weak.encoding import decode_classes, decode_not_classes, validate_annotation
from napari_weakseg.weak.simulate import (morphomnist_radius, simulate, simulate_coarse_neg,
                                          simulate_coarse_pos, simulate_partial,
                                          simulate_scribbles, simulate_sparse)
from napari_weakseg.weak.targets import build_targets
from tests.store.helpers import TINY_SPACING, tiny_case

C = 4


@pytest.fixture(scope="module")
def gt() -> np.ndarray:
    return tiny_case(3).ground_truth.astype(np.int64)


@pytest.fixture(scope="module")
def big_gt() -> np.ndarray:
    from napari_weakseg.synthetic import make_cardiac_volume

    return make_cardiac_volume(5, shape=(3, 128, 128)).ground_truth.astype(np.int64)


def test_scribbles_are_seeded(big_gt):
    a = simulate_scribbles(big_gt, C, seed=1)
    assert np.array_equal(a, simulate_scribbles(big_gt, C, seed=1))
    assert not np.array_equal(a, simulate_scribbles(big_gt, C, seed=2))


@pytest.mark.parametrize("connectivity", [4, 8])
def test_scribbles_are_thin_strokes_inside_each_class(big_gt, connectivity):
    s = simulate_scribbles(big_gt, C, seed=0, connectivity=connectivity,
                           spacing=(10.0, 1.5625, 1.5625))
    validate_annotation("scribble", s, C)
    classes = decode_classes(s)
    stroked = classes >= 0
    assert (classes[stroked] == big_gt[stroked]).all()  # precision 1
    for z in range(big_gt.shape[0]):
        for c in range(C):
            if (big_gt[z] == c).sum() >= 50:
                stroke = classes[z] == c
                assert stroke.sum() >= 10, (z, c)  # every present structure is scribbled
                # a stroke, not an area: one pixel wide (4-connected: ≤ 2 px per step)
                assert stroke.sum() <= (2.0 if connectivity == 4 else 1.2) \
                    * skeletonize(stroke).sum() + 2
                assert stroke.sum() < 0.5 * (big_gt[z] == c).sum()


def test_scribbles_on_slices_without_foreground_circle_the_heart(big_gt):
    gt = big_gt.copy()
    gt[0] = 0
    s = simulate_scribbles(gt, C, seed=0)
    assert set(np.unique(s[0])) == {0, 1}  # only background strokes


def test_scribble_classes_option(big_gt):
    s = simulate_scribbles(big_gt, C, seed=0, classes=[3])
    assert set(np.unique(s)) == {0, 4}


@pytest.mark.parametrize("amount, expected", [(0.7, 8), (0.5, 6), (0.1, 1), (0.0, 0)])
def test_morphomnist_radius_of_a_disk(amount, expected):
    # the skeleton of a disk of radius 12 is its centre, 12.04 px from the background
    image = np.pad(disk(12), 5).astype(bool)
    assert morphomnist_radius(image, amount) == expected
    assert morphomnist_radius(np.zeros((5, 5), bool)) == 0


def test_coarse_pos_default_follows_the_morphomnist_rule(big_gt):
    coarse = simulate_coarse_pos(big_gt, C, classes=[1, 2, 3])
    classes = decode_classes(coarse)
    known = classes >= 0
    assert (classes[known] == big_gt[known]).all()  # erosion stays inside
    for z in range(big_gt.shape[0]):
        for c in (1, 2, 3):
            region = big_gt[z] == c
            if region.sum() > 100:
                r = morphomnist_radius(region)
                from scipy import ndimage

                expected = ndimage.binary_erosion(region, disk(r), border_value=1) if r else region
                assert np.array_equal(classes[z] == c, expected)
    assert not (classes == 0).any()  # background not asked for


@pytest.mark.parametrize("kwargs", [{"radius": 2}, {"radius_mm": 8.0, "spacing": TINY_SPACING}])
def test_coarse_pos_radius_in_px_or_mm(gt, kwargs):
    coarse = decode_classes(simulate_coarse_pos(gt, C, **kwargs))
    known = coarse >= 0
    assert (coarse[known] == gt[known]).all()
    assert known.sum() < gt.size
    for c in range(C):
        assert (coarse == c).sum() <= (gt == c).sum()


def test_coarse_pos_mm_radius_needs_spacing(gt):
    with pytest.raises(ValueError, match="spacing"):
        simulate_coarse_pos(gt, C, radius_mm=3.0)


def test_coarse_neg_never_excludes_the_true_class(big_gt):
    neg = simulate_coarse_neg(big_gt, C, radius=3)
    validate_annotation("coarse_neg", neg, C)
    excluded = decode_not_classes(neg, C)
    true = np.take_along_axis(excluded, big_gt[None], axis=0)[0]
    assert not true.any()
    # far from the heart a voxel is "not RV, not MYO, not LV" (bits 1 + 2 + 3 = 14)
    assert neg[0, 0, 0] == 14
    # every class is excluded somewhere; within 3 px of the LV nothing says "not LV"
    from scipy import ndimage

    for z in range(big_gt.shape[0]):
        near_lv = ndimage.binary_dilation(big_gt[z] == 3, disk(3))
        assert not excluded[3, z][near_lv].any()
        assert excluded[3, z][~near_lv].all()


def test_partial_keeps_the_chosen_classes(gt):
    sim = simulate_partial(gt, C, keep=[3, 2])
    assert sim.declared_classes == (2, 3)
    classes = decode_classes(sim.data)
    assert np.array_equal(classes >= 0, np.isin(gt, [2, 3]))


@pytest.mark.parametrize("kwargs, slices", [
    ({"every": 2}, [0, 2]),
    ({"every": 2, "offset": 1}, [1, 3]),
    ({"slices": [3]}, [3]),
    ({"fraction": 0.5, "seed": 0}, None),
])
def test_sparse_slices(gt, kwargs, slices):
    sim = simulate_sparse(gt, C, **kwargs)
    declared = sorted(sim.declared_slices)
    if slices is not None:
        assert declared == slices
    else:
        assert len(declared) == 2
    for z in range(gt.shape[0]):
        if z in sim.declared_slices:
            assert np.array_equal(decode_classes(sim.data[z]) >= 0, gt[z] > 0)
        else:
            assert not sim.data[z].any()


def test_sparse_per_slice_class_subsets(gt):
    sim = simulate_sparse(gt, C, every=1, slice_classes=1, seed=4)
    for z, classes in sim.declared_slices.items():
        assert len(classes) == 1
        assert set(np.unique(sim.data[z])) <= {0, classes[0] + 1}
    sim = simulate_sparse(gt, C, slices=[0, 1], slice_classes={0: [3]})
    assert sim.declared_slices == {0: (3,), 1: (1, 2, 3)}


@pytest.mark.parametrize("kind, options", [
    ("scribble", {"seed": 0}),
    ("coarse_pos", {}),
    ("coarse_neg", {"radius": 2}),
    ("partial", {"keep": [1, 3]}),
    ("sparse", {"every": 2, "slice_classes": 2}),
    ("dense", {}),
])
def test_targets_of_simulated_annotations_agree_with_the_truth(gt, kind, options):
    sim = simulate(kind, gt, C, **options)
    validate_annotation(kind, sim.data, C)
    t = build_targets([sim], C)
    known = t.labels >= 0
    assert (t.labels[known] == gt[known]).all()
    if kind == "coarse_pos":
        coarse = t.coarse_pos[0]
        assert (coarse[coarse >= 0] == gt[coarse >= 0]).all()
    if kind == "coarse_neg":
        assert not np.take_along_axis(t.coarse_neg[0], gt[None], axis=0).any()
    # a class declared complete on a valid slice is fully labelled there
    for z in range(gt.shape[0]):
        for c in np.flatnonzero(t.annotated[z]):
            if t.valid[z].any():
                assert (t.labels[z][gt[z] == c] == c).all(), (kind, z, c)


def test_bad_masks_are_refused():
    with pytest.raises(ValueError, match="3D"):
        simulate_scribbles(np.zeros((4, 4)), C)
    with pytest.raises(ValueError, match="values"):
        simulate_partial(np.full((1, 2, 2), 4), C, keep=[1])
    with pytest.raises(ValueError, match="cannot simulate"):
        simulate("nonsense", np.zeros((1, 2, 2), int), C)
