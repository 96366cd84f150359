"""Slice datasets: normalisation, sizes, and the sampling strategies over volumes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from napari_weakseg.training.data import SliceDataset, TrainingVolume, normalise_intensity


def volume(name, dataset, classes, slices=4, size=16):
    labels = np.full((slices, size, size), -1, np.int64)
    for i, c in enumerate(classes):
        labels[:, i, :4] = c
    targets = {"labels": labels, "valid": np.ones(labels.shape, bool),
               "annotated": np.zeros((slices, 4), bool)}
    image = np.random.default_rng(len(name)).random((slices, size, size)).astype(np.float32)
    return TrainingVolume(name, image, targets, tags={"dataset": dataset, "modality": "mr"})


# dataset "big" has 9 volumes, "small" one: volume-level strategies balance datasets
VOLUMES = [volume(f"big{i}", "big", [1]) for i in range(9)] + [volume("small0", "small", [1, 2])]


@pytest.mark.parametrize("sampling, small_share", [
    ("slices", (0.05, 0.15)),          # 1 of 10 volumes' slices
    ("uniform", (0.05, 0.15)),         # 1 of 10 volumes
    ("hierarchical", (0.55, 0.8)),     # class 2 only in "small"; class 0/1 split by dataset
    ("mdc", (0.4, 0.6)),               # modality → dataset: half the draws
])
def test_sampling_strategies_balance_as_documented(sampling, small_share):
    dataset = SliceDataset(VOLUMES, 16, seed=3, augment_data=False, sampling=sampling)
    names = Counter()
    for t in range(300):
        for position in dataset._draw(np.random.default_rng([3, t]), 4):
            names[dataset.index[position][0]] += 1
    share = names["small0"] / sum(names.values())
    assert small_share[0] < share < small_share[1], (sampling, share)


def test_batches_depend_only_on_seed_and_iteration():
    a = SliceDataset(VOLUMES, 16, seed=5, sampling="hierarchical")
    b = SliceDataset(VOLUMES, 16, seed=5, sampling="hierarchical")
    b.batch(0, 4)  # a different history must not change iteration 7's batch
    for key, value in a.batch(7, 4).items():
        np.testing.assert_array_equal(value, b.batch(7, 4)[key])


def test_batch_shapes_and_normalisation():
    dataset = SliceDataset(VOLUMES[:2], 32, seed=0)
    batch = dataset.batch(0, 3)
    assert batch["image"].shape == (3, 1, 32, 32) and batch["labels"].shape == (3, 32, 32)
    image = np.arange(1000, dtype=np.int16).reshape(10, 10, 10)
    normalised = normalise_intensity(image)
    assert normalised.min() == 0.0 and normalised.max() == 1.0
    assert (normalised == 1.0).sum() >= 10  # the top 1 % is clipped to the maximum
