"""Volume I/O under one geometry contract (see :mod:`napari_weakseg.io.geometry`)."""

from .errors import GeometryMismatchError, VolumeError
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
    "GeometryMismatchError", "Volume", "VolumeError", "VolumeGeometry", "check_same_grid",
    "describe", "is_nifti_path", "looks_like_labels", "read_labels", "read_volume",
    "strip_nifti_suffix", "write_labels", "write_volume",
]
