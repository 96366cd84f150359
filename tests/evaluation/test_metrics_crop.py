"""Surface distances on the masks' padded bounding box equal the whole-volume ones, element
for element (the metrics oracles in test_metrics.py check the values against medpy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_weakseg.evaluation import evaluate_volume, surface_distances
from napari_weakseg.evaluation.metrics import _directed_distances, _padded_box, _surface


def whole_volume(pred, gt, sampling):
    """The implementation before the crop."""
    d_pg = ndimage.distance_transform_edt(~_surface(gt), sampling=sampling)[_surface(pred)]
    d_gp = ndimage.distance_transform_edt(~_surface(pred), sampling=sampling)[_surface(gt)]
    return d_pg, d_gp


def _blob(rng, shape, n=3, at_border=False):
    mask = np.zeros(shape, bool)
    for _ in range(n):
        centre = [rng.integers(0, s) for s in shape]
        if at_border:
            centre[rng.integers(0, len(shape))] = 0
        radius = [rng.uniform(1, max(1.5, s / 5)) for s in shape]
        grids = np.ogrid[tuple(slice(0, s) for s in shape)]
        mask |= sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radius)) <= 1
    if not mask.any():
        mask[tuple(c // 2 for c in shape)] = True
    return mask


@pytest.mark.parametrize("seed", range(12))
def test_cropped_distances_equal_whole_volume_bitwise(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(3, 14)), int(rng.integers(10, 60)), int(rng.integers(10, 60)))
    sampling = tuple(float(s) for s in rng.choice([0.7, 1.0, 1.5625, 3.3, 10.0], size=3))
    pred = _blob(rng, shape, at_border=seed % 3 == 0)
    gt = _blob(rng, shape, at_border=seed % 4 == 0)
    old = whole_volume(pred, gt, sampling)
    new = _directed_distances(pred, gt, sampling)
    for a, b in zip(old, new):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert np.array_equal(surface_distances(pred, gt, sampling), old[0])
    assert np.array_equal(surface_distances(gt, pred, sampling), old[1])


def test_far_apart_masks_and_2d():
    pred = np.zeros((40, 50), bool)
    gt = np.zeros_like(pred)
    pred[0, 0] = True            # corner: the box meets the array border
    gt[30:35, 44:50] = True      # touches the other border
    for sampling in ((1.0, 1.0), (0.3, 2.7)):
        for a, b in zip(whole_volume(pred, gt, sampling),
                        _directed_distances(pred, gt, sampling)):
            assert np.array_equal(a, b)


def test_box_is_padded_by_one_voxel_and_clipped():
    mask = np.zeros((10, 20, 30), bool)
    mask[4:6, 0:3, 10:29] = True
    assert _padded_box(mask) == (slice(3, 7), slice(0, 4), slice(9, 30))


def test_evaluate_volume_values_unchanged_on_acdc(acdc_dir):
    from napari_weakseg.io import read_labels

    truth = read_labels(sorted((acdc_dir / "labels").glob("*.nii.gz"))[0])
    labels = truth.data
    pred = np.roll(labels, (1, -2), axis=(1, 2))
    spacing = truth.geometry.spatial_spacing
    result = evaluate_volume(pred, labels, spacing, {1: "RV", 2: "MYO", 3: "LV"})
    for class_id, name in ((1, "RV"), (2, "MYO"), (3, "LV")):
        d_pg, d_gp = whole_volume(pred == class_id, labels == class_id, spacing)
        assert result[name]["hd95_mm"] == float(np.percentile(np.hstack((d_pg, d_gp)), 95))
        assert result[name]["assd_mm"] == float(np.mean((d_pg.mean(), d_gp.mean())))
        assert result[name]["asd_mm"] == float(d_pg.mean())
