"""NRRD, MetaImage (MHA/MHD) and DICOM series, read with SimpleITK under the geometry contract
of :mod:`.geometry`.

Why SimpleITK: one library reads all three formats (and DICOM through GDCM: slice sorting
along the orientation normal, rescale slope/intercept, compressed transfer syntaxes) and
reports every image's geometry the same way -- origin, spacing and direction cosines.
pydicom alone parses DICOM tags but leaves the geometry (sorting slices, spacing from the
positions, orientation) to the caller, and does not read NRRD/MHA at all.

Conversion: SimpleITK's index order ``(i, j, k)`` is NIfTI's, and
``GetArrayFromImage`` returns ``(k, j, i)`` = our ``(Z, Y, X)`` memory order. Its physical
space is LPS (DICOM/ITK), ours RAS (nibabel), so::

    affine[:3, :3] = diag(-1, -1, 1) @ direction @ diag(spacing_ijk)
    affine[:3, 3]  = diag(-1, -1, 1) @ origin

which is the affine ITK itself writes into a NIfTI file of the same image (tested). Spacing
comes from the image (memory order, like ``pixdim``); ``header`` is ``None``: writers build a
NIfTI header from the affine and spacing. Nothing is resampled or re-oriented.

DICOM: a folder is one series (a folder holding several is refused with their list, unless
``series_id`` picks one; a single ``.dcm`` file stands for its series). Slices must be
evenly spaced along the orientation normal (no gaps, no gantry tilt). A cine series (the
same slice positions repeated over trigger times) becomes a 4D ``(T, Z, Y, X)`` volume with
the frame interval in seconds.
"""

from __future__ import annotations

import functools
import locale
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import VolumeError

if TYPE_CHECKING:
    from .nifti import Volume
from .geometry import VolumeGeometry

SITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
_POSITION_TOL = 0.01   # relative deviation of slice steps tolerated (of the mean step)


def _sitk():
    from .optional import require

    return require("SimpleITK", "", "reading NRRD, MetaImage and DICOM volumes")


@contextmanager
def keep_locale() -> Iterator[None]:
    """Restore the process locale after SimpleITK/GDCM calls: some GDCM paths (its DICOM
    writer at least) switch the whole process to the "C" locale, after which Python's
    default text encoding is ASCII (every ``open()`` without ``encoding=`` in napari and
    here would break on non-ASCII text)."""
    saved = locale.setlocale(locale.LC_ALL, None)
    try:
        yield
    finally:
        if locale.setlocale(locale.LC_ALL, None) != saved:
            locale.setlocale(locale.LC_ALL, saved)


def _locale_safe(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with keep_locale():
            return function(*args, **kwargs)
    return wrapper


def is_sitk_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(SITK_SUFFIXES)


def _has_dicom_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_file(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_file() and (path.name.lower().endswith(DICOM_SUFFIXES)
                               or _has_dicom_magic(path))


def looks_like_dicom_folder(path: str | os.PathLike, probe: int = 16) -> bool:
    """A folder whose files (the first ``probe`` looked at) include DICOM files: a ``.dcm``
    /``.ima`` name or the ``DICM`` preamble. Cheap; SimpleITK is not imported."""
    path = Path(path)
    if not path.is_dir():
        return False
    try:
        entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    except OSError:
        return False
    seen = 0
    for entry in entries:
        if not entry.is_file():
            continue
        if entry.name.lower().endswith(DICOM_SUFFIXES) or _has_dicom_magic(entry):
            return True
        seen += 1
        if seen >= probe:
            break
    return False


# -- geometry ---------------------------------------------------------------------------------
def sitk_geometry(image, source: str | None = None) -> VolumeGeometry:
    """The :class:`VolumeGeometry` of a 3D or 4D SimpleITK image (LPS → RAS)."""
    dim = image.GetDimension()
    size = tuple(int(s) for s in image.GetSize())
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ direction[:3, :3] @ np.diag(spacing[:3])
    affine[:3, 3] = LPS_TO_RAS @ origin[:3]
    return VolumeGeometry(shape=tuple(reversed(size)), affine=affine,
                          spacing=tuple(float(s) for s in reversed(spacing)), header=None,
                          source=source)


def to_sitk_image(data: np.ndarray, geometry: VolumeGeometry):
    """A 3D SimpleITK image of ``data`` (memory order) on ``geometry``'s grid (RAS → LPS);
    the inverse of :func:`sitk_geometry` (an affine with shear is refused)."""
    sitk = _sitk()
    data = np.asarray(data)
    if data.ndim != 3:
        raise VolumeError(geometry.source, f"a 3D array is needed, got shape {data.shape}")
    spacing = np.asarray(tuple(reversed(geometry.spatial_spacing)), dtype=np.float64)
    lps = LPS_TO_RAS @ np.asarray(geometry.affine, dtype=np.float64)[:3, :3]
    direction = lps / np.linalg.norm(lps, axis=0)
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise VolumeError(geometry.source, "the affine is sheared; SimpleITK images need "
                                           "orthogonal axes")
    image = sitk.GetImageFromArray(np.ascontiguousarray(data))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(v) for v in direction.ravel()))
    image.SetOrigin(tuple(float(v) for v in LPS_TO_RAS @ geometry.affine[:3, 3]))
    return image


def _check_image_info(reader, path: Path, limit: int, files: int = 1) -> None:
    """Refuse, before any voxel is read, what the geometry contract cannot hold: vector,
    complex or label-map voxels, a zero size, more voxel data than ``limit`` bytes.
    ``reader``: an ImageFileReader after ReadImageInformation (one file of ``files``)."""
    sitk = _sitk()
    size = tuple(int(s) for s in reader.GetSize())
    components = int(reader.GetNumberOfComponents())
    name = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    if components != 1 or any(word in name for word in ("complex", "vector", "label")):
        raise VolumeError(path, f"holds {name} voxels ({components} components per voxel); "
                                "only real-valued scalar volumes are supported")
    if any(s == 0 for s in size):
        raise VolumeError(path, f"has a zero-size image (size {size})")
    itemsize = _ITEMSIZE.get(name.split()[0] if name else "", 8)
    claimed = math.prod(size) * files * itemsize
    if claimed > limit:
        from .nifti import MAX_VOLUME_BYTES_ENV

        shown = "×".join(map(str, size)) + (f" × {files} files" if files > 1 else "")
        raise VolumeError(path, f"claims {claimed} bytes of voxel data ({shown}, {name}), "
                                f"more than the limit of {limit} bytes (raise it with "
                                f"{MAX_VOLUME_BYTES_ENV} or max_bytes=)")


_ITEMSIZE = {"8-bit": 1, "16-bit": 2, "32-bit": 4, "64-bit": 8}


def _finish(image, path: Path, allow_4d: bool, check_finite: bool, source: str) -> "Volume":
    from .nifti import Volume

    sitk = _sitk()
    dim = image.GetDimension()
    if dim < 3 or dim > 4:
        size = tuple(int(v) for v in image.GetSize())
        raise VolumeError(path, f"is {dim}D with size {size}; a 3D volume (or a 4D cine "
                                "series) is required")
    if dim == 4:
        direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(4, 4)
        if not (np.allclose(direction[3, :3], 0) and np.allclose(direction[:3, 3], 0)):
            raise VolumeError(path, "4D image whose fourth axis mixes with space; the fourth "
                                    "axis must be time")
    data = sitk.GetArrayFromImage(image)
    geometry = sitk_geometry(image, source)
    while data.ndim > 3 and data.shape[0] == 1:  # trailing singleton axes (…, 1)
        data = data[0]
        geometry = VolumeGeometry(tuple(data.shape), geometry.affine, geometry.spacing[1:],
                                  None, source)
    if data.ndim < 3:
        raise VolumeError(path, f"is {data.ndim}D with shape {tuple(data.shape)}; a 3D volume "
                                "(or a 4D cine series) is required")
    if data.ndim == 4 and not allow_4d:
        raise VolumeError(path, f"has shape {tuple(data.shape)}; a 3D volume is required here")
    _check_values(data, geometry, path, check_finite)
    return Volume(np.ascontiguousarray(data), geometry)


def _check_values(data: np.ndarray, geometry: VolumeGeometry, path: Path,
                  check_finite: bool) -> None:
    affine = geometry.affine
    if not np.all(np.isfinite(affine)) or abs(float(np.linalg.det(affine[:3, :3]))) == 0.0:
        raise VolumeError(path, "has a singular or non-finite voxel-to-world geometry")
    if any(not math.isfinite(s) or s <= 0 for s in geometry.spatial_spacing):
        raise VolumeError(path, f"has an invalid voxel size {geometry.spatial_spacing}")
    if check_finite and np.issubdtype(data.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise VolumeError(path, f"contains {bad} NaN/Inf intensities out of {data.size} "
                                    "voxels")


# -- NRRD / MetaImage -------------------------------------------------------------------------
@_locale_safe
def read_sitk_volume(path: str | os.PathLike, *, allow_4d: bool = True,
                     check_finite: bool = True, max_bytes: int | None = None) -> "Volume":
    """Read a 3D (or 4D) ``.nrrd``/``.nhdr``/``.mha``/``.mhd`` image; errors are
    :class:`VolumeError` naming the file (as :func:`~napari_weakseg.io.read_volume`)."""
    from .nifti import max_volume_bytes

    limit = max_volume_bytes(max_bytes)
    path = Path(path)
    if not path.exists():
        raise VolumeError(path, "file does not exist")
    if not path.is_file():
        raise VolumeError(path, "is not a regular file")
    if not is_sitk_path(path):
        raise VolumeError(path, f"not an NRRD or MetaImage file (expected "
                                f"{', '.join(SITK_SUFFIXES)})")
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        _check_image_info(reader, path, limit)
        image = reader.Execute()
    except VolumeError:
        raise
    except RuntimeError as exc:
        raise VolumeError(path, f"not a readable image ({_first_line(exc)})") from None
    except MemoryError as exc:
        raise VolumeError(path, "is too large to read into the available memory") from exc
    return _finish(image, path, allow_4d, check_finite, str(path))


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "Description:" in ln] or lines[-1:] or ["unknown error"]
    return useful[0].replace("Description:", "").strip()


# -- DICOM ------------------------------------------------------------------------------------
@_locale_safe
def dicom_series(folder: str | os.PathLike) -> dict[str, list[str]]:
    """``{series instance UID: file names sorted along the slice normal}`` of a folder (not
    recursive)."""
    sitk = _sitk()
    folder = Path(folder)
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    return {sid: list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid))
            for sid in ids}


def _series_files(path: Path, series_id: str | None) -> tuple[Path, str, list[str]]:
    sitk = _sitk()
    if path.is_file():
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise VolumeError(path, f"not a readable DICOM file ({_first_line(exc)})") \
                from None
        uid = reader.GetMetaData("0020|000e").strip() if reader.HasMetaDataKey(
            "0020|000e") else None
        if series_id is not None and uid is not None and uid != series_id:
            raise VolumeError(path, f"belongs to series {uid}, not {series_id}")
        series_id, path = uid, path.parent
    series = dicom_series(path)
    if not series:
        raise VolumeError(path, "no DICOM series found (no readable DICOM files in the "
                                "folder)")
    if series_id is None:
        if len(series) > 1:
            listing = "; ".join(f"{sid} ({len(files)} files)" for sid, files in series.items())
            raise VolumeError(path, f"holds {len(series)} DICOM series: {listing}; open one "
                                    "of its files (or pass series_id) to pick one")
        series_id = next(iter(series))
    if series_id not in series:
        raise VolumeError(path, f"has no DICOM series {series_id}")
    return path, series_id, series[series_id]


def _float_list(text: str) -> list[float]:
    return [float(v) for v in text.replace(" ", "").split("\\") if v]


def _slice_info(files: list[str]):
    """Per file: position along the normal, the position vector, the temporal key."""
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    infos = []
    normal = None
    for name in files:
        reader.SetFileName(name)
        reader.ReadImageInformation()
        meta = {k: reader.GetMetaData(k) for k in ("0020|0032", "0020|0037", "0018|1060",
                                                     "0020|0100", "0020|0013")
                if reader.HasMetaDataKey(k)}
        if "0020|0032" not in meta or "0020|0037" not in meta:
            return None  # no geometry tags (secondary capture…): let ITK decide
        position = np.asarray(_float_list(meta["0020|0032"]))
        if normal is None:
            cosines = np.asarray(_float_list(meta["0020|0037"]))
            normal = np.cross(cosines[:3], cosines[3:6])
        time = None
        for key in ("0018|1060", "0020|0100", "0020|0013"):
            if meta.get(key, "").strip():
                try:
                    time = (key, float(meta[key]))
                    break
                except ValueError:
                    continue
        infos.append((float(position @ normal), position, time, name))
    return infos, normal


def _group_frames(path: Path, infos, normal) -> tuple[list[list[str]], float | None]:
    """Files per frame (each sorted along the normal) and the frame interval in seconds
    (``None`` for one frame)."""
    infos = sorted(infos, key=lambda info: info[0])
    groups: list[list] = [[infos[0]]]
    for info in infos[1:]:
        if info[0] - groups[-1][0][0] > 0.01:  # mm: a new slice position
            groups.append([])
        groups[-1].append(info)
    counts = sorted({len(g) for g in groups})
    if len(counts) != 1:
        raise VolumeError(path, "DICOM series with an uneven number of images per slice "
                                f"position ({counts}): missing or extra images")
    n_frames = counts[0]
    groups = [sorted(g, key=lambda i: (i[2][1] if i[2] else 0.0, i[3])) for g in groups]
    if len(groups) > 1:
        positions = np.asarray([g[0][1] for g in groups])
        deltas = np.diff(positions, axis=0)
        along = deltas @ normal
        mean = float(np.mean(along))
        if np.max(np.abs(along - mean)) > _POSITION_TOL * abs(mean):
            raise VolumeError(path, "DICOM slices are not evenly spaced along the slice "
                                    f"normal (steps {np.round(along, 3).tolist()} mm: gaps or "
                                    "missing slices); it cannot be read without resampling")
        sideways = deltas - np.outer(along, normal)
        if np.max(np.linalg.norm(sideways, axis=1)) > _POSITION_TOL * abs(mean) + 1e-3:
            raise VolumeError(path, "DICOM slice positions are not stacked along the slice "
                                    "normal (gantry tilt or a sheared stack): not supported")
    frames = [[g[t][3] for g in groups] for t in range(n_frames)]
    if n_frames == 1:
        return frames, None
    first = groups[0]
    if not all(info[2] and info[2][0] == "0018|1060" for info in first):
        return frames, 1.0  # no trigger times: the time axis counts frames
    times = [info[2][1] for info in first]
    return frames, float(np.median(np.diff(times))) / 1000.0  # trigger time is in ms


@_locale_safe
def read_dicom_series(path: str | os.PathLike, *, series_id: str | None = None,
                      allow_4d: bool = True, check_finite: bool = True,
                      max_bytes: int | None = None) -> "Volume":
    """Read a DICOM series -- a folder, or one of its files -- as one volume (3D, or 4D
    ``(T, Z, Y, X)`` for a cine series); errors are :class:`VolumeError` naming the path."""
    from .nifti import Volume, max_volume_bytes

    limit = max_volume_bytes(max_bytes)
    given = Path(path)
    if not given.exists():
        raise VolumeError(given, "does not exist")
    sitk = _sitk()
    try:
        folder, series_id, files = _series_files(given, series_id)
        probe = sitk.ImageFileReader()
        probe.SetFileName(files[0])
        probe.ReadImageInformation()
        _check_image_info(probe, given, limit, files=len(files))
        described = _slice_info(files)
        if described is None:
            frames, interval = [files], None
        else:
            frames, interval = _group_frames(given, *described)
        if len(frames) > 1 and not allow_4d:
            raise VolumeError(given, f"is a cine series of {len(frames)} frames × "
                                     f"{len(frames[0])} slices; a 3D volume is required here")
        images = []
        for frame in frames:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(frame)
            images.append(reader.Execute())
    except VolumeError:
        raise
    except RuntimeError as exc:
        raise VolumeError(given, f"not a readable DICOM series ({_first_line(exc)})") \
            from None
    except MemoryError as exc:
        raise VolumeError(given, "is too large to read into the available memory") from exc
    if images[0].GetDimension() == 2:
        raise VolumeError(given, "is a single 2D DICOM image; a 3D series is required")
    source = str(folder)
    first = _finish(images[0], given, True, check_finite, source)
    if len(images) == 1:
        return first
    arrays = [first.data] + [_finish(im, given, True, check_finite, source).data
                             for im in images[1:]]
    for later in images[1:]:
        if not sitk_geometry(later).same_grid(first.geometry):
            raise VolumeError(given, "cine frames of the series lie on different grids")
    geometry = VolumeGeometry((len(arrays),) + first.geometry.shape, first.geometry.affine,
                              (float(interval or 1.0),) + first.geometry.spacing, None, source)
    return Volume(np.stack(arrays), geometry)


__all__ = ["DICOM_SUFFIXES", "SITK_SUFFIXES", "dicom_series", "is_dicom_file", "is_sitk_path",
           "keep_locale", "looks_like_dicom_folder", "read_dicom_series", "read_sitk_volume",
           "sitk_geometry", "to_sitk_image"]
