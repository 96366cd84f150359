"""WSL4MIS ``.h5`` files: read/write, normalisation, and project round trips."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from napari_weakseg.io import VolumeError
from napari_weakseg.io.wsl4mis import normalise_wsl4mis, read_wsl4mis_h5, write_wsl4mis_h5
from napari_weakseg.store import Project
from napari_weakseg.store.importers import detect_format, export_wsl4mis, import_wsl4mis
from napari_weakseg.weak.encoding import to_wsl4mis
from tests.store.helpers import TINY_SPACING, tiny_case


def _wsl_case(seed: int):
    case = tiny_case(seed)
    return case, normalise_wsl4mis(case.image), case.ground_truth, to_wsl4mis(case.scribble, 4)


def test_write_read_round_trip_with_the_reference_dtypes(tmp_path):
    case, image, label, scribble = _wsl_case(0)
    path = write_wsl4mis_h5(tmp_path / "patient001_frame01.h5", image, label, scribble)
    with h5py.File(path) as handle:
        assert sorted(handle.keys()) == ["image", "label", "scribble"]
        assert handle["image"].dtype == np.float32 and handle["label"].dtype == np.uint8
        assert handle["scribble"].dtype == np.uint16
        assert handle["image"].compression == "gzip" and not dict(handle.attrs)
    back = read_wsl4mis_h5(path)
    assert np.array_equal(back.image, image)
    assert np.array_equal(back.label, label) and np.array_equal(back.scribble, scribble)
    assert set(np.unique(back.scribble)) <= {0, 1, 2, 3, 4}
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_normalisation_clips_at_the_99th_percentile_and_scales_to_unit_range(rng):
    image = rng.normal(100, 10, size=(4, 32, 32))
    image[0, 0, :5] = 10_000  # outliers are clipped
    out = normalise_wsl4mis(image)
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == 1
    assert (out == 1).sum() >= 0.005 * out.size  # ~1 % of voxels at the clip value
    assert not normalise_wsl4mis(np.full((2, 2, 2), 7.0)).any()


@pytest.mark.parametrize("content, message", [
    ({"label": np.zeros((2, 2), np.uint8)}, "no 'image' dataset"),
    ({"image": np.zeros((2,), np.float32)}, "1D"),
    ({"image": np.zeros((2, 3, 3), np.float32), "label": np.zeros((2, 3, 2))}, "'label' shape"),
    ({"image": np.full((1, 2, 2), np.nan, np.float32)}, "NaN"),
])
def test_bad_files_are_refused_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as handle:
        for key, value in content.items():
            handle[key] = value
    with pytest.raises(VolumeError, match=message) as info:
        read_wsl4mis_h5(path)
    assert "bad.h5" in str(info.value)


def test_not_hdf5_and_missing_files(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"nope")
    with pytest.raises(VolumeError, match="x.h5: not a readable HDF5"):
        read_wsl4mis_h5(tmp_path / "x.h5")
    with pytest.raises(VolumeError, match="does not exist"):
        read_wsl4mis_h5(tmp_path / "y.h5")


def test_project_round_trip(tmp_path):
    cases = []
    for seed, name in [(0, "patient001_frame01"), (0, "patient001_frame12")]:
        case, image, label, scribble = _wsl_case(seed)
        write_wsl4mis_h5(tmp_path / "h5" / f"{name}.h5", image, label, scribble)
        cases.append((name, image, label, scribble))
    write_wsl4mis_h5(tmp_path / "h5" / "patient001_frame01_slice_1.h5", image[1])  # 2D: refused
    assert detect_format(tmp_path / "h5") == "wsl4mis"
    with Project.create(tmp_path / "p") as project:
        report = import_wsl4mis(project, tmp_path / "h5", spacing=TINY_SPACING)
        assert sorted(report.added) == [c[0] for c in cases]
        assert len(report.errors) == 1 and "slice file" in report.errors[0]
        record = project.volume("patient001_frame12")
        assert record.tags["frame"] == "ES" and record.tags["dataset"] == "WSL4MIS"
        assert record.spacing == pytest.approx(TINY_SPACING)
        written = export_wsl4mis(project, tmp_path / "out", normalise=False)
        assert not list(project.root.glob(".import-*"))  # staging folder removed
    assert len(written) == 2
    for name, image, label, scribble in cases:
        back = read_wsl4mis_h5(tmp_path / "out" / f"{name}.h5")
        assert np.array_equal(back.image, image)
        assert np.array_equal(back.label, label)
        assert np.array_equal(back.scribble, scribble)
