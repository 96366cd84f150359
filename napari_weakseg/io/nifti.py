"""NIfTI reading and writing under the geometry contract of :mod:`.geometry`.

These functions are the core I/O API; the napari reader/writer contributions and the store
call them. Writes are atomic: the file appears complete under its final name or not at all.
Reads treat every file as hostile: the size a header claims is checked (zero, over the
ceiling, beyond the file) before anything that size is allocated, the gzip CRC-32/length
of a ``.nii.gz`` is verified, and every problem is a :class:`VolumeError` naming the file
(the header's checks: :mod:`.nifti_header`; the bounded gzip reader: :mod:`.nifti_gzip`).
"""

from __future__ import annotations

import math
import os
import re
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path, fsync_dir, fsync_file  # noqa: F401  (re-exported)
from .errors import GeometryMismatchError, VolumeError
from .geometry import VolumeGeometry
from .nifti_gzip import GZIP_MAGIC, GzipStream, zlib_problem
from .nifti_header import (MAX_VOLUME_BYTES, MAX_VOLUME_BYTES_ENV, RawHeader,
                           Refused, check_geometry, check_header, header_layout,
                           max_volume_bytes, parse_raw_header)

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


# --- reading: every byte checked before it is trusted -------------------------------------
#
# A header is attacker-controlled: it can claim a 2 GB volume in a 59-byte file, a zero or
# negative size, a complex or RGB voxel type, or a data offset inside itself; the gzip
# stream of a .nii.gz can be truncated, extended or bit-flipped. ``read_volume`` therefore
# parses the fixed-size header itself first, computes the size it claims and refuses it
# (zero, over the ceiling, larger than an uncompressed file) before allocating anything
# large; then it reads exactly that many bytes -- a .nii.gz through a bounded streaming
# decompressor that checks every gzip member's CRC-32 and length (nibabel's reader checks
# neither, so a flipped bit would otherwise become a silently wrong intensity) -- and only
# then lets nibabel interpret the header (extensions, affine, scaling).


def _read_raw_gzip(fobj, limit: int, allow_4d: bool) -> tuple[RawHeader, bytearray]:
    magic = fobj.read(2)
    if magic != GZIP_MAGIC:
        start = magic + fobj.read(2)
        hint = ""
        try:
            header_layout(start)
            hint = "; it looks like an uncompressed NIfTI file: rename it to .nii"
        except Refused:
            pass
        raise Refused(f"not a readable NIfTI file (a .nii.gz name but not gzip data{hint})")
    fobj.seek(0)
    stream = GzipStream(fobj)
    raw = bytearray()
    stream.read_into(raw, 4)
    version, sizeof_hdr, order = header_layout(bytes(raw))
    stream.read_into(raw, sizeof_hdr - len(raw))
    if len(raw) < sizeof_hdr:
        raise Refused(f"is truncated or corrupt: the file ends inside the {sizeof_hdr}-byte "
                      "header")
    header = parse_raw_header(bytes(raw), version, order)
    check_header(header, limit, allow_4d)
    stream.read_into(raw, header.total_bytes - len(raw))
    if len(raw) < header.total_bytes:
        raise Refused(f"is truncated or corrupt: it decompresses to {len(raw)} bytes but "
                      f"its header claims {header.total_bytes}")
    if stream.read(1):
        raise Refused(f"is corrupt: it decompresses to more than the {header.total_bytes} "
                      "bytes its header claims")
    return header, raw


def _read_raw_nii(fobj, limit: int, allow_4d: bool) -> tuple[RawHeader, bytearray]:
    size = os.fstat(fobj.fileno()).st_size
    first = fobj.read(4)
    version, sizeof_hdr, order = header_layout(first)
    block = first + fobj.read(sizeof_hdr - 4)
    if len(block) < sizeof_hdr:
        raise Refused(f"is truncated or corrupt: the file ends inside the {sizeof_hdr}-byte "
                      "header")
    header = parse_raw_header(block, version, order)
    check_header(header, limit, allow_4d)
    if size < header.total_bytes:
        raise Refused(f"is truncated or corrupt: the file holds {size} bytes but its header "
                      f"claims {header.total_bytes} ({header.vox_offset} of header and "
                      f"{header.data_bytes} of voxel data)")
    raw = bytearray(header.total_bytes)
    view = memoryview(raw)
    view[: len(block)] = block
    filled = len(block)
    while filled < len(raw):
        got = fobj.readinto(view[filled:])
        if not got:
            raise Refused(f"is truncated or corrupt: the file ended after {filled} of the "
                          f"{header.total_bytes} bytes its header claims")
        filled += got
    view.release()
    return header, raw


def _decode(raw_header: RawHeader, raw: bytearray, shape: tuple[int, ...]):
    """``(image, data)``: nibabel's reading of the header (and extensions), the scaled
    array in NIfTI axis order. ``raw`` has been size-checked against the header."""
    import nibabel as nib
    from nibabel.volumeutils import apply_read_scaling

    klass = nib.Nifti1Image if raw_header.version == 1 else nib.Nifti2Image
    image = klass.from_bytes(bytes(raw[: raw_header.vox_offset]))
    proxy = image.dataobj  # nibabel's own reading of shape, type and data offset
    if (tuple(int(d) for d in proxy.shape) != raw_header.shape
            or proxy.dtype != raw_header.dtype or int(proxy.offset) != raw_header.vox_offset):
        raise Refused("has a corrupt header: its fields are inconsistent (nibabel reads "
                      f"shape {proxy.shape}, {proxy.dtype}, data offset {proxy.offset})")
    unscaled = np.frombuffer(raw, dtype=raw_header.dtype, count=math.prod(raw_header.shape),
                             offset=raw_header.vox_offset).reshape(shape, order="F")
    # Scaling exactly as nibabel's ArrayProxy.__array__ applies it.
    slope, inter = np.asanyarray(proxy.slope), np.asanyarray(proxy.inter)
    if np.can_cast(inter, slope.dtype):
        inter = inter.astype(slope.dtype)
    return image, apply_read_scaling(unscaled, slope, inter)


def _read_volume(path: Path, allow_4d: bool, check_finite: bool, limit: int) -> Volume:
    gz = str(path).lower().endswith(".gz")
    # O_NONBLOCK: opening a FIFO (or a device) named *.nii must not hang before fstat.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fobj:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused("is not a regular file")
        if info.st_size == 0:
            raise Refused("not a readable NIfTI file (the file is empty)")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        raw_header, raw = (_read_raw_gzip if gz else _read_raw_nii)(fobj, limit, allow_4d)
    shape = check_header(raw_header, limit, allow_4d)
    # errstate: a hostile header's NaN/huge fields must not print numpy cast warnings; the
    # checks below refuse them explicitly.
    with np.errstate(all="ignore"):
        image, data = _decode(raw_header, raw, shape)
        del raw
    if check_finite and np.issubdtype(data.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise Refused(f"contains {bad} NaN/Inf intensities out of {data.size} voxels")
    with np.errstate(all="ignore"):
        affine, zooms = check_geometry(image, shape)
    geometry = VolumeGeometry(
        shape=tuple(reversed(shape)),
        affine=affine,
        spacing=tuple(reversed(zooms)),
        header=image.header,
        source=str(path),
    )
    return Volume(np.ascontiguousarray(data.T), geometry)


def read_volume(path: str | os.PathLike, *, allow_4d: bool = True,
                check_finite: bool = True, max_bytes: int | None = None) -> Volume:
    """Read a 3D (or 4D cine) NIfTI image.

    Returns the array in ``(Z, Y, X)`` / ``(T, Z, Y, X)`` order with its geometry. Every
    problem with the file raises :class:`VolumeError` naming it (never another exception
    type): a missing or non-regular file; not NIfTI; a zero-size, negative or absurd
    shape; a claimed size over the ceiling (``max_bytes``, else
    ``$WEAKSEG_MAX_VOLUME_BYTES``, else :data:`MAX_VOLUME_BYTES` bytes of voxel data),
    refused before anything that size is allocated; a truncated, extended or corrupt file
    (for ``.nii.gz`` the gzip CRC-32 and length are verified); complex, RGB or other
    non-numeric voxel types; a non-finite or singular affine or voxel size; fewer than 3
    or more than 4 dimensions (4 when ``allow_4d`` is false); and NaN/Inf intensities
    (when ``check_finite``). An invalid ceiling raises :class:`~napari_weakseg.errors.
    OptionError`.
    """
    limit = max_volume_bytes(max_bytes)
    path = Path(path)
    if not path.exists():
        raise VolumeError(path, "file does not exist")
    if not is_nifti_path(path):
        raise VolumeError(path, "not a NIfTI file (expected a .nii or .nii.gz name)")
    if path.is_dir():
        raise VolumeError(path, "is a directory, not a NIfTI file")
    try:
        return _read_volume(path, allow_4d, check_finite, limit)
    except Refused as exc:
        raise VolumeError(path, exc.problem) from None
    except VolumeError:
        raise
    except zlib.error as exc:
        raise VolumeError(path, zlib_problem(exc)) from exc
    except MemoryError as exc:
        raise VolumeError(path, "is too large to read into the available memory") from exc
    except OSError as exc:
        raise VolumeError(path, f"cannot be read ({exc.strerror or exc})") from exc
    except Exception as exc:  # nibabel raises many types (HeaderDataError, struct.error, ...)
        raise VolumeError(path, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") \
            from exc


def read_labels(path: str | os.PathLike, *, like: VolumeGeometry | None = None,
                max_bytes: int | None = None) -> Volume:
    """Read an integer label volume; with ``like``, refuse one that is off that grid."""
    volume = read_volume(path, check_finite=True, max_bytes=max_bytes)
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


__all__ = ["LABEL_NAME_PATTERN", "MAX_LABEL_VALUES", "MAX_VOLUME_BYTES", "MAX_VOLUME_BYTES_ENV",
           "NIFTI_SUFFIXES", "Volume", "atomic_path", "atomic_save", "check_same_grid",
           "fsync_dir", "fsync_file", "is_nifti_path", "label_dtype", "looks_like_labels",
           "max_volume_bytes", "read_labels", "read_volume", "strip_nifti_suffix",
           "write_labels", "write_volume"]
