"""Simulated ACDC supervision variants of the benchmarks (issues 5 and 7)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_weakseg.training.sources import (
    acdc_data, check_acdc_supervision, simulated_acdc_targets,
)


def _truth() -> np.ndarray:
    """(10, 40, 40) cardiac-like mask: LV disc (3) in a MYO ring (2), RV block (1)."""
    yy, xx = np.mgrid[:40, :40]
    r = np.hypot(yy - 20, xx - 22)
    slice_ = np.zeros((40, 40), np.int64)
    slice_[r < 11] = 2
    slice_[r < 7] = 3
    slice_[8:32, 2:9] = 1
    return np.repeat(slice_[None], 10, 0)


@pytest.mark.parametrize("supervision", ["scribble", "coarse-full", "multisource-partial",
                                         "sparse-0.2", "sparse-1.0"])
def test_accepted_supervision(supervision):
    check_acdc_supervision(supervision)


@pytest.mark.parametrize("supervision", ["sparse-0", "sparse-1.5", "sparse-x", "coarse-ish"])
def test_rejected_supervision_names_the_choices(supervision):
    with pytest.raises(ValueError, match="sparse-FRACTION"):
        check_acdc_supervision(supervision)


@pytest.mark.parametrize("fraction, slices", [(0.2, 2), (0.5, 5), (1.0, 10)])
def test_sparse_fraction_declares_all_classes_on_that_many_slices(fraction, slices):
    truth = _truth()
    targets = simulated_acdc_targets(truth, f"sparse-{fraction}", index=3, num_classes=4)
    declared = targets["valid"].reshape(10, -1).all(1)
    assert declared.sum() == slices
    assert targets["annotated"][declared].all() and not targets["annotated"][~declared].any()
    np.testing.assert_array_equal(targets["labels"][declared], truth[declared])
    assert (targets["labels"][~declared] == -1).all()


def test_coarse_full_mislabels_the_eroded_rim_as_background():
    truth = _truth()
    coarse = simulated_acdc_targets(truth, "coarse", 0, 4)["coarse_pos"][0]
    full = simulated_acdc_targets(truth, "coarse-full", 0, 4)["coarse_pos"][0]
    assert (coarse == -1).any() and not (full == -1).any()
    foreground = full > 0
    np.testing.assert_array_equal(full[foreground], truth[foreground])  # eroded cores correct
    rim = (truth > 0) & (full == 0)
    assert rim.sum() > 0.2 * (truth > 0).sum()                           # noisy rim
    np.testing.assert_array_equal(full[coarse >= 0], coarse[coarse >= 0])


def test_multisource_partial_drops_the_sparse_source(acdc_dir):
    mixed = acdc_data(acdc_dir, "multisource", limit=12, val_limit=0)
    partial = acdc_data(acdc_dir, "multisource-partial", limit=12, val_limit=0)
    sources = {v.name: v.tags["dataset"] for v in mixed.train}
    assert set(sources.values()) == {"acdc-source0", "acdc-source1", "acdc-source2"}
    assert [v.name for v in partial.train] == [n for n, s in sources.items()
                                              if s != "acdc-source2"]
    by_name = {v.name: v for v in mixed.train}
    for volume in partial.train:  # the same labels as in the mixed set
        np.testing.assert_array_equal(volume.targets["labels"],
                                      by_name[volume.name].targets["labels"])
