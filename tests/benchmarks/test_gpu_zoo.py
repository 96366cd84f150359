"""benchmarks/gpu_zoo.py (issue 14): the ACDC pack carried to a GPU machine holds what the
training reads — normalised images within 8-bit quantisation, scribbles in our encoding,
spacing, the same inner split as ``acdc_data`` — and a candidate trains from it and comes
back as a loadable model folder."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_zoo.py"
PATIENTS = 12  # the inner split takes 10 patients: at least 11 are needed


def _module():
    spec = importlib.util.spec_from_file_location("gpu_zoo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fake_acdc(tmp_path_factory) -> Path:
    """12 patients × 2 frames of (X, Y, Z) = (24, 20, 2) volumes in the ACDC layout."""
    import nibabel as nib

    root = tmp_path_factory.mktemp("acdc")
    for sub in ("images", "labels", "scribbles"):
        (root / sub).mkdir()
    rng = np.random.default_rng(0)
    cases = []
    for p in range(1, PATIENTS + 1):
        for frame in (1, 12):
            case = f"patient{p:03d}_frame{frame:02d}"
            cases.append(case)
            affine = np.diag([1.4, 1.6, 8.0, 1.0])
            truth = np.zeros((24, 20, 2), np.uint8)
            truth[6:18, 5:15] = 2
            truth[9:15, 8:12] = 3
            truth[2:6, 5:15] = 1
            image = (truth.astype(np.int32) * 300 + rng.integers(0, 200, truth.shape)).astype(np.int16)
            scribble = np.full(truth.shape, 4, np.uint8)
            scribble[11, 9:11, 0] = 3
            scribble[0, :, 1] = 0
            nib.save(nib.Nifti1Image(image, affine), root / "images" / f"{case}.nii.gz")
            nib.save(nib.Nifti1Image(truth, affine), root / "labels" / f"{case}.nii.gz")
            nib.save(nib.Nifti1Image(scribble, affine), root / "scribbles" / f"{case}.nii.gz")
    (root / "splits.json").write_text(json.dumps({"train": cases, "val": []}))
    return root


def test_pack_round_trip_matches_the_acdc_loader(fake_acdc, tmp_path):
    from napari_weakseg.datasets.acdc import acdc_data

    gpu_zoo = _module()
    pack = tmp_path / "acdc.npz.xz"
    gpu_zoo.pack(fake_acdc, pack)
    packed = gpu_zoo.load_pack(pack)
    direct = acdc_data(fake_acdc, "scribble", inner_val=10)
    assert [v.name for v in packed.train] == [v.name for v in direct.train]
    assert [v.name for v in packed.val] == [v.name for v in direct.val]
    assert len(packed.train) == 4 and len(packed.val) == 20
    for ours, theirs in zip(packed.train + packed.val, direct.train + direct.val):
        assert ours.image.shape == theirs.image.shape
        assert np.abs(ours.image - theirs.image).max() <= 0.5 / 255 + 1e-6
        assert ours.spacing == pytest.approx(theirs.spacing)
        for key in ("labels", "valid", "annotated"):
            np.testing.assert_array_equal(ours.targets[key], theirs.targets[key])
        np.testing.assert_array_equal(ours.reference, theirs.reference)
    # scribble voxels are labelled, everything else is "unknown" (-1)
    assert set(np.unique(packed.train[0].targets["labels"])) == {-1, 0, 3}  # unknown, background, LV


def test_candidate_trains_from_the_pack_and_comes_back_loadable(fake_acdc, tmp_path):
    from napari_weakseg.nets.model_folder import load_model

    gpu_zoo = _module()
    pack = tmp_path / "acdc.npz.xz"
    gpu_zoo.pack(fake_acdc, pack)
    assert gpu_zoo.parse_candidate("b:effdnet:batch=16,use_fadc=true") == (
        "b", "effdnet", {"batch_size": 16}, {"use_fadc": True})
    gpu_zoo.train_one("t:pce:batch=2,width=4,size=32", str(pack), str(tmp_path / "out"),
                      str(tmp_path / "work"), 5.0, "cpu", 1, 2, 2)
    back = tmp_path / "out" / "t"
    assert sorted(p.name for p in back.iterdir()) == ["config.json", "weights.pt"]
    net, config = load_model(back)
    assert config["training"]["batch_size"] == 2 and config["network"]["base_width"] == 4
    assert config["training"]["iterations_done"] == 2
    assert "quantised to 8 bits" in config["training"]["data"]
    log = (tmp_path / "work" / "t" / "log.txt").read_text()
    assert "completed at iteration 2" in log
