"""Mixed-kind training data (issue 16): per-pixel kind masks, batches mixing kinds, the kind
sampler, what single-kind methods leave out, and the default method."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from napari_weakseg.training.data import SliceDataset, TrainingVolume
from napari_weakseg.training.sampling import KindSampler
from napari_weakseg.training.sources import (default_method, dense_targets, restrict_to_kinds,
                                             scribble_targets, unused_annotations,
                                             unused_message)
from napari_weakseg.training.trainer import data_options
from napari_weakseg.weak.targets import (KIND_BITS, SimpleAnnotation, build_targets,
                                         infer_kind_mask)

C = 4
SCRIBBLE, COARSE, PARTIAL, DENSE = (KIND_BITS[k] for k in ("scribble", "coarse", "partial",
                                                            "dense"))


def _truth(z=4, size=16):
    t = np.zeros((z, size, size), np.int64)
    t[:, 4:12, 4:12] = 2
    t[:, 6:10, 6:10] = 3
    t[:, 2:14, 0:3] = 1
    return t


TRUTH = _truth()


def _strokes():
    data = np.zeros(TRUTH.shape, np.uint8)
    data[:, 8, :] = TRUTH[:, 8, :] + 1
    return data


def _coarse():
    from napari_weakseg.weak.simulate import simulate

    return [SimpleAnnotation("coarse_pos", simulate("coarse_pos", TRUTH, C, radius=1).data),
            SimpleAnnotation("coarse_neg", simulate("coarse_neg", TRUTH, C, radius=2).data)]


# ----------------------------------------------------------------------------- kind masks
def test_kind_mask_of_a_volume_carrying_scribbles_and_corrections():
    corrected = np.zeros(TRUTH.shape, np.uint8)
    corrected[1] = TRUTH[1] + 1
    incomplete = np.zeros(TRUTH.shape, np.uint8)
    incomplete[2] = np.where(TRUTH[2] == 1, 2, 0)
    anns = [SimpleAnnotation("scribble", _strokes()),
            SimpleAnnotation("sparse", corrected + incomplete,
                             declared_slices={1: (0, 1, 2, 3), 2: (1,)})]
    kind = build_targets(anns, C, TRUTH.shape).kind_mask
    strokes = _strokes() > 0
    assert ((kind & SCRIBBLE) > 0).tolist() == strokes.tolist()
    assert (kind[1] & DENSE).all() and not (kind[[0, 2, 3]] & DENSE).any()   # complete slice
    assert (kind[2] & PARTIAL).all() and not (kind[[0, 1, 3]] & PARTIAL).any()  # RV only


def test_conflicting_voxels_carry_no_label_kind():
    wrong = _strokes()
    wrong[0, 8, 0] = 4  # an RV voxel stroked as LV, densely labelled RV below
    anns = [SimpleAnnotation("scribble", wrong), SimpleAnnotation("dense", TRUTH + 1)]
    t = build_targets(anns, C, TRUTH.shape)
    assert t.conflicts == 1 and t.kind_mask[0, 8, 0] == 0 and t.kind_mask[0, 8, 1] != 0


@pytest.mark.parametrize("anns", [
    [SimpleAnnotation("scribble", _strokes())],
    _coarse(),
    [SimpleAnnotation("partial", np.where(TRUTH >= 2, TRUTH + 1, 0).astype(np.uint8),
                      declared_classes=(2, 3))],
    [SimpleAnnotation("sparse", (TRUTH + 1).astype(np.uint8),
                      declared_slices={0: (1, 2, 3), 3: (2,)})],
    [SimpleAnnotation("dense", (TRUTH + 1).astype(np.uint8))],
], ids=["scribble", "coarse", "partial", "sparse", "dense"])
def test_inferred_kind_mask_equals_the_built_one_for_single_kind_volumes(anns):
    t = build_targets(anns, C, TRUTH.shape)
    np.testing.assert_array_equal(infer_kind_mask(t.as_dict()), t.kind_mask)
    assert "kind" not in t.as_dict() and "kind" in t.as_dict(kind=True)


# ----------------------------------------------------------------------------- batches
def _volume(name, targets, dataset="d"):
    image = np.random.default_rng(len(name)).random(TRUTH.shape).astype(np.float32)
    return TrainingVolume(name, image, targets, tags={"dataset": dataset})


def test_one_batch_mixes_volumes_of_every_kind():
    volumes = [
        _volume("scribble", scribble_targets(_strokes(), C)),        # no coarse keys at all
        _volume("coarse", build_targets(_coarse(), C, TRUTH.shape).as_dict()),   # P = Q = 1
        _volume("dense", dense_targets(TRUTH, C)),
        _volume("partial", build_targets(
            [SimpleAnnotation("partial", np.where(TRUTH >= 2, TRUTH + 1, 0).astype(np.uint8),
                              declared_classes=(2, 3))], C, TRUTH.shape).as_dict(kind=True)),
    ]
    dataset = SliceDataset(volumes, 16, seed=0, augment_data=False, sampling="kinds",
                           kind_masks=True)
    batch = dataset.batch(0, 16)
    assert batch["coarse_pos"].shape == (16, 1, 16, 16)
    assert batch["coarse_neg"].shape == (16, 1, C, 16, 16)
    assert batch["annotated"].shape == (16, C) and batch["kind"].dtype == np.uint8
    groups = Counter()
    for i in range(16):
        bits = int(np.bitwise_or.reduce(batch["kind"][i].ravel()))
        groups.update(g for g, b in KIND_BITS.items() if bits & b)
        if not bits & COARSE:  # fills: no coarse supervision outside coarse samples
            assert (batch["coarse_pos"][i] == -1).all() and not batch["coarse_neg"][i].any()
    assert set(groups) == set(KIND_BITS)
    assert dataset.slice_groups.count(("coarse",)) == 4


def test_single_kind_batches_are_unchanged():
    targets = build_targets([SimpleAnnotation("scribble", _strokes())], C, TRUTH.shape)
    plain = SliceDataset([_volume("a", targets.as_dict())], 16, seed=3)
    tagged = SliceDataset([_volume("a", targets.as_dict(kind=True))], 16, seed=3)
    for t in range(3):
        a, b = plain.batch(t, 4), tagged.batch(t, 4)
        assert sorted(a) == sorted(b) and "kind" not in b
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_kind_sampler_draws_each_kind_equally_then_its_slices():
    groups = [("scribble",)] * 30 + [("scribble", "dense")] * 2 + [("coarse",)] * 8
    sampler = KindSampler(groups)
    p = sampler.probabilities(len(groups))
    assert p.sum() == pytest.approx(1.0)
    assert p[30:32].sum() == pytest.approx(1 / 3 + 2 / 3 / 32)     # dense: a third of draws
    rng = np.random.default_rng(0)
    counts = Counter(sampler.draw(rng) for _ in range(3000))
    assert 0.30 < sum(counts[i] for i in (30, 31)) / 3000 < 0.40


def test_restrict_to_kinds_gives_a_single_kind_method_its_part():
    corrected = np.zeros(TRUTH.shape, np.uint8)
    corrected[1] = TRUTH[1] + 1
    both = build_targets([SimpleAnnotation("scribble", _strokes()),
                          SimpleAnnotation("sparse", corrected,
                                           declared_slices={1: (0, 1, 2, 3)})], C, TRUTH.shape)
    alone = build_targets([SimpleAnnotation("scribble", _strokes())], C, TRUTH.shape)
    (volume,) = restrict_to_kinds([_volume("v", both.as_dict(kind=True))], {"scribble"})
    np.testing.assert_array_equal(volume.targets["labels"], alone.labels)
    np.testing.assert_array_equal(volume.targets["valid"], alone.valid)
    coarse = _volume("c", build_targets(_coarse(), C, TRUTH.shape).as_dict(kind=True))
    assert restrict_to_kinds([coarse], {"scribble"}) == []


def test_data_options_take_the_most_coarse_strategies():
    from napari_weakseg.methods.mixed import Mixed

    volumes = [_volume("s", scribble_targets(_strokes(), C)),
               _volume("c", build_targets(_coarse(), C, TRUTH.shape).as_dict())]
    assert data_options(Mixed, volumes) == {"num_positive": 1, "num_negative": 1}


# ----------------------------------------------------------------------------- methods
@pytest.mark.parametrize("kinds, method", [
    ({"scribble"}, "effdnet"), ({"coarse_pos", "coarse_neg"}, "refineseg"),
    ({"partial", "sparse"}, "disambig"), ({"dense"}, "full"), (set(), None),
    ({"scribble", "sparse"}, "mixed"), ({"coarse_pos", "partial"}, "mixed"),
    ({"scribble", "coarse_pos", "coarse_neg", "partial", "sparse", "dense"}, "mixed"),
])
def test_default_method(kinds, method):
    assert default_method(kinds) == method


def test_unused_annotations_are_counted_and_named(tmp_path):
    from napari_weakseg.store import Project
    from tests.store.helpers import tiny_case, write_case

    case = tiny_case(0)
    with Project.create(tmp_path / "proj") as project:
        record = project.add_volume(write_case(tmp_path / "src", case)["image"])
        project.save_annotation(record, "scribble", case.scribble)
        corrected = np.zeros(case.ground_truth.shape, np.uint8)
        corrected[[1, 2]] = case.ground_truth[[1, 2]] + 1
        every = list(range(C))
        project.save_annotation(record, "sparse", corrected,
                                declared_slices={1: every, 2: every})
        assert unused_annotations(project, "mixed") == {}
        assert unused_annotations(project, "pce") == {}
        unused = unused_annotations(project, "effdnet")
        assert unused == {"sparse": 2}
        assert unused_message("effdnet", unused) == (
            "effdnet will not use your 2 corrected or sparse slices (sparse): choose mixed "
            "to learn from every annotation")
        assert unused_annotations(project, "disambig") == {
            "scribble": int((case.scribble.reshape(case.scribble.shape[0], -1) > 0)
                            .any(1).sum())}
        assert unused_message("mixed", {}) is None
