"""NIfTI reader/writer: geometry contract, bit-exact round trips, clear errors."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from napari_weakseg.io import (
    GeometryMismatchError,
    VolumeError,
    VolumeGeometry,
    check_same_grid,
    looks_like_labels,
    read_labels,
    read_volume,
    write_labels,
    write_volume,
)

GEOMETRY_FIELDS = ["qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d",
                   "qoffset_x", "qoffset_y", "qoffset_z", "srow_x", "srow_y", "srow_z"]


def oblique_affine(spacing_xyz=(0.8, 1.3, 6.0)) -> np.ndarray:
    """A rotated, translated voxel→world affine with anisotropic voxels."""
    a, b = np.deg2rad(25), np.deg2rad(-10)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(spacing_xyz)
    affine[:3, 3] = (-71.5, 23.25, 140.0)
    return affine


def write_phantom(path, dtype=np.int16, shape_xyz=(9, 7, 5), sform_code=1, qform_code=2):
    """Asymmetric phantom: every voxel has a distinct value; file stores (X, Y, Z)."""
    data = np.arange(np.prod(shape_xyz)).reshape(shape_xyz).astype(dtype)
    image = nib.Nifti1Image(data, oblique_affine())
    image.set_qform(oblique_affine(), code=qform_code)
    image.set_sform(oblique_affine(), code=sform_code)
    image.to_filename(str(path))
    return data, image


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64, np.uint8])
def test_read_puts_slices_first_and_keeps_geometry(tmp_path, suffix, dtype):
    data_xyz, image = write_phantom(tmp_path / f"phantom{suffix}", dtype=dtype)
    volume = read_volume(tmp_path / f"phantom{suffix}")
    assert volume.data.shape == (5, 7, 9)
    assert volume.data.dtype == dtype
    # array[k, j, i] == nifti[i, j, k] for every voxel
    np.testing.assert_array_equal(volume.data, data_xyz.transpose(2, 1, 0))
    assert volume.data[4, 0, 0] == data_xyz[0, 0, 4]
    np.testing.assert_allclose(volume.geometry.affine, image.affine)
    np.testing.assert_allclose(volume.geometry.spacing, (6.0, 1.3, 0.8), rtol=1e-6)
    assert volume.geometry.axis_labels == ("z", "y", "x")


def _roundtrip_through_labels_layer(labels_volume, image_geometry, out_path):
    """read → napari Labels layer (reader contribution) → writer contribution → read."""
    from napari.layers import Labels

    from napari_weakseg.plugin import write_labels as writer_contribution

    kwargs = image_geometry.to_layer_kwargs()
    layer = Labels(labels_volume, name="labels", **kwargs)
    data, meta, layer_type = layer.as_layer_data_tuple()
    assert layer_type == "labels"
    written = writer_contribution(str(out_path), data, meta)
    return read_volume(written[0])


def test_phantom_roundtrip_through_layer_is_bit_exact(tmp_path):
    write_phantom(tmp_path / "image.nii.gz", sform_code=4, qform_code=1)
    image = read_volume(tmp_path / "image.nii.gz")
    labels = (image.data % 4).astype(np.uint8)
    back = _roundtrip_through_labels_layer(labels, image.geometry, tmp_path / "out.nii.gz")
    np.testing.assert_array_equal(back.data, labels)
    assert back.data.dtype == np.uint8
    np.testing.assert_array_equal(back.geometry.affine, image.geometry.affine)
    assert back.geometry.spacing == image.geometry.spacing
    for field in GEOMETRY_FIELDS:
        np.testing.assert_array_equal(back.geometry.header[field], image.geometry.header[field])
    assert nib.aff2axcodes(back.geometry.affine) == nib.aff2axcodes(image.geometry.affine)


def test_acdc_roundtrip_through_layer_is_bit_exact(tmp_path, acdc_dir):
    name = "patient002_frame01.nii.gz"
    image = read_volume(acdc_dir / "images" / name)
    truth = read_labels(acdc_dir / "labels" / name, like=image.geometry)
    back = _roundtrip_through_labels_layer(truth.data, image.geometry, tmp_path / name)
    np.testing.assert_array_equal(back.data, truth.data)
    original = nib.load(str(acdc_dir / "labels" / name))
    rewritten = nib.load(str(tmp_path / name))
    np.testing.assert_array_equal(np.asarray(rewritten.dataobj), np.asarray(original.dataobj))
    np.testing.assert_array_equal(rewritten.affine, original.affine)
    for field in GEOMETRY_FIELDS + ["pixdim"]:
        np.testing.assert_array_equal(rewritten.header[field], original.header[field])
    assert nib.aff2axcodes(rewritten.affine) == ("L", "P", "S")


def test_acdc_image_roundtrip_keeps_voxels(tmp_path, acdc_dir):
    image = read_volume(acdc_dir / "images" / "patient002_frame12.nii.gz")
    write_volume(tmp_path / "copy.nii.gz", image.data, image.geometry)
    back = read_volume(tmp_path / "copy.nii.gz")
    assert back.data.dtype == image.data.dtype
    np.testing.assert_array_equal(back.data, image.data)
    assert back.geometry.same_grid(image.geometry)


def test_labels_above_255_are_uint16(tmp_path):
    geometry = VolumeGeometry.from_spacing((2, 3, 4), (5.0, 1.0, 1.0))
    labels = np.zeros((2, 3, 4), np.int32)
    labels[1, 2, 3] = 300
    write_labels(tmp_path / "big.nii.gz", labels, geometry)
    back = read_volume(tmp_path / "big.nii.gz")
    assert back.data.dtype == np.uint16 and back.data[1, 2, 3] == 300


def test_4d_cine_reads_as_time_series(tmp_path):
    data = np.random.default_rng(0).random((6, 5, 4, 3)).astype(np.float32)  # X, Y, Z, T
    image = nib.Nifti1Image(data, np.diag([1.5, 1.5, 8.0, 1.0]))
    image.header.set_zooms((1.5, 1.5, 8.0, 30.0))
    image.to_filename(str(tmp_path / "cine.nii.gz"))
    volume = read_volume(tmp_path / "cine.nii.gz")
    assert volume.data.shape == (3, 4, 5, 6)
    assert volume.geometry.axis_labels == ("t", "z", "y", "x")
    assert volume.geometry.spacing == (30.0, 8.0, 1.5, 1.5)
    with pytest.raises(VolumeError, match="3D volume is required"):
        read_volume(tmp_path / "cine.nii.gz", allow_4d=False)


def _truncated(path):
    write_phantom(path, dtype=np.float32, shape_xyz=(40, 40, 8))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _not_nifti(path):
    path.write_bytes(b"this is a text file, not an image\n" * 20)


def _two_d(path):
    nib.Nifti1Image(np.zeros((8, 8), np.float32), np.eye(4)).to_filename(str(path))


def _nan(path):
    data = np.ones((4, 4, 3), np.float32)
    data[1, 2, 0] = np.nan
    data[0, 0, 1] = np.inf
    nib.Nifti1Image(data, np.eye(4)).to_filename(str(path))


def _gzip_garbage(path):
    path.write_bytes(gzip.compress(b"\x00" * 100))


@pytest.mark.parametrize("make_file, message", [
    (_truncated, "truncated or corrupt"),
    (_not_nifti, "not a readable NIfTI"),
    (_gzip_garbage, "not a readable NIfTI"),
    (_two_d, "is 2D"),
    (_nan, "2 NaN/Inf intensities"),
])
def test_bad_files_get_clear_errors_naming_the_file(tmp_path, make_file, message):
    path = tmp_path / "bad.nii.gz"
    make_file(path)
    with pytest.raises(VolumeError, match=message) as info:
        read_volume(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name, message", [
    ("missing.nii.gz", "does not exist"),
    ("image.png", "does not exist"),
])
def test_missing_files(tmp_path, name, message):
    with pytest.raises(VolumeError, match=message):
        read_volume(tmp_path / name)


def test_wrong_suffix(tmp_path):
    (tmp_path / "image.png").write_bytes(b"png")
    with pytest.raises(VolumeError, match="not a NIfTI file"):
        read_volume(tmp_path / "image.png")


def test_geometry_mismatch_is_refused_and_nothing_written(tmp_path):
    geometry = VolumeGeometry.from_spacing((3, 4, 5), (5.0, 1.0, 1.0))
    with pytest.raises(GeometryMismatchError, match="does not fit"):
        write_labels(tmp_path / "x.nii.gz", np.zeros((3, 4, 6), np.uint8), geometry)
    assert not any(tmp_path.iterdir())
    other = VolumeGeometry.from_spacing((3, 4, 5), (5.0, 1.0, 2.0))
    with pytest.raises(GeometryMismatchError, match="affine differs"):
        check_same_grid(other, geometry, "labels.nii.gz")


@pytest.mark.parametrize("name, data, expected", [
    ("case_gt.nii.gz", np.random.default_rng(0).random((3, 4, 4)), True),
    ("case_seg.nii", np.zeros((3, 4, 4), np.float32), True),
    ("case.nii.gz", np.random.default_rng(0).integers(0, 4, (3, 8, 8)), True),
    ("case.nii.gz", np.arange(3 * 8 * 8).reshape(3, 8, 8), False),
    ("case.nii.gz", np.random.default_rng(0).random((3, 8, 8)), False),
])
def test_label_detection(name, data, expected):
    assert looks_like_labels(name, data) is expected


def test_write_is_atomic_no_temporary_left(tmp_path):
    geometry = VolumeGeometry.from_spacing((2, 3, 4), (5.0, 1.0, 1.0))
    write_labels(tmp_path / "a.nii.gz", np.ones((2, 3, 4), np.uint8), geometry)
    assert [p.name for p in tmp_path.iterdir()] == ["a.nii.gz"]
