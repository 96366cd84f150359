"""The nnU-Net raw layout: parsing, refusals, and project round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_weakseg.io import VolumeError, read_labels, write_labels, write_volume
from napari_weakseg.io.nnunet import (image_path, label_path, read_nnunet_dataset,
                                      write_dataset_json)
from napari_weakseg.store import Project, StoreError
from napari_weakseg.store.importers import detect_format, export_nnunet, import_nnunet, schema_for
from tests.store.helpers import tiny_case

LABELS = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}


def _dataset(root, n_train=2, n_test=1, labels=LABELS, ignore=False):
    cases = [tiny_case(s) for s in range(n_train + n_test)]
    for i, case in enumerate(cases):
        subset = "Tr" if i < n_train else "Ts"
        write_volume(image_path(root, f"case{i}", 0, subset), case.image, case.geometry)
        if subset == "Tr":
            gt = case.ground_truth.astype(np.int64)
            if ignore:
                gt = np.where(case.scribble == 0, 4, case.scribble.astype(np.int64) - 1)
            write_labels(label_path(root, f"case{i}"), gt, case.geometry)
    write_dataset_json(root, name="Dataset001_Heart", channel_names={0: "MRI"},
                       labels=dict(labels, **({"ignore": 4} if ignore else {})),
                       num_training=n_train)
    return cases


def test_read_v2_layout(tmp_path):
    _dataset(tmp_path)
    dataset = read_nnunet_dataset(tmp_path)
    assert dataset.name == "Dataset001_Heart" and dataset.channel_names == {0: "MRI"}
    assert dataset.class_names == ["background", "RV", "MYO", "LV"]
    assert dataset.ignore_value is None
    assert [(c.case_id, c.subset, c.label is not None) for c in dataset.cases] == [
        ("case0", "Tr", True), ("case1", "Tr", True), ("case2", "Ts", False)]
    assert detect_format(tmp_path) == "nnunet"
    assert schema_for(tmp_path).names == ["background", "RV", "MYO", "LV"]


def test_read_v1_dataset_json(tmp_path):
    _dataset(tmp_path, n_test=0)
    (tmp_path / "dataset.json").write_text(json.dumps({
        "name": "Task01", "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "RV", "2": "MYO", "3": "LV"},
        "training": [{"image": "./imagesTr/case0.nii.gz", "label": "./labelsTr/case0.nii.gz"}]}))
    dataset = read_nnunet_dataset(tmp_path)
    assert dataset.labels == LABELS and len(dataset.cases) == 2


@pytest.mark.parametrize("change, message", [
    (lambda root: (root / "dataset.json").unlink(), "dataset.json: missing"),
    (lambda root: (root / "dataset.json").write_text("{"), "not valid JSON"),
    (lambda root: _rewrite(root, labels={"background": 0, "heart": [1, 2]}), "region-based"),
    (lambda root: _rewrite(root, labels={"background": 0, "LV": 3}), "not 0"),
    (lambda root: _rewrite(root, channel_names={"0": "T1", "1": "T2"}), "lacks channel"),
    (lambda root: write_labels(label_path(root, "orphan"), np.zeros((1, 2, 2), np.uint8),
                               tiny_case(0).geometry.with_shape((1, 2, 2))),
     "label without an image"),
    (lambda root: image_path(root, "case0").rename(root / "imagesTr" / "case0.nii.gz"),
     "lacks the _0000 channel suffix"),
])
def test_bad_layouts_are_refused_naming_the_file(tmp_path, change, message):
    _dataset(tmp_path)
    change(tmp_path)
    with pytest.raises(VolumeError, match=message):
        read_nnunet_dataset(tmp_path)


def _rewrite(root, **changes):
    meta = json.loads((root / "dataset.json").read_text())
    meta.update(changes)
    (root / "dataset.json").write_text(json.dumps(meta))


def test_ground_truth_round_trip_through_a_project(tmp_path):
    cases = _dataset(tmp_path / "raw")
    with Project.create(tmp_path / "p") as project:
        report = import_nnunet(project, tmp_path / "raw")
        assert report.ok and len(report.added) == 3 and report.ground_truths == 2
        assert project.volume("case0").tags == {"dataset": "Dataset001_Heart", "modality": "MRI",
                                                "split": "train"}
        assert project.volume("case2").tags["split"] == "test"
        assert project.annotations() == []  # labels are ground truth, not annotations
        export_nnunet(project, tmp_path / "out")
    back = read_nnunet_dataset(tmp_path / "out")
    assert back.labels == LABELS
    assert [(c.case_id, c.subset) for c in back.cases] == [("case0", "Tr"), ("case1", "Tr"),
                                                           ("case2", "Ts")]
    for i, case in enumerate(cases[:2]):
        labels = read_labels(label_path(tmp_path / "out", f"case{i}"))
        assert np.array_equal(labels.data, case.ground_truth)
        assert np.allclose(labels.geometry.affine, case.geometry.affine)


def test_ignore_label_becomes_an_annotation_and_back(tmp_path):
    cases = _dataset(tmp_path / "raw", n_test=0, ignore=True)
    with Project.create(tmp_path / "p") as project:
        with pytest.raises(StoreError, match="ignore"):
            import_nnunet(project, tmp_path / "raw", labels_as="ground_truth")
        report = import_nnunet(project, tmp_path / "raw")
        assert report.ok and report.annotations == 2
        for i, case in enumerate(cases):
            assert np.array_equal(project.annotation(f"case{i}", "scribble").data, case.scribble)
        export_nnunet(project, tmp_path / "out", kind="scribble")
    back = read_nnunet_dataset(tmp_path / "out")
    assert back.ignore_value == 4
    for i in range(2):
        assert np.array_equal(read_labels(label_path(tmp_path / "out", f"case{i}")).data,
                              read_labels(label_path(tmp_path / "raw", f"case{i}")).data)


@pytest.mark.parametrize("kind", ["partial", "dense"])
def test_plain_labels_as_an_annotation_kind(tmp_path, kind):
    cases = _dataset(tmp_path / "raw", n_train=1, n_test=0)
    with Project.create(tmp_path / "p") as project:
        import_nnunet(project, tmp_path / "raw", labels_as=kind)
        data = project.annotation("case0", kind).data
        gt = cases[0].ground_truth
        expected = np.where(gt > 0, gt + 1, 0) if kind == "partial" else gt + 1
        assert np.array_equal(data, expected)


def test_class_names_must_match_the_project(tmp_path):
    _dataset(tmp_path / "raw", labels={"background": 0, "a": 1, "b": 2, "c": 3})
    with Project.create(tmp_path / "p") as project:
        with pytest.raises(StoreError, match="differ from the project"):
            import_nnunet(project, tmp_path / "raw")
