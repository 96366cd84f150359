"""Volume I/O under one geometry contract (see :mod:`napari_weakseg.io.geometry`):
NIfTI (:mod:`.nifti`), NRRD/MetaImage and DICOM series (:mod:`.sitk`, SimpleITK imported on
first use), one dispatcher :func:`read_any` (:mod:`.formats`)."""

from .errors import GeometryMismatchError, VolumeError
from .formats import as_nifti, is_volume_path, read_any, volume_format, volume_name
from .geometry import VolumeGeometry, describe
from .nifti import (
    Volume,
    check_same_grid,
    is_nifti_path,
    looks_like_labels,
    read_labels,
    read_volume,
    strip_nifti_suffix,
    write_labels,
    write_volume,
)

__all__ = [
    "GeometryMismatchError", "Volume", "VolumeError", "VolumeGeometry", "as_nifti",
    "check_same_grid", "describe", "is_nifti_path", "is_volume_path", "looks_like_labels",
    "read_any", "read_labels", "read_volume", "strip_nifti_suffix", "volume_format",
    "volume_name", "write_labels", "write_volume",
]
