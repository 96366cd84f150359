"""``weakseg train | predict | evaluate`` on a tiny synthetic project."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from napari_weakseg.cli import main
from napari_weakseg.store import Project
from napari_weakseg.store.importers import import_folder
from napari_weakseg.synthetic import make_cohort, write_cohort


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    write_cohort(root / "data", make_cohort(2, seed=3, shape=(3, 32, 32)))
    with Project.open_or_create(root / "project") as project:
        import_folder(project, root / "data", copy=False)
        for record in project.volumes():
            project.set_tags(record, split="val" if record.name.startswith("synth001") else "train")
    return root


def test_train_predict_evaluate(project_dir, capsys):
    model = project_dir / "model"
    code = main(["train", str(project_dir / "project"), "--method", "pce", "--profile",
                 "quick-cpu", "--iterations", "4", "--size", "32", "--width", "4",
                 "--batch-size", "2", "--out", str(model)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "completed at iteration 4" in out and "validation @ 4" in out
    config = json.loads((model / "config.json").read_text())
    assert config["method"] == "pce" and config["training"]["iterations_done"] == 4
    with Project.open(project_dir / "project") as project:
        (run,) = project.runs()
        assert run.status == "completed" and run.method == "pce"
        (registered,) = project.models()
        assert registered.run_id == run.id
        assert (project.root / registered.path / "config.json").exists()

    images = sorted((project_dir / "data" / "images").glob("synth001*.nii.gz"))
    assert main(["predict", str(model), *map(str, images), "--out",
                 str(project_dir / "pred"), "--uncertainty"]) == 0
    for image in images:
        pred = nib.load(str(project_dir / "pred" / image.name))
        source = nib.load(str(image))
        assert pred.shape == source.shape
        np.testing.assert_array_equal(pred.affine, source.affine)
        assert pred.get_data_dtype() == np.uint8
        assert (project_dir / "pred" / image.name.replace(".nii.gz", "_entropy.nii.gz")).exists()
    capsys.readouterr()
    assert main(["evaluate", str(project_dir / "pred"), str(project_dir / "data" / "labels")]) == 0
    out = capsys.readouterr().out
    assert "2 volumes" in out and "| LV |" in out
    metrics = json.loads((project_dir / "pred" / "metrics.json").read_text())
    assert set(metrics["volumes"]) == {i.name.replace(".nii.gz", "") for i in images}


def test_train_refuses_project_without_fitting_annotations(project_dir, capsys):
    code = main(["train", str(project_dir / "project"), "--method", "refineseg",
                 "--iterations", "2", "--size", "32", "--width", "4",
                 "--out", str(project_dir / "nope")])
    assert code == 1
    assert "no volume carries annotations the method 'refineseg'" in capsys.readouterr().out
    assert not (project_dir / "nope").exists()


def test_predict_skips_bad_input_and_fails(project_dir, tmp_path, capsys):
    model = project_dir / "model"
    if not model.exists():
        pytest.skip("needs the model of test_train_predict_evaluate")
    bad = tmp_path / "bad.nii.gz"
    bad.write_text("not nifti")
    assert main(["predict", str(model), str(bad), "--out", str(tmp_path / "p")]) == 1
    assert "not a readable NIfTI" in capsys.readouterr().err
