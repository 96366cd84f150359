"""One entry point for every volume format: NIfTI (:mod:`.nifti`), NRRD and MetaImage
(MHA/MHD) files and DICOM series (:mod:`.sitk`), all under the geometry contract of
:mod:`.geometry`.

The project store keeps NIfTI: :func:`as_nifti` converts any other input to a NIfTI file on
exactly the same grid (array, affine, spacing), which is how ``weakseg add``/``import`` take
DICOM, NRRD and MHA, and why predictions for a DICOM input come out as NIfTI on its grid.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import VolumeError
from .nifti import NIFTI_SUFFIXES, Volume, is_nifti_path, read_volume, write_volume
from .sitk import (DICOM_SUFFIXES, SITK_SUFFIXES, is_dicom_file, is_sitk_path,
                   looks_like_dicom_folder, read_dicom_series, read_sitk_volume)

VOLUME_SUFFIXES = NIFTI_SUFFIXES + SITK_SUFFIXES + DICOM_SUFFIXES
"""File names the readers take (a DICOM series may also be a folder, or files without a
suffix)."""


def volume_format(path: str | os.PathLike) -> str | None:
    """``"nifti"``, ``"sitk"`` (NRRD/MetaImage), ``"dicom"`` (a folder holding DICOM files, or
    one such file), or ``None``. Looks at names (and a few file preambles), never at
    voxels."""
    path = Path(path)
    if is_nifti_path(path):
        return "nifti"
    if is_sitk_path(path):
        return "sitk"
    if path.is_dir():
        return "dicom" if looks_like_dicom_folder(path) else None
    if path.name.lower().endswith(DICOM_SUFFIXES) or (path.is_file() and is_dicom_file(path)):
        return "dicom"
    return None


def is_volume_path(path: str | os.PathLike) -> bool:
    return volume_format(path) is not None


def read_any(path: str | os.PathLike, *, allow_4d: bool = True, check_finite: bool = True,
             max_bytes: int | None = None) -> Volume:
    """Read a NIfTI, NRRD, MHA/MHD file or a DICOM series (folder or one of its files) into
    a :class:`Volume` with the same contract as :func:`~napari_weakseg.io.read_volume`:
    array ``(Z, Y, X)`` (4D ``(T, Z, Y, X)``), affine voxel → RAS mm, spacing in array order.
    Every problem raises :class:`VolumeError` naming the path."""
    kind = volume_format(path)
    options = {"allow_4d": allow_4d, "check_finite": check_finite, "max_bytes": max_bytes}
    if kind == "nifti":
        return read_volume(path, **options)
    if kind == "sitk":
        return read_sitk_volume(path, **options)
    if kind == "dicom":
        return read_dicom_series(path, **options)
    if not Path(path).exists():
        raise VolumeError(path, "file does not exist")
    raise VolumeError(path, "not a volume this tool reads (NIfTI .nii/.nii.gz, NRRD "
                            ".nrrd/.nhdr, MetaImage .mha/.mhd, or a DICOM series folder)")


def volume_name(path: str | os.PathLike) -> str:
    """A volume name from a path: the file name without its format suffix; for a DICOM
    series, the folder's name (a ``.dcm`` file names its folder)."""
    path = Path(path)
    lowered = path.name.lower()
    for suffix in sorted(NIFTI_SUFFIXES + SITK_SUFFIXES, key=len, reverse=True):
        if lowered.endswith(suffix):
            return path.name[: -len(suffix)]
    if volume_format(path) == "dicom":
        folder = path if path.is_dir() else path.parent
        return folder.resolve().name or "dicom"
    return path.name


def as_nifti(path: str | os.PathLike, out_dir: str | os.PathLike, *,
             name: str | None = None, allow_4d: bool = False) -> Path:
    """``path`` itself when it is NIfTI; otherwise the volume written as
    ``out_dir/NAME.nii.gz`` on exactly its grid (array, affine, spacing; atomic)."""
    if volume_format(path) == "nifti":
        return Path(path)
    volume = read_any(path, allow_4d=allow_4d)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name or volume_name(path)).strip("._") or "volume"
    return write_volume(Path(out_dir) / f"{stem}.nii.gz", volume.data, volume.geometry)


__all__ = ["VOLUME_SUFFIXES", "as_nifti", "is_volume_path", "read_any", "volume_format",
           "volume_name"]
