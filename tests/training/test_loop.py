"""The training loop's speed pieces (issue 20): batches prepared a step ahead in a thread are
the batches prepared in line (so resume stays bit-exact), and non-finite losses are still
caught — at the next report — without a host sync per step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_weakseg.nets.model_folder import load_model
from napari_weakseg.training.config import TrainConfig
from napari_weakseg.training.data import SliceDataset, TrainingVolume
from napari_weakseg.training.loop import BatchPrefetcher, DeferredFiniteCheck
from napari_weakseg.training.sources import synthetic_data
from napari_weakseg.training.trainer import Trainer


@pytest.fixture(scope="module")
def data():
    return synthetic_data(subjects=2, val_subjects=1, shape=(4, 32, 32))


def test_prefetched_batches_equal_inline_batches(data):
    dataset = SliceDataset(data.train, 32, seed=5)
    ahead = BatchPrefetcher(dataset, 3, 2, 9)
    inline = BatchPrefetcher(dataset, 3, 2, 9, enabled=False)
    for iteration in range(2, 9):
        a, b = ahead.take(iteration), inline.take(iteration)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    ahead.close()
    ahead.close()  # twice is harmless


def test_prefetcher_reraises_the_workers_error():
    class Broken:
        def batch(self, iteration, batch_size):
            raise ValueError(f"no batch {iteration}")

    prefetcher = BatchPrefetcher(Broken(), 2, 0, 3)
    with pytest.raises(ValueError, match="no batch 0"):
        prefetcher.take(0)
    prefetcher.close()


@pytest.mark.parametrize("method", ["pce", "effdnet"])
def test_training_with_and_without_prefetch_gives_the_same_weights(tmp_path, data, method):
    config = TrainConfig(method=method, iterations=6, batch_size=3, size=32, base_width=4,
                         val_every=3, checkpoint_every=3, device="cpu", threads=1)
    folders = []
    for prefetch in (True, False):
        run = tmp_path / str(prefetch)
        Trainer(TrainConfig(**{**config.to_dict(), "prefetch": prefetch}), data.train,
                data.val, data.class_names, run).run()
        folders.append(run / "model_last")
    (a, _), (b, _) = (load_model(f) for f in folders)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_deferred_check_names_the_first_bad_iteration():
    check = DeferredFiniteCheck()
    for iteration, value in [(1, 0.5), (2, 0.4), (3, float("nan")), (4, float("inf"))]:
        check.check_later(torch.tensor(value), iteration)
    with pytest.raises(FloatingPointError, match="became nan at iteration 3"):
        check.raise_if_not_finite()
    check.raise_if_not_finite()  # cleared: nothing pending
    check.check_later(torch.tensor(1.0), 5)
    check.raise_if_not_finite()


def test_a_nan_loss_stops_training_before_anything_is_saved(tmp_path, data):
    poisoned = [TrainingVolume(v.name, np.full_like(v.image, np.nan), v.targets, v.reference,
                               v.spacing, v.tags) for v in data.train]
    config = TrainConfig(method="pce", iterations=8, batch_size=2, size=32, base_width=4,
                         val_every=4, checkpoint_every=4, device="cpu", threads=1)
    with pytest.raises(FloatingPointError, match="at iteration 1"):
        Trainer(config, poisoned, data.val, data.class_names, tmp_path / "run").run()
    assert not (tmp_path / "run" / "model").exists()
    assert not (tmp_path / "run" / "model_last").exists()
