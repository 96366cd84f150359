"""NIfTI reading and writing under the geometry contract of :mod:`.geometry`.

These functions are the core I/O API; the napari reader/writer contributions and the store
call them. Writes are atomic: the file appears complete under its final name or not at all.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path, fsync_dir, fsync_file  # noqa: F401  (re-exported)
from .errors import GeometryMismatchError, VolumeError
from .geometry import VolumeGeometry

NIFTI_SUFFIXES = (".nii", ".nii.gz")
LABEL_NAME_PATTERN = re.compile(r"(_gt|_seg|_label|_labels|_scribble|_scribbles|_mask)(\b|_|\.)",
                                re.IGNORECASE)
MAX_LABEL_VALUES = 32


@dataclass(frozen=True, eq=False)
class Volume:
    """An array in memory order with its geometry (``data.shape == geometry.shape``)."""

    data: np.ndarray
    geometry: VolumeGeometry


def is_nifti_path(path: str | os.PathLike) -> bool:
    name = str(path).lower()
    return name.endswith(NIFTI_SUFFIXES)


def strip_nifti_suffix(name: str) -> str:
    """``"patient001_frame01.nii.gz"`` → ``"patient001_frame01"``."""
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_volume(path: str | os.PathLike, *, allow_4d: bool = True,
                check_finite: bool = True) -> Volume:
    """Read a 3D (or 4D cine) NIfTI image.

    Returns the array in ``(Z, Y, X)`` / ``(T, Z, Y, X)`` order with its geometry. Raises
    :class:`VolumeError` naming the file for: a missing file, a file that is not NIfTI, a
    truncated/corrupt file, fewer than 3 or more than 4 dimensions (4 when ``allow_4d`` is
    false), and NaN/Inf intensities (when ``check_finite``).
    """
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise VolumeError(path, "file does not exist")
    if not is_nifti_path(path):
        raise VolumeError(path, "not a NIfTI file (expected a .nii or .nii.gz name)")
    try:
        image = nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for non-NIfTI content
        raise VolumeError(path, f"not a readable NIfTI file ({exc})") from exc
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise VolumeError(path, f"not a NIfTI image ({type(image).__name__})")
    shape = image.shape
    while len(shape) > 3 and shape[-1] == 1:  # trailing singleton axes (e.g. X,Y,Z,1)
        shape = shape[:-1]
    if len(shape) < 3:
        raise VolumeError(path, f"is {len(shape)}D with shape {tuple(shape)}; a 3D volume "
                                "(or a 4D cine series) is required")
    if len(shape) > 4 or (len(shape) == 4 and not allow_4d):
        raise VolumeError(path, f"has shape {tuple(shape)}; a 3D volume is required here")
    try:
        data = np.asanyarray(image.dataobj).reshape(shape)
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        raise VolumeError(path, f"is truncated or corrupt: the voxel data cannot be read "
                                f"({exc})") from exc
    if check_finite and np.issubdtype(data.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise VolumeError(path, f"contains {bad} NaN/Inf intensities out of {data.size} "
                                    "voxels")
    header = image.header
    zooms = tuple(float(z) for z in header.get_zooms()[: len(shape)])
    geometry = VolumeGeometry(
        shape=tuple(reversed(shape)),
        affine=np.asarray(image.affine, dtype=np.float64),
        spacing=tuple(reversed(zooms)),
        header=header,
        source=str(path),
    )
    return Volume(np.ascontiguousarray(data.T), geometry)


def read_labels(path: str | os.PathLike, *, like: VolumeGeometry | None = None) -> Volume:
    """Read an integer label volume; with ``like``, refuse one that is off that grid."""
    volume = read_volume(path, check_finite=True)
    data = volume.data
    if not np.issubdtype(data.dtype, np.integer):
        rounded = np.rint(data)
        if not np.array_equal(rounded, data):
            raise VolumeError(path, "label volume holds non-integer values")
        data = rounded.astype(np.int32)
    if data.size and data.min() < 0:
        raise VolumeError(path, f"label volume holds negative values (min {data.min()})")
    if like is not None:
        check_same_grid(volume.geometry, like, path)
    return Volume(data, volume.geometry)


def check_same_grid(geometry: VolumeGeometry, reference: VolumeGeometry,
                    path: str | os.PathLike | None = None) -> None:
    """Raise :class:`GeometryMismatchError` unless both lie on the same voxel grid."""
    if geometry.spatial_shape != reference.spatial_shape:
        raise GeometryMismatchError(
            path, f"shape {geometry.spatial_shape} (z, y, x) differs from the image's "
                  f"{reference.spatial_shape}")
    if not np.allclose(geometry.affine, reference.affine, atol=1e-4):
        raise GeometryMismatchError(
            path, "affine differs from the image's (different orientation or position):\n"
                  f"{np.array2string(geometry.affine, precision=4)}\nvs\n"
                  f"{np.array2string(reference.affine, precision=4)}")
    if not np.allclose(geometry.spatial_spacing, reference.spatial_spacing, atol=1e-4):
        raise GeometryMismatchError(
            path, f"voxel spacing {geometry.spatial_spacing} differs from the image's "
                  f"{reference.spatial_spacing}")


def looks_like_labels(path: str | os.PathLike, data: np.ndarray) -> bool:
    """Heuristic for the napari reader: a name like ``*_gt``/``*_seg``/``*_label``, or an
    integer array with at most :data:`MAX_LABEL_VALUES` distinct values."""
    if LABEL_NAME_PATTERN.search(Path(path).name):
        return True
    if not np.issubdtype(data.dtype, np.integer):
        return False
    # A coarse look first: an image has many values in any large sample.
    sample = data.reshape(-1)[:: max(1, data.size // 200_000)]
    if np.unique(sample).size > MAX_LABEL_VALUES:
        return False
    return np.unique(data).size <= MAX_LABEL_VALUES


def label_dtype(data: np.ndarray, path: str | os.PathLike | None = None) -> np.dtype:
    """uint8 when every value fits, else uint16; refuse negative or > 65535 values."""
    if data.size == 0:
        return np.dtype(np.uint8)
    low, high = int(data.min()), int(data.max())
    if low < 0:
        raise VolumeError(path, f"labels hold a negative value ({low})")
    if high > np.iinfo(np.uint16).max:
        raise VolumeError(path, f"labels hold {high}, more than uint16 can store")
    return np.dtype(np.uint8 if high <= np.iinfo(np.uint8).max else np.uint16)


def write_volume(path: str | os.PathLike, data: np.ndarray, geometry: VolumeGeometry,
                 *, dtype: np.dtype | None = None, is_label: bool = False) -> Path:
    """Write ``data`` (memory order) on ``geometry``'s grid, atomically.

    The reference header is copied, so qform/sform (codes, quaternions, rows) and pixdim
    are those of the reference image. Labels get slope 1 / intercept 0 and
    ``cal_min``/``cal_max`` of their value range.
    """
    import nibabel as nib

    path = Path(path)
    if not is_nifti_path(path):
        raise VolumeError(path, "output name must end with .nii or .nii.gz")
    data = np.asarray(data)
    if data.shape[-3:] != geometry.spatial_shape or data.ndim not in (3, 4):
        raise GeometryMismatchError(
            path, f"array shape {data.shape} does not fit the image grid {geometry.shape}")
    target_dtype = np.dtype(dtype) if dtype is not None else data.dtype
    if target_dtype == np.bool_:
        target_dtype = np.dtype(np.uint8)
    nifti_data = np.asarray(data, dtype=target_dtype).T
    if geometry.header is not None:
        header = geometry.header.copy()
        # affine=None keeps the header's qform/sform fields exactly as they were
        same = np.allclose(header.get_best_affine(), geometry.affine, atol=1e-6)
        image = nib.Nifti1Image(nifti_data, None if same else geometry.affine, header=header)
    else:
        image = nib.Nifti1Image(nifti_data, geometry.affine)
        image.header.set_zooms(tuple(reversed(geometry.spacing))[: nifti_data.ndim])
        image.set_qform(geometry.affine, code=1)
        image.set_sform(geometry.affine, code=1)
        image.header.set_xyzt_units("mm", "sec")
    image.set_data_dtype(target_dtype)
    if data.ndim == 3 and len(image.header.get_zooms()) > 3:
        image.header.set_zooms(image.header.get_zooms()[:3])
    if is_label:
        image.header.set_slope_inter(1.0, 0.0)
        image.header["cal_min"] = float(data.min()) if data.size else 0.0
        image.header["cal_max"] = float(data.max()) if data.size else 0.0
    atomic_save(image, path)
    return path


def write_labels(path: str | os.PathLike, labels: np.ndarray,
                 geometry: VolumeGeometry) -> Path:
    """Write an integer label array on the grid, affine and header of its image
    (uint8, or uint16 when values exceed 255)."""
    labels = np.asarray(labels)
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise VolumeError(path, f"labels must be integers, got {labels.dtype}")
    return write_volume(path, labels, geometry, dtype=label_dtype(labels, path), is_label=True)


def atomic_save(image, path: Path) -> None:
    """Save a nibabel image atomically (see :mod:`.atomic`)."""
    suffix = ".nii.gz" if str(path).lower().endswith(".gz") else ".nii"
    with atomic_path(path, suffix=".tmp" + suffix) as tmp:
        image.to_filename(str(tmp))
