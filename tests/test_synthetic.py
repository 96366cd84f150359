"""Synthetic cardiac phantoms: seeded, anatomically ordered, scribbles agree with truth."""

from __future__ import annotations

import numpy as np
import pytest

from napari_weakseg.io import read_labels, read_volume
from napari_weakseg.schema import UNANNOTATED, decode_value
from napari_weakseg.synthetic import (
    ED,
    ES,
    LV,
    MYO,
    RV,
    make_cardiac_cine,
    make_cardiac_volume,
    make_cohort,
    write_cohort,
)


def test_same_seed_same_volume_other_seed_differs():
    a, b, c = make_cardiac_volume(3), make_cardiac_volume(3), make_cardiac_volume(4)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.ground_truth, b.ground_truth)
    assert not np.array_equal(a.ground_truth, c.ground_truth)


@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_anatomy(seed):
    case = make_cardiac_volume(seed)
    truth = case.ground_truth
    assert set(np.unique(truth)) == {0, RV, MYO, LV}
    lv_area = (truth == LV).sum(axis=(1, 2))
    assert lv_area[0] > lv_area[-1] > 0  # LV shrinks from base to apex
    assert (truth[-1] == RV).sum() == 0  # no RV at the apex
    # the blood pool is brighter than the myocardium
    assert case.image[truth == LV].mean() > 1.8 * case.image[truth == MYO].mean()
    es = make_cardiac_volume(seed, phase=ES)
    assert (es.ground_truth == LV).sum() < (truth == LV).sum()  # systole contracts the LV


@pytest.mark.parametrize("seed", [0, 5])
def test_example_scribbles_lie_inside_their_class(seed):
    case = make_cardiac_volume(seed, phase=ED)
    stroke = case.scribble != UNANNOTATED
    classes = decode_value(case.scribble[stroke])
    assert set(np.unique(classes)) == {0, RV, MYO, LV}
    agreement = np.mean(classes == case.ground_truth[stroke])
    assert agreement == 1.0
    assert 0.002 < stroke.mean() < 0.05  # thin strokes, like the manual ACDC scribbles


def test_cine_series_shapes():
    image, truth, geometry = make_cardiac_cine(0, n_frames=4, shape=(4, 32, 32))
    assert image.shape == truth.shape == (4, 4, 32, 32)
    assert geometry.axis_labels == ("t", "z", "y", "x")


def test_cohort_written_in_acdc_layout(tmp_path):
    cases = make_cohort(2, seed=1, shape=(3, 48, 48))
    write_cohort(tmp_path, cases)
    names = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert names == ["synth000_frame01.nii.gz", "synth000_frame10.nii.gz",
                     "synth001_frame01.nii.gz", "synth001_frame10.nii.gz"]
    image = read_volume(tmp_path / "images" / names[0])
    truth = read_labels(tmp_path / "labels" / names[0], like=image.geometry)
    scribble = read_labels(tmp_path / "scribbles" / names[0], like=image.geometry)
    np.testing.assert_array_equal(truth.data, cases[0].ground_truth)
    assert set(np.unique(scribble.data)) <= {0, 1, 2, 3, 4}  # WSL4MIS: 4 = unannotated
    np.testing.assert_array_equal(scribble.data == 4, cases[0].scribble == UNANNOTATED)
