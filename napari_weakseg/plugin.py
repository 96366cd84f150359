"""npe2 contributions: volume reader (NIfTI, NRRD, MHA/MHD, DICOM series), labels writer,
sample data.

These functions return/consume napari ``LayerData`` tuples and import neither napari nor
Qt; they are thin wrappers over :mod:`napari_weakseg.io`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from . import layer_meta
from .io import VolumeGeometry, is_nifti_path, looks_like_labels, read_volume, write_labels as _write_labels
from .io.nifti import strip_nifti_suffix
from .schema import LabelSchema

log = logging.getLogger(__name__)
LayerData = tuple[Any, dict, str]


def get_reader(path: str | list[str]):
    """Return :func:`read_nifti_layers` for volume paths -- ``.nii``/``.nii.gz``,
    ``.nrrd``/``.nhdr``, ``.mha``/``.mhd``, DICOM files or folders -- else ``None``."""
    from .io.formats import is_volume_path

    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(is_volume_path(p) for p in paths):
        return None
    return read_nifti_layers


def read_nifti_layers(path: str | list[str]) -> list[LayerData]:
    """One layer per file: an image (scale = spacing, metadata = affine + header, axis
    labels; 4D cine as a time series) or, for label-like files, a Labels layer."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    return [layer for p in paths for layer in volume_layers(p)]


def nifti_layer_data(path: str | Path) -> LayerData:
    volume = read_volume(path)
    kwargs = volume.geometry.to_layer_kwargs()
    kwargs["name"] = strip_nifti_suffix(Path(path).name)
    kwargs["units"] = ("mm",) * 3 if volume.geometry.ndim == 3 else ("s", "mm", "mm", "mm")
    if looks_like_labels(path, volume.data):
        return volume.data, kwargs, "labels"
    return volume.data, kwargs, "image"


def volume_layers(path: str | Path) -> list[LayerData]:
    """The layers of one path: a NIfTI file (:func:`nifti_layer_data`); an NRRD/MetaImage
    file or a DICOM series (one layer; a folder holding several series: one per series),
    read through :func:`napari_weakseg.io.read_any` under the same geometry contract
    (``metadata["nifti_header"]`` is ``None``: labels drawn on it are saved as NIfTI on its
    grid with a header built from the affine)."""
    from .io.formats import read_any, volume_format, volume_name

    kind = volume_format(path)
    if kind == "nifti":
        return [nifti_layer_data(path)]
    name = volume_name(path)
    if kind == "dicom" and Path(path).is_dir():
        from .io.sitk import dicom_series, read_dicom_series

        series = list(dicom_series(path))
        if len(series) > 1:
            return [_volume_layer(read_dicom_series(path, series_id=sid), f"{name} [{i + 1}]",
                                  path) for i, sid in enumerate(series)]
    return [_volume_layer(read_any(path), name, path)]


def _volume_layer(volume, name: str, path: str | Path) -> LayerData:
    kwargs = volume.geometry.to_layer_kwargs()
    kwargs["name"] = name
    kwargs["units"] = ("mm",) * 3 if volume.geometry.ndim == 3 else ("s", "mm", "mm", "mm")
    kind = "labels" if looks_like_labels(path, volume.data) else "image"
    return volume.data, kwargs, kind


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Labels layer to NIfTI on the grid, affine and header of its image.

    The geometry comes from the layer's ``metadata`` (set by our reader or widgets); a
    layer without it is written axis-aligned with its ``scale`` as spacing (a warning says
    so).
    """
    array = np.asarray(data)
    metadata = meta.get("metadata") or {}
    if metadata.get("affine") is None:
        log.warning("layer %r has no source geometry; writing an axis-aligned grid from its "
                    "scale", meta.get("name"))
    geometry = VolumeGeometry.from_layer(array.shape, metadata, meta.get("scale"))
    out = Path(path)
    if not is_nifti_path(out):
        out = out.with_name(out.name + ".nii.gz")
    _write_labels(out, array, geometry)
    return [str(out)]


def make_cardiac_sample() -> list[LayerData]:
    """The ED frame of synthetic subject 0: image, dense truth and example scribbles."""
    from .synthetic import make_cardiac_volume

    case = make_cardiac_volume(0)
    schema = LabelSchema.cardiac()
    geom = case.geometry.to_layer_kwargs()
    image_kwargs = {**geom, "name": "cardiac (synthetic)", "colormap": "gray"}
    truth_kwargs = {**geom, "name": "ground truth", "colormap": schema.dense_colormap(),
                    "opacity": 0.4, "visible": False}
    scribble_kwargs = {**geom, "name": "scribble", "colormap": schema.annotation_colormap(),
                       "opacity": 1.0,
                       "metadata": {**geom["metadata"], layer_meta.KIND: "scribble"}}
    return [
        (case.image, image_kwargs, "image"),
        (case.ground_truth, truth_kwargs, "labels"),
        (case.scribble, scribble_kwargs, "labels"),
    ]


def make_cardiac_cine_sample() -> list[LayerData]:
    """A 12-frame 4D cine series of synthetic subject 0 with its truth."""
    from .synthetic import make_cardiac_cine

    image, truth, geometry = make_cardiac_cine(0, n_frames=12)
    geom = geometry.to_layer_kwargs()
    return [
        (image, {**geom, "name": "cine (synthetic)", "colormap": "gray"}, "image"),
        (truth, {**geom, "name": "cine ground truth", "opacity": 0.4,
                 "colormap": LabelSchema.cardiac().dense_colormap()}, "labels"),
    ]
