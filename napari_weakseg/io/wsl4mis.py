"""The WSL4MIS ``.h5`` convention (HiLab-git/WSL4MIS ``data/ACDC``), read and written.

One file per volume (``patientNNN_frameFF.h5``) or per slice (``…_slice_K.h5``) with
gzip-compressed datasets, no attributes:

* ``image``: float32, (Z, Y, X) per volume or (Y, X) per slice — same axis order as our
  arrays (slices first); per-volume normalised (:func:`normalise_wsl4mis`).
* ``label``: uint8 dense ground truth (0 bg, 1 … C − 1).
* ``scribble``: uint16, 0 background stroke, class c → c, **C = unannotated** (4 for ACDC).

The files carry no geometry (no affine or spacing). Arrays here stay in the WSL4MIS
convention; :mod:`napari_weakseg.weak.encoding` converts scribbles to ours.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import VolumeError
from .atomic import atomic_path

KEYS = ("image", "label", "scribble")


@dataclass(frozen=True, eq=False)
class WSL4MISCase:
    """The arrays of one ``.h5`` file (``None`` for a missing key)."""

    image: np.ndarray
    label: np.ndarray | None = None
    scribble: np.ndarray | None = None
    source: str | None = None


def normalise_wsl4mis(image: np.ndarray) -> np.ndarray:
    """WSL4MIS per-volume normalisation: clip at the first value whose cumulative
    distribution (``skimage.exposure.cumulative_distribution``) reaches 0.99, then min-max
    to [0, 1]; float32. A constant image becomes zeros."""
    from skimage.exposure import cumulative_distribution

    image = np.asarray(image)
    cdf, centres = cumulative_distribution(image.ravel())  # as the reference (default nbins)
    high = centres[np.argmax(cdf >= 0.99)]
    clipped = np.minimum(image.astype(np.float32), np.float32(high))
    low, top = float(clipped.min()), float(clipped.max())
    if top <= low:
        return np.zeros_like(clipped)
    return ((clipped - low) / (top - low)).astype(np.float32)


def _h5py():
    """h5py, an optional dependency (the ``wsl4mis`` extra): imported on first use."""
    from .optional import require

    return require("h5py", "wsl4mis", "reading and writing WSL4MIS .h5 files")


def read_wsl4mis_h5(path: str | os.PathLike) -> WSL4MISCase:
    """Read one WSL4MIS ``.h5`` file; errors name the file and the problem."""
    h5py = _h5py()

    path = Path(path)
    if not path.exists():
        raise VolumeError(path, "file does not exist")
    try:
        with h5py.File(path, "r") as handle:
            if "image" not in handle:
                raise VolumeError(path, f"no 'image' dataset (keys: {sorted(handle.keys())}); "
                                        "not a WSL4MIS file")
            arrays = {key: np.asarray(handle[key][()]) if key in handle else None
                      for key in KEYS}
    except VolumeError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise VolumeError(path, f"not a readable HDF5 file ({exc})") from exc
    image = arrays["image"]
    if image.ndim not in (2, 3):
        raise VolumeError(path, f"'image' is {image.ndim}D with shape {image.shape}; "
                                "(Y, X) or (Z, Y, X) expected")
    for key in ("label", "scribble"):
        if arrays[key] is not None and arrays[key].shape != image.shape:
            raise VolumeError(path, f"'{key}' shape {arrays[key].shape} differs from "
                                    f"'image' shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise VolumeError(path, "'image' holds NaN/Inf values")
    return WSL4MISCase(image, arrays["label"], arrays["scribble"], str(path))


def write_wsl4mis_h5(path: str | os.PathLike, image: np.ndarray,
                     label: np.ndarray | None = None, scribble: np.ndarray | None = None,
                     *, normalise: bool = False) -> Path:
    """Write one WSL4MIS ``.h5`` file atomically (temporary file, fsync, rename).

    ``image`` float32 (normalised with :func:`normalise_wsl4mis` when ``normalise``),
    ``label`` uint8, ``scribble`` uint16 — all in the WSL4MIS convention, same shape.
    """
    h5py = _h5py()

    path = Path(path)
    image = np.asarray(image)
    for key, array in (("label", label), ("scribble", scribble)):
        if array is not None and np.shape(array) != image.shape:
            raise VolumeError(path, f"{key} shape {np.shape(array)} differs from image shape "
                                    f"{image.shape}")
    data = {"image": normalise_wsl4mis(image) if normalise else image.astype(np.float32)}
    if label is not None:
        data["label"] = np.asarray(label).astype(np.uint8)
    if scribble is not None:
        data["scribble"] = np.asarray(scribble).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".tmp.h5") as tmp:
        with h5py.File(tmp, "w") as handle:
            for key, array in data.items():
                handle.create_dataset(key, data=array, compression="gzip")
    return path
