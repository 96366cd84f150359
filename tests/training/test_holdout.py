"""Validation without ground truth (issue 17): a project whose validation volumes have no
reference mask validates on accepted slices held out of training."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_weakseg.io import write_volume
from napari_weakseg.store import Project
from napari_weakseg.synthetic import make_cardiac_volume
from napari_weakseg.training import holdout
from napari_weakseg.training.config import TrainConfig
from napari_weakseg.training.sources import project_data

SHAPE = (8, 32, 32)
SPACING = (10.0, 5.0, 5.0)
EVERY = (0, 1, 2, 3)


def _case(seed):
    return make_cardiac_volume(seed, shape=SHAPE, spacing=SPACING, name=f"vol{seed}",
                               noise=0.02)


def _project(tmp_path, accepted: dict[int, list[int]], *, truth_val: bool = False,
             partial_slice: int | None = None) -> tuple:
    """Volumes vol0, vol1 (training: scribbles + ``accepted`` slices as sparse, complete)
    and vol2 (``split=val``; with ground truth only when ``truth_val``). Returns
    ``(root, {name: ground truth})``."""
    truths = {}
    with Project.create(tmp_path / "project") as project:
        for seed in range(3):
            case = _case(seed)
            path = write_volume(tmp_path / f"{case.name}.nii.gz", case.image, case.geometry)
            record = project.add_volume(path, tags={"split": "val"} if seed == 2 else None)
            truths[record.name] = case.ground_truth
            if seed == 2:
                if truth_val:
                    project.set_ground_truth(record, case.ground_truth)
                continue
            project.save_annotation(record, "scribble", case.scribble)
            zs = accepted.get(seed, [])
            declared = {z: EVERY for z in zs}
            data = np.zeros(SHAPE, np.uint8)
            data[zs] = case.ground_truth[zs] + 1
            if partial_slice is not None and seed == 0:  # declared for one class only
                data[partial_slice] = np.where(case.ground_truth[partial_slice] == 3, 4, 0)
                declared[partial_slice] = (3,)
            if declared:
                project.save_annotation(record, "sparse", data, declared_slices=declared)
    return tmp_path / "project", truths


def _data(root, method="mixed", **source):
    return project_data({"kind": "project", "path": str(root), **source},
                        TrainConfig(method=method))


# -- the choice -----------------------------------------------------------------------------
def test_every_fifth_accepted_slice_at_least_one_none_below_two():
    assert holdout.choose_held_out([]) == {}
    assert holdout.choose_held_out([("a", 3)]) == {}  # fewer than 2 accepted slices
    for n, expected in ((2, 1), (4, 1), (9, 1), (10, 2), (15, 3), (52, 10)):
        candidates = [(f"v{i % 3}", i) for i in range(n)]
        chosen = holdout.choose_held_out(candidates)
        assert sum(map(len, chosen.values())) == expected
        assert all(set(zs) <= {z for v, z in candidates if v == name}
                   for name, zs in chosen.items())


def test_the_choice_is_deterministic_seeded_and_stable_as_slices_are_added():
    candidates = [(f"vol{i % 4}", i) for i in range(30)]
    chosen = holdout.choose_held_out(candidates)
    assert chosen == holdout.choose_held_out(list(reversed(candidates)))  # order-free
    assert any(holdout.choose_held_out(candidates, seed=s) != chosen for s in (1, 2, 3))

    def flat(choice):
        return {(v, z) for v, zs in choice.items() for z in zs}

    before = flat(chosen)
    for extra in range(30, 60):  # one slice accepted after the other
        candidates.append((f"vol{extra % 4}", extra))
        after = flat(holdout.choose_held_out(candidates))
        new = candidates[-1]
        assert len(after) in (len(before), len(before) + 1)  # every 5th: grows by one
        left = before - after
        assert len(left) <= 1
        if left:  # the new slice took its place; nothing else moved
            assert len(after) == len(before) and after == (before - left) | {new}
        before = after


def test_only_slices_complete_for_every_class_are_candidates():
    assert holdout.complete_declared_slices({0: EVERY, 1: (3,), 2: (1, 2, 3), 4: None},
                                            4) == [0, 2, 4]


# -- the project source ---------------------------------------------------------------------
def test_held_out_slices_leave_the_training_targets_and_are_the_only_ones_validated(tmp_path):
    accepted = {0: [0, 2, 3, 5, 6], 1: [1, 2, 4, 5, 7]}  # 10 accepted slices → 2 held out
    root, truths = _project(tmp_path, accepted, partial_slice=7)
    data = _data(root)
    with Project.open(root) as project:
        assert data.held_out == holdout.held_out_slices(project)
    held = {(v, z) for v, zs in data.held_out.items() for z in zs}
    assert len(held) == 2 and held <= {(f"vol{s}", z) for s, zs in accepted.items()
                                       for z in zs}
    assert ("vol0", 7) not in held  # declared for one class only: never a candidate
    assert "validation Dice on 2 held-out corrected slices" in data.description
    assert "(not used for training)" in data.description

    train = {v.name: v for v in data.train}
    assert set(train) == {"vol0", "vol1"}
    for name, volume in train.items():
        t = volume.targets
        zs = data.held_out.get(name, ())
        for z in range(SHAPE[0]):
            if z in zs:  # no supervision of any kind (scribble strokes included)
                assert not t["valid"][z].any() and (t["labels"][z] == -1).all()
                assert not t["annotated"][z].any() and not t["kind"][z].any()
            elif z in accepted[int(name[-1])]:  # the other accepted slices still train
                assert t["valid"][z].all() and t["annotated"][z].all()
                np.testing.assert_array_equal(t["labels"][z], truths[name][z])
        assert set(volume.supervised_slices()).isdisjoint(zs)

    val = {v.name: v for v in data.val}
    assert set(val) == set(data.held_out)  # vol2 (split=val, no reference) is not there
    for name, volume in val.items():
        zs = list(data.held_out[name])
        others = [z for z in range(SHAPE[0]) if z not in zs]
        np.testing.assert_array_equal(volume.reference[zs], truths[name][zs])
        assert (volume.reference[others] == -1).all()
        np.testing.assert_array_equal(volume.image, train[name].image)


def test_validation_scores_only_the_held_out_slices(tmp_path, monkeypatch):
    from napari_weakseg.inference import predictor as predictor_module
    from napari_weakseg.training.trainer import Trainer

    root, truths = _project(tmp_path, {0: [1, 3, 5], 1: [2, 6]})
    data = _data(root)
    assert sum(map(len, data.held_out.values())) == 1
    (name, (z,)), = data.held_out.items()
    truth = truths[name]
    answers = {}

    class FakePredictor:  # returns the answer set for the volume
        def __init__(self, *args, **kwargs):
            pass

        def predict(self, image, spacing, normalised=False):
            return SimpleNamespace(labels=answers["labels"])

    monkeypatch.setattr(predictor_module, "Predictor", FakePredictor)
    trainer = Trainer(TrainConfig(method="mixed", size=32, base_width=4), data.train, data.val,
                      data.class_names, tmp_path / "run")
    right_there_wrong_elsewhere = np.where(np.arange(SHAPE[0])[:, None, None] == z, truth,
                                           (truth + 1) % 4)
    answers["labels"] = right_there_wrong_elsewhere
    dice = trainer.validate(net=None, device="cpu")
    assert dice == {n: 1.0 for n in data.class_names[1:]}
    wrong_there = truth.copy()
    wrong_there[z] = (truth[z] + 1) % 4
    answers["labels"] = wrong_there
    assert all(v < 0.5 for v in trainer.validate(net=None, device="cpu").values())


def test_nothing_is_held_out_when_ground_truth_validates(tmp_path):
    accepted = {0: [0, 2, 3, 5, 6], 1: [1, 2, 4, 5, 7]}
    root, truths = _project(tmp_path, accepted, truth_val=True)
    data = _data(root)
    assert data.held_out == {}
    assert [v.name for v in data.val] == ["vol2"]
    np.testing.assert_array_equal(data.val[0].reference, truths["vol2"])
    assert "1 validation volumes" in data.description and "held-out" not in data.description
    for volume in data.train:
        zs = accepted[int(volume.name[-1])]
        assert set(zs) <= set(volume.supervised_slices())


@pytest.mark.parametrize("accepted", [{}, {0: [4]}])
def test_nothing_is_held_out_with_fewer_than_two_accepted_slices(tmp_path, accepted):
    root, _ = _project(tmp_path, accepted)
    data = _data(root)
    assert data.held_out == {} and data.val == []
    assert "0 validation volumes" in data.description
    for zs in accepted.values():
        assert set(zs) <= set(next(v for v in data.train if v.name == "vol0")
                              .supervised_slices())


def test_holdout_can_be_turned_off_and_reseeded(tmp_path):
    root, _ = _project(tmp_path, {0: [0, 1, 2, 3, 4, 5, 6, 7], 1: [0, 1, 2, 3, 4, 5, 6, 7]})
    assert _data(root, holdout=False).held_out == {}
    seeded = {_tuple(_data(root, holdout_seed=s).held_out) for s in range(4)}
    assert len(seeded) > 1


def test_a_method_without_sparse_still_validates_on_the_held_out_slices(tmp_path):
    root, truths = _project(tmp_path, {0: [0, 2, 3, 5, 6], 1: [1, 2, 4, 5, 7]})
    data = _data(root, method="effdnet")  # learns from scribbles only
    assert data.held_out and {v.name for v in data.val} == set(data.held_out)
    for volume in data.train:  # the strokes on a held-out slice are dropped too
        assert set(volume.supervised_slices()).isdisjoint(data.held_out.get(volume.name, ()))


def _tuple(choice):
    return tuple(sorted((v, zs) for v, zs in choice.items()))
