"""Bounded memory for large cohorts (issue 20): a dataset whose prepared slices would not
fit its cache budget prepares them on demand, and draws exactly the batches the in-memory
dataset draws — for every pipeline, sampling and mix of annotation kinds."""

from __future__ import annotations

import numpy as np
import pytest

from napari_weakseg.preprocess import Preprocessing
from napari_weakseg.training.data import SliceDataset, TrainingVolume
from napari_weakseg.training.sources import dense_targets, scribble_targets
from napari_weakseg.weak.targets import SimpleAnnotation, build_targets

C = 4


def _volumes(count=6, z=5, size=24, seed=0):
    from napari_weakseg.weak.simulate import simulate

    rng = np.random.default_rng(seed)
    volumes = []
    for i in range(count):
        truth = np.zeros((z, size, size), np.int64)
        truth[:, 6:18, 6:18] = 2
        truth[:, 9:15, 9:15] = 3
        truth[:, 2:20, 0:4] = 1
        image = (truth * 0.2 + rng.random(truth.shape) * 0.3).astype(np.float32)
        if i % 3 == 0:
            targets = dense_targets(truth, C)
        elif i % 3 == 1:
            strokes = np.zeros(truth.shape, np.int64)
            strokes[:, 12, :] = truth[:, 12, :] + 1
            targets = scribble_targets(strokes, C)
        else:
            anns = [SimpleAnnotation("coarse_pos", simulate("coarse_pos", truth, C, radius=1).data),
                    SimpleAnnotation("coarse_neg", simulate("coarse_neg", truth, C, radius=2).data)]
            targets = build_targets(anns, C, truth.shape).as_dict()
        volumes.append(TrainingVolume(f"v{i}", image, targets, truth,
                                      (8.0, 1.0 + 0.25 * i, 1.0 + 0.25 * i),
                                      {"dataset": f"d{i % 2}", "modality": "MR"}))
    return volumes


CASES = [
    ("resize, uniform over slices", dict(size=16)),
    ("spacing, random patches, appearance augmentation",
     dict(size=16, pipeline=Preprocessing("spacing", size=(16, 16), target_spacing=(1.2, 1.2)),
          intensity_augmentation=True)),
    ("volume sampling", dict(size=16, sampling="hierarchical")),
    ("kinds sampling with kind masks", dict(size=16, sampling="kinds", kind_masks=True)),
]


@pytest.mark.parametrize("name,options", CASES, ids=[c[0] for c in CASES])
def test_lazy_dataset_draws_the_batches_of_the_in_memory_one(name, options):
    volumes = _volumes()
    eager = SliceDataset(volumes, seed=3, **options)
    lazy = SliceDataset(volumes, seed=3, cache_bytes=1, **options)
    tiny = SliceDataset(volumes, seed=3, cache_bytes=1, **options)
    tiny._cache_slots = 2  # far fewer slots than slices: most draws prepare again
    assert not eager.lazy and lazy.lazy and tiny.lazy
    assert eager.keys == lazy.keys and len(eager) == len(lazy)
    for iteration in (0, 1, 7, 40):
        a = eager.batch(iteration, 6)
        for other in (lazy, tiny):
            b = other.batch(iteration, 6)
            assert sorted(a) == sorted(b)
            for key in a:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}: {key}")
    assert len(tiny._cache) <= 2


def test_lazy_cache_stays_within_its_slots():
    dataset = SliceDataset(_volumes(count=9), 16, seed=0, cache_bytes=1)
    dataset._cache_slots = 5
    for iteration in range(20):
        dataset.batch(iteration, 4)
        assert len(dataset._cache) <= 5


def test_memory_mapped_volumes_train_like_in_memory_ones(tmp_path):
    """Volumes whose arrays are memory-mapped ``.npy`` files (what a large cohort spills to)
    give the same batches."""
    from napari_weakseg.training.data import memory_mapped

    volumes = _volumes(count=3)
    mapped = [memory_mapped(v, tmp_path / v.name) for v in volumes]
    assert isinstance(mapped[0].image, np.memmap)
    a = SliceDataset(volumes, 16, seed=1).batch(5, 4)
    b = SliceDataset(mapped, 16, seed=1, cache_bytes=1).batch(5, 4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_cache_budget_from_the_environment(monkeypatch):
    from napari_weakseg.errors import OptionError
    from napari_weakseg.training.data import default_cache_bytes

    monkeypatch.setenv("WEAKSEG_SLICE_CACHE_MB", "1.5")
    assert default_cache_bytes() == int(1.5 * 2 ** 20)
    monkeypatch.setenv("WEAKSEG_SLICE_CACHE_MB", "lots")
    with pytest.raises(OptionError, match="WEAKSEG_SLICE_CACHE_MB"):
        default_cache_bytes()


def test_a_project_larger_than_the_budget_spills_to_the_volume_cache(tmp_path, monkeypatch):
    """``project_data`` with a ``volume_cache``: volumes beyond the memory budget are read
    back memory-mapped, with the same arrays."""
    from napari_weakseg.store import Project
    from napari_weakseg.training.config import TrainConfig
    from napari_weakseg.training.sources import project_data
    from tests.store.helpers import tiny_case, write_case

    with Project.create(tmp_path / "proj") as project:
        for i in range(3):
            case = tiny_case(i)
            record = project.add_volume(write_case(tmp_path / f"src{i}", case)["image"])
            project.save_annotation(record, "scribble", case.scribble)
    source = {"kind": "project", "path": str(tmp_path / "proj")}
    config = TrainConfig(method="pce")
    plain = project_data(source, config)
    monkeypatch.setenv("WEAKSEG_SLICE_CACHE_MB", "0.000001")
    spilled = project_data({**source, "volume_cache": str(tmp_path / "cache")}, config)
    assert [isinstance(v.image, np.memmap) for v in spilled.train] == [True, True, True]
    for a, b in zip(plain.train, spilled.train):
        np.testing.assert_array_equal(a.image, b.image)
        for key in a.targets:
            np.testing.assert_array_equal(a.targets[key], b.targets[key])
    assert not isinstance(plain.train[0].image, np.memmap)
