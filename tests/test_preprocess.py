"""Pre-processing as a named, recorded stage: normalisers by name, the legacy ``resize`` and
the ``spacing`` pipelines, training patches, and the exact round trip of predictions onto
anisotropic, oblique input grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_weakseg.inference.predictor import Predictor
from napari_weakseg.io import VolumeGeometry, read_volume, write_labels
from napari_weakseg.preprocess import (NORMALISERS, Preprocessing, centre_crop_or_pad,
                                       get_normaliser, median_spacing, normalise_intensity)
from napari_weakseg.training.data import SliceDataset, TrainingVolume

CLASSES = ["background", "RV", "MYO", "LV"]


class ToyNet(torch.nn.Module):
    """A fixed 'network' that reads the class off the intensity: logits_k = −20·(x − k/3)²."""

    def forward(self, x):
        k = torch.arange(4, dtype=x.dtype).view(1, 4, 1, 1) / 3.0
        return -20.0 * (x - k) ** 2, x


# -- normalisers and records --------------------------------------------------------------------
def test_normalisers_are_found_by_name():
    image = np.random.default_rng(0).normal(50, 10, (3, 16, 16)).astype(np.float32)
    assert set(NORMALISERS) >= {"wsl4mis-p99-minmax", "zscore"}
    np.testing.assert_array_equal(get_normaliser("wsl4mis-p99-minmax")(image),
                                  normalise_intensity(image))
    z = get_normaliser("zscore")(image)
    assert abs(float(z.mean())) < 1e-5 and float(z.std()) == pytest.approx(1.0, abs=1e-4)
    assert get_normaliser(None) is normalise_intensity
    with pytest.raises(ValueError, match="unknown intensity normalisation"):
        get_normaliser("nope")


@pytest.mark.parametrize("config, expected", [
    # the legacy record (models/acdc-cine-pce) and an older one with an int size
    ({"normalisation": "wsl4mis-p99-minmax", "size": [128, 128], "slice_axis": "z",
      "resize": "bilinear"}, Preprocessing("resize", "wsl4mis-p99-minmax", (128, 128))),
    ({"size": 32}, Preprocessing("resize", "wsl4mis-p99-minmax", (32, 32))),
    ({"name": "spacing", "normalisation": "zscore", "size": [64, 64],
      "target_spacing": [1.25, 1.5]}, Preprocessing("spacing", "zscore", (64, 64), (1.25, 1.5))),
])
def test_recorded_pipeline_round_trips(config, expected):
    pipeline = Preprocessing.from_config(config)
    assert pipeline == expected
    assert Preprocessing.from_config(pipeline.to_config()) == pipeline


@pytest.mark.parametrize("config, phrase", [
    ({"name": "spacing", "size": [64, 64]}, "target_spacing"),
    ({"name": "spacing", "size": [64, 64], "target_spacing": [0, 1]}, "target_spacing"),
    ({"name": "warp", "size": 32}, "unknown pre-processing"),
    ({"size": 0}, "positive"),
    ({"size": "x"}, "size"),
    ({"size": 32, "normalisation": "nope"}, "normalisation"),
])
def test_bad_pipeline_records_are_refused(config, phrase):
    with pytest.raises(ValueError, match=phrase):
        Preprocessing.from_config(config)


def test_median_spacing_is_in_plane():
    assert median_spacing([(10, 1.0, 2.0), (5, 1.5, 1.0), (8, 3.0, 1.2)]) == (1.5, 1.2)


# -- training patches ---------------------------------------------------------------------------
@pytest.mark.parametrize("array, size, fill, expected_shape", [
    (np.ones((10, 12)), (8, 8), 0, (8, 8)),
    (np.ones((5, 3)), (8, 8), -1, (8, 8)),
    (np.ones((2, 5, 20)), (8, 8), 0, (2, 8, 8)),
])
def test_centre_crop_or_pad(array, size, fill, expected_shape):
    out = centre_crop_or_pad(array, size, fill)
    assert out.shape == expected_shape
    if array.shape[-2] < size[0]:
        assert (out[..., 0, :] == fill).all()


@pytest.mark.parametrize("spacing", [(10.0, 0.7, 0.7), (10.0, 1.9, 1.9), (10.0, 0.7, 1.9)])
def test_spacing_patches_show_the_anatomy_at_one_size_in_pixels(spacing):
    """A disk of radius 12 mm has the same area in the training patch whatever the input's
    pixel size; the padding is 'unknown' (−1) for labels and 0 for the image."""
    sy, sx = spacing[1:]
    shape = (1, int(round(60 / sy)), int(round(60 / sx)))  # a 60 × 60 mm field of view
    yy, xx = np.mgrid[:shape[1], :shape[2]]
    disk = ((yy + 0.5) * sy - 30) ** 2 + ((xx + 0.5) * sx - 30) ** 2 < 12 ** 2
    labels = disk[None].astype(np.int64)
    volume = TrainingVolume("v", labels.astype(np.float32),
                            {"labels": labels, "valid": np.ones(shape, bool),
                             "annotated": np.ones((1, 2), bool)}, spacing=spacing)
    pipeline = Preprocessing("spacing", size=(64, 64), target_spacing=(1.25, 1.25))
    dataset = SliceDataset([volume], 64, augment_data=False, pipeline=pipeline)
    sample = dataset.slices[0]
    assert sample["image"].shape == sample["labels"].shape == (64, 64)
    area_px = np.pi * (12 / 1.25) ** 2
    assert (sample["labels"] == 1).sum() == pytest.approx(area_px, rel=0.06)
    assert (sample["labels"][0] == -1).all() and not sample["valid"][0].any()  # 48 px → pad
    assert (sample["image"][0] == 0).all()


def test_legacy_dataset_is_unchanged_by_the_pipeline_object():
    rng = np.random.default_rng(1)
    image = rng.random((2, 30, 20)).astype(np.float32)
    labels = rng.integers(-1, 4, (2, 30, 20))
    volume = TrainingVolume("v", image, {"labels": labels, "valid": np.ones(labels.shape, bool),
                                         "annotated": np.ones((2, 4), bool)})
    plain = SliceDataset([volume], 16, augment_data=False)
    explicit = SliceDataset([volume], 16, augment_data=False,
                            pipeline=Preprocessing("resize", size=(16, 16)))
    for a, b in zip(plain.slices, explicit.slices):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


# -- prediction back on the input grid ----------------------------------------------------------
class ThresholdNet(torch.nn.Module):
    """Two classes: foreground where the (interpolated) intensity exceeds ½."""

    def forward(self, x):
        return torch.cat([0.5 - x, x - 0.5], 1) * 20.0, x


def oblique_geometry(shape_zyx, spacing_zyx, angle_deg=23.0) -> VolumeGeometry:
    """A grid rotated about two axes (oblique), voxel (i, j, k) = (x, y, z) → world mm."""
    a, b = np.deg2rad(angle_deg), np.deg2rad(angle_deg / 2)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(spacing_zyx[::-1])
    affine[:3, 3] = (-40.0, 12.5, 7.0)
    return VolumeGeometry(tuple(shape_zyx), affine, tuple(float(s) for s in spacing_zyx))


@pytest.mark.parametrize("shape, spacing, target", [
    ((3, 37, 53), (8.0, 0.7, 1.9), (1.0, 1.0)),    # anisotropic in-plane, odd sizes
    ((2, 64, 48), (10.0, 1.9, 0.7), (1.5, 1.5)),   # the other way round, coarser target
    ((2, 40, 40), (5.0, 1.25, 1.25), (1.25, 1.25)),  # already at the target spacing
])
def test_spacing_prediction_maps_back_exactly_onto_the_input_grid(tmp_path, shape, spacing,
                                                                  target):
    """Shapes painted in mm (a disk is an ellipse in voxels) come back on the input grid at
    the same place: every voxel away from a boundary keeps its class, the centroid does not
    move, the area is kept; the file written on an oblique grid keeps its affine."""
    z, h, w = shape
    sy, sx = spacing[1:]
    yy, xx = np.mgrid[:h, :w]
    ymm, xmm = (yy + 0.5) * sy, (xx + 0.5) * sx
    r = np.hypot(ymm - h * sy * 0.55, xmm - w * sx * 0.4)
    truth2d = ((r < 9) | ((xmm < 8) & (ymm < 12))).astype(np.uint8)
    truth = np.repeat(truth2d[None], z, 0)
    image = truth.astype(np.float32)
    config = {"network": {"num_classes": 2}, "classes": ["background", "organ"],
              "preprocessing": Preprocessing("spacing", size=(32, 32),
                                             target_spacing=target).to_config(),
              "postprocessing": {"name": "none"}}
    predictor = Predictor((ThresholdNet(), config), device="cpu")
    prediction = predictor.predict(image, spacing, normalised=True)
    assert prediction.labels.shape == shape and prediction.probabilities.shape == (2,) + shape
    np.testing.assert_array_equal(prediction.labels, prediction.probabilities.argmax(0))
    # interior voxels (more than one target pixel from any class boundary) are exact
    from scipy import ndimage

    boundary = np.zeros(truth2d.shape, bool)
    for c in range(2):
        mask = truth2d == c
        boundary |= mask ^ ndimage.binary_erosion(mask, iterations=1, border_value=1)
    margin = max(1, int(np.ceil(max(target) / min(sy, sx))))
    near = ndimage.binary_dilation(boundary, iterations=margin)
    np.testing.assert_array_equal(prediction.labels[:, ~near], truth[:, ~near])
    # no shift: the centroid stays within ¼ of a pixel (of the coarser of the input and the
    # target grid, per axis); the area within 4 %
    tolerance = 0.25 * np.maximum(1.0, np.asarray(target) / np.asarray(spacing[1:]))
    for zi in range(z):
        got, want = prediction.labels[zi] == 1, truth2d == 1
        shift = np.abs(np.argwhere(got).mean(0) - np.argwhere(want).mean(0))
        assert (shift <= tolerance).all(), (shift, tolerance)
        assert got.sum() == pytest.approx(want.sum(), rel=0.04)
    geometry = oblique_geometry(shape, spacing)
    out = write_labels(tmp_path / "labels.nii.gz", prediction.labels, geometry)
    back = read_volume(out)
    np.testing.assert_array_equal(back.data, prediction.labels)
    np.testing.assert_allclose(back.geometry.affine, geometry.affine, atol=1e-5)
    assert back.geometry.spatial_shape == shape


def test_spacing_model_needs_the_spacing():
    config = {"network": {"num_classes": 4}, "classes": CLASSES,
              "preprocessing": Preprocessing("spacing", size=(32, 32),
                                             target_spacing=(1.0, 1.0)).to_config()}
    with pytest.raises(ValueError, match="spacing is needed"):
        Predictor((ToyNet(), config), device="cpu").predict(np.zeros((1, 16, 16), np.float32))
