"""The project store: volumes, versioned annotations, ground truth, runs, models."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest

from napari_weakseg.io import GeometryMismatchError, VolumeError, read_labels, write_labels
from napari_weakseg.io.geometry import VolumeGeometry
from napari_weakseg.schema import LabelSchema
from napari_weakseg.store import (SCHEMA_VERSION, CorruptFileError, ImageChangedError,
                                  ImageMissingError, ManifestError, NotFoundError, Project,
                                  StoreError)
from napari_weakseg.store import manifest
from napari_weakseg.weak.encoding import AnnotationValueError
from napari_weakseg.weak.targets import volume_targets
from tests.store.helpers import files_under, tiny_case, write_case


@pytest.fixture
def case():
    return tiny_case(0)


@pytest.fixture
def project(tmp_path):
    with Project.create(tmp_path / "proj") as project:
        yield project


@pytest.fixture
def volume(project, case, tmp_path):
    paths = write_case(tmp_path / "src", case)
    return project.add_volume(paths["image"], tags={"dataset": "synthetic", "split": "train"})


# -- project & manifest ------------------------------------------------------------------------
def test_create_and_reopen_keep_the_schema(tmp_path):
    schema = LabelSchema.from_names(["background", "liver", "tumour"])
    Project.create(tmp_path / "p", schema).close()
    with Project.open(tmp_path / "p") as project:
        assert project.schema.names == ["background", "liver", "tumour"]
        assert project.num_classes == 3
    with pytest.raises(StoreError, match="already exists"):
        Project.create(tmp_path / "p")
    with pytest.raises(NotFoundError, match="not a napari-weakseg project"):
        Project.open(tmp_path / "nothing")


def test_manifest_is_wal_with_a_schema_version(project):
    conn = sqlite3.connect(project.manifest_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"meta", "volumes", "volume_tags", "annotations", "ground_truth", "runs",
            "models"} <= tables
    conn.close()


def test_a_newer_manifest_is_refused_untouched(project):
    project.close()
    conn = sqlite3.connect(project.manifest_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = project.manifest_path.read_bytes()
    with pytest.raises(ManifestError, match="newer"):
        Project.open(project.root)
    assert project.manifest_path.read_bytes() == before


def test_migrations_run_from_an_empty_database(tmp_path):
    conn = manifest.connect(tmp_path / "m.sqlite", create=True)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(manifest.MIGRATIONS)
    conn.close()
    conn = manifest.connect(tmp_path / "m.sqlite")  # idempotent
    conn.close()


def test_a_corrupt_manifest_is_reported(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "project.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ManifestError, match="project.sqlite"):
        Project.open(tmp_path / "bad")


# -- volumes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("copy", [True, False])
def test_add_volume_copies_or_references(project, case, tmp_path, copy):
    paths = write_case(tmp_path / "src", case)
    record = project.add_volume(paths["image"], copy=copy, tags={"subject": "s1", "frame": "ED"})
    assert record.name == case.name and record.copied == copy
    assert record.shape == case.image.shape
    assert np.allclose(record.affine, case.geometry.affine)
    assert record.spacing == pytest.approx(case.geometry.spacing)
    assert (project.root in record.image_path.parents) == copy
    image = project.read_image(record)
    assert np.allclose(image.data, case.image)
    assert record.tags == {"subject": "s1", "frame": "ED"}


def test_volumes_filter_by_tags(project, tmp_path):
    for seed, split, frame in [(0, "train", "ED"), (1, "train", "ES"), (2, "val", "ED")]:
        paths = write_case(tmp_path / "src", tiny_case(seed), labels=False)
        project.add_volume(paths["image"], tags={"split": split, "frame": frame})
    assert [v.name for v in project.volumes(split="train")] == ["tiny000", "tiny001"]
    assert [v.name for v in project.volumes(split="train", frame="ES")] == ["tiny001"]
    assert len(project.volumes(split=["train", "val"])) == 3
    assert [v.id for v in project.volumes(dataset=None)] == [v.id for v in project.volumes()]
    project.set_tags("tiny002", split="test", frame=None)
    assert project.volume("tiny002").tags == {"split": "test"}
    with pytest.raises(StoreError, match="split must be one of"):
        project.set_tags("tiny002", split="training")


def test_duplicate_names_and_bad_images_are_refused(project, volume, tmp_path):
    src = tmp_path / "src" / f"{volume.name}.nii.gz"
    with pytest.raises(StoreError, match="already exists"):
        project.add_volume(src)
    before = files_under(project.root / "images")
    nan = tiny_case(1).image.copy()
    nan[0, 0, 0] = np.nan
    from napari_weakseg.io import write_volume

    bad = write_volume(tmp_path / "nan.nii.gz", nan, tiny_case(1).geometry)
    with pytest.raises(VolumeError, match="nan.nii.gz: contains 1 NaN"):
        project.add_volume(bad)
    cine = np.zeros((2,) + nan.shape, np.float32)
    geometry4d = VolumeGeometry((2,) + nan.shape, tiny_case(1).geometry.affine,
                                (1.0,) + tiny_case(1).geometry.spacing)
    bad4d = write_volume(tmp_path / "cine.nii.gz", cine, geometry4d)
    with pytest.raises(VolumeError, match="cine.nii.gz: has shape"):
        project.add_volume(bad4d)
    assert files_under(project.root / "images") == before
    assert [v.name for v in project.volumes()] == [volume.name]


def test_moved_or_changed_images_are_detected(project, case, tmp_path):
    paths = write_case(tmp_path / "src", case)
    record = project.add_volume(paths["image"], copy=False)
    moved = tmp_path / "elsewhere.nii.gz"
    shutil.move(paths["image"], moved)
    with pytest.raises(ImageMissingError, match="missing"):
        project.read_image(record)
    assert "missing" in project.image_problem(record)
    with pytest.raises(ImageChangedError, match="checksum"):
        project.relocate_image(record, paths["labels"])
    record = project.relocate_image(record, moved)
    assert project.read_image(record).data.shape == case.image.shape
    from napari_weakseg.io import write_volume

    write_volume(moved, case.image * 2, case.geometry)  # changed in place
    with pytest.raises(ImageChangedError, match="changed since it was added"):
        project.read_image(record)
    assert not project.verify().ok


# -- annotations ------------------------------------------------------------------------------
def test_versions_are_kept_and_restorable(project, volume, case):
    first = project.save_annotation(volume, "scribble", case.scribble, author="ann")
    erased = case.scribble.copy()
    erased[1] = 0
    second = project.save_annotation(volume, "scribble", erased, author="ann")
    assert (first.version, second.version) == (1, 2)
    assert second.path != first.path and first.path.exists()
    assert np.array_equal(project.annotation(volume, "scribble").data, erased)
    assert np.array_equal(project.annotation(volume, "scribble", version=1).data, case.scribble)
    restored = project.restore_annotation(volume, "scribble", 1, author="boss")
    assert restored.version == 3 and restored.restored_from == 1
    assert np.array_equal(project.annotation(volume, "scribble").data, case.scribble)
    versions = project.annotation_versions(volume, "scribble")
    assert [v.version for v in versions] == [1, 2, 3]
    assert [v.author for v in versions] == ["ann", "ann", "boss"]
    assert versions[0].counts == {int(k): int(n) for k, n in zip(
        *np.unique(case.scribble[case.scribble > 0], return_counts=True))}
    assert [a.version for a in project.annotations(volume)] == [3]
    assert len(project.annotations(all_versions=True)) == 3
    with pytest.raises(NotFoundError, match="no version 9"):
        project.annotation(volume, "scribble", version=9)
    with pytest.raises(NotFoundError, match="no partial annotation"):
        project.annotation(volume, "partial")


def test_autosave_without_changes_adds_no_version(project, volume, case):
    first = project.save_annotation(volume, "sparse", case.scribble, declared_slices={0: None},
                                    if_changed=True)
    same = project.save_annotation(volume, "sparse", case.scribble.copy(),
                                   declared_slices={0: None}, if_changed=True)
    assert same.id == first.id
    redeclared = project.save_annotation(volume, "sparse", case.scribble,
                                         declared_slices={0: None, 1: None}, if_changed=True)
    assert redeclared.version == 2


def test_declarations_are_stored_and_drive_the_targets(project, volume, case):
    gt = case.ground_truth
    partial = np.where(gt == 3, 4, 0)
    project.save_annotation(volume, "partial", partial, declared_classes=["LV", "RV"])
    sparse = np.where(gt > 0, gt + 1, 0)
    sparse[1:] = 0
    project.save_annotation(volume, "sparse", sparse, declared_slices={0: None, 2: [1]})
    record = project.annotation(volume, "partial").record
    assert record.declared_classes == (1, 3)
    assert project.annotation(volume, "sparse").declared_slices == {0: (0, 1, 2, 3), 2: (1,)}
    t = volume_targets(project, volume)
    assert t.annotated[0].all()  # sparse slice 0: everything
    assert t.annotated[1].tolist() == [False, True, False, True]  # partial: RV, LV
    assert t.annotated[2].tolist() == [False, True, False, True]
    assert (t.labels[0] == gt[0]).all()


@pytest.mark.parametrize("kind, classes, slices, message", [
    ("partial", [7], None, "outside the schema"),
    ("partial", ["aorta"], None, "no class named"),
    ("scribble", [1], None, "declared classes apply to"),
    ("partial", None, {0: [1]}, "declared slices apply to sparse"),
    ("sparse", None, {9: [1]}, "slice 9 is outside"),
])
def test_bad_declarations_are_refused(project, volume, case, kind, classes, slices, message):
    with pytest.raises((StoreError, KeyError), match=message):
        project.save_annotation(volume, kind, case.scribble, declared_classes=classes,
                                declared_slices=slices)
    assert project.annotations(volume) == []


def _shifted(geometry: VolumeGeometry) -> VolumeGeometry:
    affine = geometry.affine.copy()
    affine[0, 3] += 5.0
    return VolumeGeometry(geometry.shape, affine, geometry.spacing)


@pytest.mark.parametrize("what", ["array shape", "file shape", "file affine", "layer affine",
                                  "values", "coarse_neg values", "empty", "float values"])
def test_refused_annotations_write_nothing(project, volume, case, tmp_path, what):
    kind, data, geometry, error = "scribble", case.scribble, None, GeometryMismatchError
    if what == "array shape":
        data = case.scribble[:, :-1]
    elif what == "file shape":
        g = case.geometry
        data = write_labels(tmp_path / "small.nii.gz", case.scribble[:2],
                            VolumeGeometry((2,) + g.shape[1:], g.affine, g.spacing))
    elif what == "file affine":
        data = write_labels(tmp_path / "moved.nii.gz", case.scribble, _shifted(case.geometry))
    elif what == "layer affine":
        geometry = _shifted(case.geometry)
    elif what == "values":
        data, error = case.scribble + 3, AnnotationValueError
    elif what == "coarse_neg values":
        kind, data, error = "coarse_neg", np.full(case.scribble.shape, 15), AnnotationValueError
    elif what == "empty":
        data, error = np.zeros_like(case.scribble), AnnotationValueError
    elif what == "float values":
        data, error = case.scribble + 0.5, AnnotationValueError
    before = files_under(project.root)
    before_rows = project.annotations(all_versions=True)
    with pytest.raises(error) as info:
        project.save_annotation(volume, kind, data, geometry=geometry)
    message = str(info.value)
    if isinstance(data, type(tmp_path)):
        assert data.name in message  # the file is named
    else:
        assert volume.name in message  # the volume is named
    assert project.annotations(all_versions=True) == before_rows
    assert {p for p in files_under(project.root) if "annotations" in p.parts} == \
        {p for p in before if "annotations" in p.parts}


def test_annotation_from_a_file_and_wsl4mis_encoding(project, volume, case, tmp_path):
    wsl = np.where(case.scribble == 0, 4, case.scribble.astype(int) - 1)
    path = write_labels(tmp_path / "scrib.nii.gz", wsl, case.geometry)
    project.save_annotation(volume, "scribble", path, encoding="wsl4mis")
    assert np.array_equal(project.annotation(volume, "scribble").data, case.scribble)
    empty_ok = project.save_annotation(volume, "scribble", np.zeros_like(case.scribble),
                                       allow_empty=True)
    assert empty_ok.version == 2 and empty_ok.annotated_voxels == 0


def test_strategies_separate_annotations_of_one_kind(project, volume, case):
    for name, radius in [("r1", 1), ("r3", 3)]:
        from napari_weakseg.weak.simulate import simulate_coarse_pos

        project.save_annotation(volume, "coarse_pos", simulate_coarse_pos(
            case.ground_truth, 4, radius=radius), strategy=name)
    assert project.strategies("coarse_pos") == ["r1", "r3"]
    assert project.annotation(volume, "coarse_pos", strategy="r3").version == 1
    t = volume_targets(project, volume)
    assert t.coarse_pos.shape[0] == 2 and t.pos_strategies == ("r1", "r3")
    with pytest.raises(StoreError, match="invalid strategy"):
        project.save_annotation(volume, "coarse_pos", case.scribble, strategy="a/b")


@pytest.mark.parametrize("encoding, expected", [
    ("ours", lambda s: s), ("wsl4mis", lambda s: np.where(s == 0, 4, s.astype(int) - 1)),
])
def test_export_annotation_on_the_image_grid(project, volume, case, tmp_path, encoding,
                                              expected):
    project.save_annotation(volume, "scribble", case.scribble)
    out = project.export_annotation(volume, "scribble", tmp_path / "out.nii.gz",
                                    encoding=encoding)
    back = read_labels(out, like=project.read_image(volume).geometry)
    assert np.array_equal(back.data, expected(case.scribble))


def test_coarse_neg_has_no_wsl4mis_export(project, volume, case, tmp_path):
    project.save_annotation(volume, "coarse_neg", np.where(case.ground_truth == 0, 8, 0))
    with pytest.raises(StoreError, match="WSL4MIS"):
        project.export_annotation(volume, "coarse_neg", tmp_path / "x.nii.gz",
                                  encoding="wsl4mis")


def test_tampered_files_are_detected_on_read(project, volume, case):
    record = project.save_annotation(volume, "scribble", case.scribble)
    write_labels(record.path, np.ones_like(case.scribble), volume.geometry)
    with pytest.raises(CorruptFileError, match="checksum"):
        project.annotation(volume, "scribble")
    report = project.verify()
    assert not report.ok and "checksum" in report.file_problems[0]


def test_orphans_are_listed_and_removed(project, volume, case):
    project.save_annotation(volume, "scribble", case.scribble)
    folder = next((project.root / "annotations").iterdir())
    # the temporary of an interrupted atomic write (io.atomic.atomic_path's naming)
    orphan = folder / ".scribble.default.20250101T000000-0123456789ab.nii.gz.k3j_x9q1.tmp.nii.gz"
    orphan.write_bytes(b"half a file")
    report = project.verify()
    assert report.ok and report.orphans == [orphan]
    assert project.remove_orphans() == []  # too young: may belong to a running write
    assert project.remove_orphans(min_age_s=0) == [orphan]
    assert project.annotation(volume, "scribble").data.shape == case.scribble.shape


# -- ground truth -----------------------------------------------------------------------------
def test_ground_truth_is_separate_and_versioned(project, volume, case, tmp_path):
    assert project.ground_truth(volume) is None and not project.has_ground_truth(volume)
    project.set_ground_truth(volume, tmp_path / "src" / f"{case.name}_gt.nii.gz")
    assert np.array_equal(project.ground_truth(volume), case.ground_truth)
    second = project.set_ground_truth(volume, np.zeros_like(case.ground_truth), source="manual")
    assert second.version == 2 and (project.ground_truth(volume) == 0).all()
    assert project.annotations(volume) == []  # never an annotation
    with pytest.raises(AnnotationValueError, match=r"outside the label schema: 4"):
        project.set_ground_truth(volume, case.ground_truth + 1)
    with pytest.raises(GeometryMismatchError):
        project.set_ground_truth(volume, case.ground_truth[:1])


# -- runs and models --------------------------------------------------------------------------
def test_runs_and_models(project, tmp_path):
    run = project.create_run("pce", {"iterations": 100, "lr": 0.01}, device="cpu",
                             out_dir=tmp_path / "run1")
    assert run.status == "created" and run.config["iterations"] == 100
    run = project.update_run(run.id, status="running", metrics={"loss": 1.5})
    assert run.started_at is not None and run.finished_at is None
    run = project.update_run(run.id, status="completed", metrics={"val_dice": 0.8})
    assert run.metrics == {"loss": 1.5, "val_dice": 0.8} and run.finished_at is not None
    with pytest.raises(StoreError, match="status"):
        project.update_run(run.id, status="exploded")
    with pytest.raises(NotFoundError):
        project.update_run(999, status="failed")
    project.create_run("full", {})
    assert [r.method for r in project.runs()] == ["pce", "full"]
    assert [r.id for r in project.runs(status="completed")] == [run.id]
    model = project.register_model("pce-1", "models/pce-1", method="pce", run_id=run.id,
                                   metrics={"val_dice": 0.8})
    assert model.path == project.root / "models" / "pce-1"
    assert project.model("pce-1").run_id == run.id
    assert [m.name for m in project.models(method="pce")] == ["pce-1"]
    with pytest.raises(StoreError, match="exists"):
        project.register_model("pce-1", "elsewhere")
