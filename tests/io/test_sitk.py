"""NRRD, MetaImage and DICOM series under the geometry contract: the same array, affine (RAS)
and spacing as the NIfTI file ITK writes for the same image; LPS → RAS; refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

from napari_weakseg.io import (VolumeError, VolumeGeometry, as_nifti, read_any,  # noqa: E402
                               read_labels, read_volume, volume_format, volume_name,
                               write_labels)
from napari_weakseg.io.sitk import (dicom_series, keep_locale,  # noqa: E402
                                    read_dicom_series, read_sitk_volume, sitk_geometry,
                                    to_sitk_image)

SPACING_IJK = (0.8, 0.9, 2.5)
ORIGIN_LPS = (-10.5, 20.25, 33.0)


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = (np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az),
                              np.sin(az))
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


DIRECTION = rotation(0.35, -0.5, 0.9)


def make_image(shape=(6, 20, 24), dtype=np.int16, seed=0, direction=DIRECTION,
               origin=ORIGIN_LPS, spacing=SPACING_IJK):
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 1000, size=shape).astype(dtype)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetDirection(tuple(np.asarray(direction, float).ravel()))
    image.SetOrigin(origin)
    return image, array


def write_dicom_series(image, folder: Path, *, series_uid="1.2.826.0.1.3680043.2.1125.7.1",
                       study_uid="1.2.826.0.1.3680043.2.1125.7", frame_times=None,
                       skip_slices=(), first_number=1) -> list[Path]:
    """One file per slice (SimpleITK's DICOM-series recipe): position, orientation, UIDs.
    ``frame_times``: a list of (image, trigger time ms) for a cine series. (GDCM's writer
    switches the process to the C locale: :func:`keep_locale` restores it.)"""
    with keep_locale():
        return _write_dicom_series(image, folder, series_uid=series_uid, study_uid=study_uid,
                                   frame_times=frame_times, skip_slices=skip_slices,
                                   first_number=first_number)


def _write_dicom_series(image, folder, *, series_uid, study_uid, frame_times, skip_slices,
                        first_number):
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    frames = frame_times or [(image, None)]
    direction = np.asarray(frames[0][0].GetDirection()).reshape(3, 3)
    orientation = "\\".join(f"{v:.10f}" for v in list(direction[:, 0]) + list(direction[:, 1]))
    written, number = [], first_number
    for frame, trigger in frames:
        for k in range(frame.GetSize()[2]):
            if k in skip_slices:
                continue
            piece = frame[:, :, k]
            tags = {"0008|0060": "MR", "0020|000d": study_uid, "0020|000e": series_uid,
                    "0020|0037": orientation, "0008|0008": "DERIVED\\SECONDARY",
                    "0018|0050": f"{frame.GetSpacing()[2]:.6f}",
                    "0020|0013": str(number),
                    "0020|0032": "\\".join(f"{v:.10f}" for v in
                                           frame.TransformIndexToPhysicalPoint((0, 0, k)))}
            if trigger is not None:
                tags["0018|1060"] = f"{trigger:.1f}"
            for key, value in tags.items():
                piece.SetMetaData(key, value)
            path = folder / f"IM{number:04d}.dcm"
            writer.SetFileName(str(path))
            writer.Execute(piece)
            written.append(path)
            number += 1
    return written


@pytest.fixture
def image_and_nifti(tmp_path):
    image, array = make_image()
    nifti = tmp_path / "reference.nii.gz"
    sitk.WriteImage(image, str(nifti))  # ITK's own LPS → RAS conversion
    return image, array, read_volume(nifti)


def assert_same_volume(volume, reference, array=None):
    assert volume.data.shape == reference.data.shape
    assert np.array_equal(volume.data, reference.data)
    if array is not None:
        assert np.array_equal(volume.data, array)
    # the NIfTI sform is float32: equal to its precision
    np.testing.assert_allclose(volume.geometry.affine, reference.geometry.affine, atol=1e-5)
    np.testing.assert_allclose(volume.geometry.spacing, reference.geometry.spacing, rtol=1e-6)
    assert volume.geometry.same_grid(reference.geometry)
    assert volume.geometry.shape == reference.geometry.shape


@pytest.mark.parametrize("suffix", [".mha", ".nrrd", ".mhd", ".nhdr"])
def test_file_formats_match_the_nifti_of_the_same_image(tmp_path, image_and_nifti, suffix):
    image, array, reference = image_and_nifti
    path = tmp_path / f"volume{suffix}"
    sitk.WriteImage(image, str(path))
    assert volume_format(path) == "sitk" and volume_name(path) == "volume"
    volume = read_any(path)
    assert_same_volume(volume, reference, array)
    assert volume.geometry.header is None and volume.geometry.source == str(path)
    assert read_sitk_volume(path).geometry.same_grid(volume.geometry)


def test_lps_is_converted_to_ras(tmp_path):
    image, _ = make_image()
    path = tmp_path / "v.mha"
    sitk.WriteImage(image, str(path))
    geometry = read_any(path).geometry
    assert np.allclose(geometry.affine[:3, 3], [10.5, -20.25, 33.0])  # (-x, -y, z)
    for index in [(0, 0, 0), (3, 7, 2), (23, 19, 5)]:               # (i, j, k)
        lps = np.asarray(image.TransformIndexToPhysicalPoint(index))
        ras = geometry.affine @ np.array([*index, 1.0])
        np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-9)
    assert geometry.spacing == (2.5, 0.9, 0.8)                         # memory order (z, y, x)


def test_to_sitk_image_is_the_inverse(tmp_path, image_and_nifti):
    image, array, reference = image_and_nifti
    back = to_sitk_image(reference.data, reference.geometry)
    np.testing.assert_allclose(back.GetOrigin(), ORIGIN_LPS, atol=1e-4)
    np.testing.assert_allclose(np.reshape(back.GetDirection(), (3, 3)), DIRECTION, atol=1e-5)
    np.testing.assert_allclose(back.GetSpacing(), SPACING_IJK, rtol=1e-6)
    assert sitk_geometry(back).same_grid(reference.geometry)


@pytest.mark.parametrize("open_file", [False, True])
def test_dicom_series_matches_the_nifti_of_the_same_image(tmp_path, image_and_nifti, open_file):
    image, array, reference = image_and_nifti
    files = write_dicom_series(image, tmp_path / "series")
    path = files[3] if open_file else tmp_path / "series"
    assert volume_format(path) == "dicom" and volume_name(path) == "series"
    volume = read_any(path)
    assert_same_volume(volume, reference, array)
    assert volume.geometry.source == str(tmp_path / "series")


def test_dicom_files_without_suffix_are_recognised(tmp_path, image_and_nifti):
    image, array, reference = image_and_nifti
    for path in write_dicom_series(image, tmp_path / "series"):
        path.rename(path.with_suffix(""))
    assert volume_format(tmp_path / "series") == "dicom"
    assert_same_volume(read_any(tmp_path / "series"), reference, array)


def test_dicom_slices_are_sorted_by_position_not_by_name(tmp_path, image_and_nifti):
    image, array, reference = image_and_nifti
    files = write_dicom_series(image, tmp_path / "series")
    for i, path in enumerate(reversed(files)):        # names now run against the position
        path.rename(path.with_name(f"x{i:03d}.tmp"))
    for path in (tmp_path / "series").iterdir():
        path.rename(path.with_suffix(".dcm"))
    assert_same_volume(read_any(tmp_path / "series"), reference, array)


def test_folder_with_two_series_is_refused_with_their_list(tmp_path):
    first, _ = make_image(seed=1)
    second, _ = make_image(shape=(4, 20, 24), seed=2, direction=np.eye(3))
    write_dicom_series(first, tmp_path / "mixed", series_uid="1.2.3.1")
    write_dicom_series(second, tmp_path / "mixed", series_uid="1.2.3.2", first_number=100)
    with pytest.raises(VolumeError, match=r"holds 2 DICOM series: .*1\.2\.3\.1 \(6 files\)"):
        read_any(tmp_path / "mixed")
    assert set(dicom_series(tmp_path / "mixed")) == {"1.2.3.1", "1.2.3.2"}
    assert read_dicom_series(tmp_path / "mixed", series_id="1.2.3.2").data.shape == (4, 20, 24)
    # one file stands for its own series
    assert read_any(tmp_path / "mixed" / "IM0100.dcm").data.shape == (4, 20, 24)


def test_cine_series_becomes_4d_with_the_frame_interval(tmp_path):
    frames = [make_image(shape=(5, 16, 18), seed=t, direction=np.eye(3)[:, [0, 2, 1]] *
                         [1, 1, -1]) for t in range(3)]
    write_dicom_series(None, tmp_path / "cine",
                       frame_times=[(im, 40.0 * t) for t, (im, _) in enumerate(frames)])
    volume = read_any(tmp_path / "cine")
    assert volume.data.shape == (3, 5, 16, 18)
    assert np.array_equal(volume.data, np.stack([a for _, a in frames]))
    assert volume.geometry.spacing == pytest.approx((0.04, 2.5, 0.9, 0.8))
    assert volume.geometry.axis_labels == ("t", "z", "y", "x")
    with pytest.raises(VolumeError, match="cine series of 3 frames × 5 slices"):
        read_any(tmp_path / "cine", allow_4d=False)


def test_missing_slice_is_refused_not_stretched(tmp_path):
    image, _ = make_image()
    write_dicom_series(image, tmp_path / "gap", skip_slices=(3,))
    with pytest.raises(VolumeError, match="not evenly spaced"):
        read_any(tmp_path / "gap")


def test_4d_nrrd_reads_as_t_z_y_x(tmp_path):
    array = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    image = sitk.GetImageFromArray(array, isVector=False)
    image.SetSpacing((1.0, 1.5, 4.0, 0.03))
    path = tmp_path / "cine.nrrd"
    sitk.WriteImage(image, str(path))
    volume = read_any(path)
    assert volume.data.shape == (2, 3, 4, 5) and np.array_equal(volume.data, array)
    assert volume.geometry.spacing == pytest.approx((0.03, 4.0, 1.5, 1.0))
    with pytest.raises(VolumeError, match="a 3D volume is required here"):
        read_any(path, allow_4d=False)


@pytest.mark.parametrize("case,match", [
    ("rgb", "only real-valued scalar volumes"),
    ("2d", "is 2D"),
    ("nan", "NaN/Inf"),
    ("garbage", "not a readable image"),
    ("missing", "does not exist"),
    ("ceiling", "more than the limit"),
])
def test_refusals_name_the_file(tmp_path, case, match):
    path = tmp_path / "bad.mha"
    if case == "rgb":
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 5, 3), np.uint8), isVector=True),
                        str(path))
    elif case == "2d":
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5), np.int16)), str(path))
    elif case == "nan":
        data = np.zeros((3, 4, 5), np.float32)
        data[1, 1, 1] = np.nan
        sitk.WriteImage(sitk.GetImageFromArray(data), str(path))
    elif case == "garbage":
        path.write_bytes(b"not a metaimage at all\n" * 10)
    elif case == "ceiling":
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((30, 40, 50), np.int16)), str(path))
    with pytest.raises(VolumeError, match=match) as info:
        read_any(path, max_bytes=1000 if case == "ceiling" else None)
    assert str(path) in str(info.value)


def test_unknown_format_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(VolumeError, match="not a volume this tool reads"):
        read_any(path)
    assert volume_format(tmp_path) is None  # a folder without DICOM files


def test_as_nifti_keeps_the_dicom_grid_and_labels_land_on_it(tmp_path, image_and_nifti):
    image, array, reference = image_and_nifti
    write_dicom_series(image, tmp_path / "series")
    dicom = read_any(tmp_path / "series")
    nifti = as_nifti(tmp_path / "series", tmp_path / "out")
    assert nifti.name == "series.nii.gz"
    assert_same_volume(read_volume(nifti), dicom, array)
    # a prediction for the DICOM input: NIfTI on its grid
    labels = (dicom.data > 500).astype(np.uint8)
    out = write_labels(tmp_path / "pred.nii.gz", labels, dicom.geometry)
    back = read_labels(out, like=dicom.geometry)
    assert np.array_equal(back.data, labels)
    assert back.geometry.same_grid(reference.geometry)
    # NIfTI inputs are used as they are
    assert as_nifti(nifti, tmp_path / "elsewhere") == nifti


def test_reading_keeps_the_process_locale(tmp_path, image_and_nifti, monkeypatch):
    """GDCM may switch the process to the C locale (ASCII default encoding): the readers
    put it back."""
    import locale

    image, _, _ = image_and_nifti
    write_dicom_series(image, tmp_path / "series")
    sitk.WriteImage(image, str(tmp_path / "v.nrrd"))
    before = locale.setlocale(locale.LC_ALL, None)
    real = sitk.ImageSeriesReader.Execute

    def switching(self, *args):
        locale.setlocale(locale.LC_ALL, "C")
        return real(self, *args)

    monkeypatch.setattr(sitk.ImageSeriesReader, "Execute", switching)
    read_any(tmp_path / "series")
    read_any(tmp_path / "v.nrrd")
    assert locale.setlocale(locale.LC_ALL, None) == before


def test_sitk_is_imported_only_when_needed():
    import subprocess
    import sys

    code = ("import sys, napari_weakseg.io, napari_weakseg.plugin\n"
            "print('SimpleITK' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_from_spacing_geometry_round_trips_through_mha(tmp_path):
    geometry = VolumeGeometry.from_spacing((3, 4, 5), (2.0, 1.0, 0.5))
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    path = tmp_path / "g.mha"
    sitk.WriteImage(to_sitk_image(data, geometry), str(path))
    volume = read_any(path)
    assert np.array_equal(volume.data, data) and volume.geometry.same_grid(geometry)
