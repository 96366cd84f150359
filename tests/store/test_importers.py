"""Imports: the real ACDC folder, NIfTI folders (both layouts), resumed imports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_weakseg.io import read_labels, write_labels
from napari_weakseg.store import Project, StoreError
from napari_weakseg.store.importers import (acdc_tags, detect_format, export_annotations,
                                            import_acdc, import_folder)
from napari_weakseg.synthetic import make_cohort, write_cohort
from napari_weakseg.weak.targets import volume_targets
from tests.store.helpers import TINY_SHAPE, TINY_SPACING, files_under, tiny_case, write_case


@pytest.fixture(scope="module")
def acdc_project(acdc_dir, tmp_path_factory):
    project = Project.create(tmp_path_factory.mktemp("acdc") / "proj")
    report = import_acdc(project, acdc_dir)  # images referenced, not copied
    yield project, report
    project.close()


def test_acdc_imports_160_volumes_with_tags_and_splits(acdc_project, acdc_dir):
    project, report = acdc_project
    assert report.ok, report.summary()
    assert len(report.added) == 160 and report.annotations == 160 and report.ground_truths == 160
    splits = json.loads((acdc_dir / "splits.json").read_text())
    assert [v.name for v in project.volumes(split="train")] == sorted(splits["train"])
    assert [v.name for v in project.volumes(split="val")] == sorted(splits["val"])
    assert len(project.volumes(frame="ED")) == len(project.volumes(frame="ES")) == 80
    record = project.volume("patient003_frame15")
    assert record.tags == {"dataset": "ACDC", "modality": "cine-MRI", "subject": "patient003",
                           "frame": "ES", "split": "train"}
    assert project.volume("patient003_frame01").tags["frame"] == "ED"
    assert not record.copied and record.image_path.parent == (acdc_dir / "images").resolve()
    assert not any((project.root / "images").iterdir())


def test_acdc_scribble_statistics_match_the_source_files_exactly(acdc_project, acdc_dir):
    project, _ = acdc_project
    totals_source, totals_store = np.zeros(5, np.int64), np.zeros(5, np.int64)
    for record in project.volumes():
        source = read_labels(acdc_dir / "scribbles" / f"{record.name}.nii.gz").data
        annotation = project.annotation(record, "scribble")
        # exact voxel-for-voxel equality after the documented conversion
        expected = np.where(source == 4, 0, source.astype(np.int64) + 1)
        assert np.array_equal(annotation.data, expected), record.name
        counts = np.bincount(source.ravel(), minlength=5)
        assert annotation.record.counts == {c + 1: int(counts[c]) for c in range(4)
                                            if counts[c]}
        totals_source += counts
        totals_store[4] += annotation.data.size - annotation.record.annotated_voxels
        for value, n in annotation.record.counts.items():
            totals_store[value - 1] += n
        assert annotation.record.author.startswith("ACDC manual scribbles")
    assert totals_store.tolist() == totals_source.tolist()  # per class, and unannotated


def test_acdc_labels_are_ground_truth_not_annotations(acdc_project, acdc_dir):
    project, _ = acdc_project
    record = project.volumes(split="val")[0]
    gt = project.ground_truth(record)
    assert np.array_equal(gt, read_labels(acdc_dir / "labels" / f"{record.name}.nii.gz").data)
    assert {a.kind for a in project.annotations(record)} == {"scribble"}
    t = volume_targets(project, record)
    assert t.kinds == ("scribble",) and not t.annotated.any()
    known = t.labels >= 0
    assert (t.labels[known] == gt[known]).mean() > 0.99  # manual strokes agree with GT


def test_acdc_import_resumes_without_duplicates(acdc_project, acdc_dir):
    project, _ = acdc_project
    again = import_acdc(project, acdc_dir)
    assert again.ok and again.added == [] and len(again.existing) == 160
    assert again.annotations == again.ground_truths == 0
    assert len(project.annotations(all_versions=True)) == 160


@pytest.mark.parametrize("names, expected", [
    (["patient001_frame01", "patient001_frame12"], {"patient001_frame01": "ED",
                                                    "patient001_frame12": "ES"}),
    (["patient090_frame04", "patient090_frame11"], {"patient090_frame04": "ED",
                                                    "patient090_frame11": "ES"}),
])
def test_acdc_frames(names, expected):
    tags = acdc_tags(names)
    assert {n: t["frame"] for n, t in tags.items()} == expected
    assert tags[names[0]]["subject"] == names[0].split("_")[0]


def test_acdc_needs_the_cardiac_schema(tmp_path):
    from napari_weakseg.schema import LabelSchema

    (tmp_path / "acdc" / "images").mkdir(parents=True)
    with Project.create(tmp_path / "p", LabelSchema.from_names(["bg", "liver"])) as project:
        with pytest.raises(StoreError, match="cardiac schema"):
            import_acdc(project, tmp_path / "acdc")


def test_folder_with_subfolders_acdc_layout(tmp_path):
    cases = make_cohort(1, seed=3, shape=TINY_SHAPE, spacing=TINY_SPACING)
    write_cohort(tmp_path / "cohort", cases)
    assert detect_format(tmp_path / "cohort") == "folder"  # no splits.json
    with Project.create(tmp_path / "p") as project:
        report = import_folder(project, tmp_path / "cohort", copy=True)
        assert report.ok and len(report.added) == 2 and report.annotations == 2
        for case in cases:
            assert np.array_equal(project.annotation(case.name, "scribble").data, case.scribble)
            assert np.array_equal(project.ground_truth(case.name), case.ground_truth)
        written = export_annotations(project, tmp_path / "out", "scribble", encoding="wsl4mis")
        for path in written:
            source = tmp_path / "cohort" / "scribbles" / path.name
            assert np.array_equal(read_labels(path).data, read_labels(source).data)


def test_flat_folder_by_name_patterns_and_bad_files(tmp_path):
    good, other = tiny_case(0), tiny_case(1)
    write_case(tmp_path / "flat", good)
    write_labels(tmp_path / "flat" / f"{good.name}_scribble.nii.gz", good.scribble,
                 good.geometry)
    write_case(tmp_path / "flat", other, labels=False)
    # a label file on the wrong grid is reported and skipped; the rest imports
    write_labels(tmp_path / "flat" / f"{other.name}_seg.nii.gz", other.ground_truth[:2],
                 _two_slice_geometry(other.geometry))
    with Project.create(tmp_path / "p") as project:
        report = import_folder(project, tmp_path / "flat", scribble_encoding="ours",
                               labels_as="dense", tags={"dataset": "flat"})
        assert sorted(report.added) == [good.name, other.name]
        assert len(report.errors) == 1 and f"{other.name}_seg.nii.gz" in report.errors[0]
        assert "shape" in report.errors[0]
        assert np.array_equal(project.annotation(good.name, "scribble").data, good.scribble)
        dense = project.annotation(good.name, "dense")
        assert np.array_equal(dense.data, good.ground_truth + 1)
        assert dense.declared_classes == (0, 1, 2, 3)
        assert project.ground_truth(good.name) is None
        assert project.volume(other.name).tags == {"dataset": "flat"}
        before = files_under(project.root)
        assert import_folder(project, tmp_path / "flat", scribble_encoding="ours",
                             labels_as="dense").added == []
        assert files_under(project.root) == before


def _two_slice_geometry(geometry):
    from napari_weakseg.io.geometry import VolumeGeometry

    return VolumeGeometry((2,) + geometry.shape[1:], geometry.affine, geometry.spacing)
