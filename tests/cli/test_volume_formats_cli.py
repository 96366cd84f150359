"""DICOM series, NRRD and MHA through ``weakseg info|add|import|predict`` and the napari
reader: one geometry contract, predictions as NIfTI on the input's grid."""

from __future__ import annotations

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

from napari_weakseg.cli import main  # noqa: E402
from napari_weakseg.io import read_any, read_labels, read_volume  # noqa: E402
from napari_weakseg.store import Project  # noqa: E402
from tests.io.test_sitk import make_image, write_dicom_series  # noqa: E402


@pytest.fixture
def inputs(tmp_path):
    image, array = make_image(shape=(4, 32, 36))
    write_dicom_series(image, tmp_path / "inputs" / "patient7_cine")
    sitk.WriteImage(image, str(tmp_path / "inputs" / "slicer.nrrd"))
    labels = sitk.GetImageFromArray((array > 500).astype(np.uint8))
    labels.CopyInformation(image)
    sitk.WriteImage(labels, str(tmp_path / "inputs" / "slicer_seg.nrrd"))
    sitk.WriteImage(image, str(tmp_path / "inputs" / "other.mha"))
    return tmp_path / "inputs", array


def test_info_reads_every_format(inputs, capsys):
    folder, _ = inputs
    assert main(["info", str(folder / "patient7_cine"), str(folder / "slicer.nrrd"),
                 str(folder / "other.mha")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("4 × 32 × 36 voxels (z/y/x)" in ln for ln in lines)
    codes = {ln.split("mm, ")[1].split(";")[0] for ln in lines}
    assert len(codes) == 1  # the same orientation code for the same image


def test_add_converts_to_nifti_on_the_same_grid(inputs, tmp_path, capsys):
    folder, array = inputs
    project_dir = tmp_path / "project"
    assert main(["init", str(project_dir)]) == 0
    assert main(["add", str(project_dir), str(folder / "patient7_cine"),
                 str(folder / "slicer.nrrd"), "--tag", "dataset=local"]) == 0
    assert main(["add", str(project_dir), str(folder / "other.mha"), "--reference"]) == 1
    out = capsys.readouterr().out
    assert "added patient7_cine" in out and "added slicer" in out
    assert "--reference applies to NIfTI files only" in out
    with Project.open(project_dir) as project:
        for name, source in (("patient7_cine", folder / "patient7_cine"),
                             ("slicer", folder / "slicer.nrrd")):
            record = project.volume(name)
            image = project.read_image(record)
            assert record.copied and record.tags["dataset"] == "local"
            assert np.array_equal(image.data, array)
            assert image.geometry.same_grid(read_any(source).geometry)
        assert not any(p.name.startswith(".import-") for p in project_dir.iterdir())


def test_add_with_ground_truth_in_nrrd(inputs, tmp_path, capsys):
    folder, array = inputs
    project_dir = tmp_path / "project"
    main(["init", str(project_dir)])
    assert main(["add", str(project_dir), str(folder / "slicer.nrrd"), "--ground-truth",
                 str(folder / "slicer_seg.nrrd")]) == 0
    with Project.open(project_dir) as project:
        truth = project.ground_truth(project.volume("slicer"))
    assert np.array_equal(truth, (array > 500).astype(np.uint8))


def test_import_a_folder_of_series_and_files(inputs, tmp_path, capsys):
    folder, array = inputs
    project_dir = tmp_path / "project"
    assert main(["import", str(project_dir), str(folder)]) == 0
    out = capsys.readouterr().out
    assert "3 volumes added" in out and "1 ground truths" in out
    with Project.open(project_dir) as project:
        assert sorted(r.name for r in project.volumes()) == ["other", "patient7_cine",
                                                             "slicer"]
        assert project.has_ground_truth(project.volume("slicer"))
    assert main(["import", str(project_dir), str(folder)]) == 0  # resumable: nothing new
    assert "0 volumes added, 3 already present" in capsys.readouterr().out
    # a single series imports too
    assert main(["import", str(tmp_path / "p2"), str(folder / "patient7_cine")]) == 0


def test_predict_on_a_dicom_series_writes_nifti_on_its_grid(inputs, tmp_path, capsys):
    from tests.inference.test_export import make_tiny_model

    folder, _ = inputs
    model = make_tiny_model(tmp_path / "model")
    out = tmp_path / "predictions"
    assert main(["predict", str(model), str(folder / "patient7_cine"),
                 str(folder / "other.mha"), "--out", str(out)]) == 0
    for name, source in (("patient7_cine", folder / "patient7_cine"),
                         ("other", folder / "other.mha")):
        grid = read_any(source).geometry
        labels = read_labels(out / f"{name}.nii.gz", like=grid)
        assert labels.data.shape == (4, 32, 36)
        assert read_volume(out / f"{name}.nii.gz").geometry.same_grid(grid)


def test_napari_reader_takes_folders_and_files(inputs, tmp_path):
    from napari_weakseg.plugin import get_reader, write_labels

    from npe2 import PluginManager

    folder, array = inputs
    pm = PluginManager()
    pm.discover()
    for path in (folder / "patient7_cine", folder / "slicer.nrrd", folder / "other.mha"):
        assert any(r.plugin_name == "napari-weakseg"
                   for r in pm.iter_compatible_readers([str(path)])), path
    assert get_reader(str(tmp_path)) is None  # a folder without DICOM files
    assert get_reader(str(folder / "notes.txt")) is None
    reader = get_reader(str(folder / "patient7_cine"))
    assert reader is not None
    ((data, kwargs, kind),) = reader(str(folder / "patient7_cine"))
    assert kind == "image" and np.array_equal(data, array)
    assert kwargs["name"] == "patient7_cine" and kwargs["axis_labels"] == ("z", "y", "x")
    geometry = read_any(folder / "slicer.nrrd").geometry
    np.testing.assert_allclose(kwargs["metadata"]["affine"], geometry.affine, atol=1e-6)
    assert kwargs["scale"] == pytest.approx(geometry.spacing)
    layers = get_reader([str(folder / "slicer.nrrd"), str(folder / "slicer_seg.nrrd")])(
        [str(folder / "slicer.nrrd"), str(folder / "slicer_seg.nrrd")])
    assert [kind for _, _, kind in layers] == ["image", "labels"]
    # labels drawn on the DICOM layer save as NIfTI on its grid
    (path,) = write_labels(str(tmp_path / "drawn"), (data > 500).astype(np.uint8), kwargs)
    saved = read_labels(path, like=geometry)
    assert np.array_equal(saved.data, (array > 500).astype(np.uint8))


def test_napari_reader_gives_one_layer_per_series(tmp_path):
    from napari_weakseg.plugin import get_reader

    first, _ = make_image(shape=(3, 16, 16), seed=1)
    second, _ = make_image(shape=(5, 16, 16), seed=2)
    write_dicom_series(first, tmp_path / "study", series_uid="1.2.3.1")
    write_dicom_series(second, tmp_path / "study", series_uid="1.2.3.2", first_number=50)
    layers = get_reader(str(tmp_path / "study"))(str(tmp_path / "study"))
    assert sorted(d.shape[0] for d, _, _ in layers) == [3, 5]
    assert {kw["name"] for _, kw, _ in layers} == {"study [1]", "study [2]"}
