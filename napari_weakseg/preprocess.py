"""Pre-processing: a named, recorded stage shared by training and every prediction path.

A model folder's ``config.json`` records its pre-processing under ``preprocessing``;
:meth:`Preprocessing.from_config` reads it back, so prediction does exactly what training
did. Two pipelines:

``resize`` (the legacy one; a config without ``name`` is this):
    ``{"normalisation": "wsl4mis-p99-minmax", "size": [S, S], "slice_axis": "z",
    "resize": "bilinear"}`` — every slice resized whole to ``size`` (bilinear for images,
    nearest for targets), probabilities resized back (bilinear) before the argmax.
``spacing``:
    ``{"name": "spacing", "normalisation": ..., "target_spacing": [sy, sx], "size": [S, S],
    "slice_axis": "z"}`` — every slice resampled in-plane to ``target_spacing`` (mm; chosen
    from the training data, the median in-plane spacing, and recorded). Training takes the
    centred ``size`` patch (cropped or zero-padded; padded targets are "unknown");
    prediction takes the whole resampled slice, zero-padded to a multiple of 16, and maps
    the probabilities back onto the input's own grid (bilinear, pixel centres aligned, then
    the argmax) — so the labels always lie on the input grid, which is never resampled.

Intensity normalisers are found by name in :data:`NORMALISERS` (per volume):
``wsl4mis-p99-minmax`` (clip at the 99th percentile of the cumulative distribution, min-max
to [0, 1]; WSL4MIS) and ``zscore`` (mean 0, standard deviation 1 over the volume).

Also here (they used to live in ``training/``, which inference must not import):
:func:`select_device` and :func:`resize_slice`. numpy/scipy only at import; torch is
imported inside the functions that need it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .errors import InputError, OptionError

DEFAULT_NORMALISATION = "wsl4mis-p99-minmax"
PIPELINES = ("resize", "spacing")
#: the network input must be a multiple of this (four 2× poolings)
MULTIPLE = 16


# -- devices -----------------------------------------------------------------------------------
def select_device(requested: str = "auto"):
    """``auto``: CUDA when present, else Apple MPS, else CPU."""
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(f"device {requested!r} requested but CUDA is not available")
    return device


# -- intensity normalisation -------------------------------------------------------------------
def normalise_intensity(image: np.ndarray) -> np.ndarray:
    """WSL4MIS rule: clip at the 99th percentile (skimage cumulative distribution), then
    min-max to [0, 1]. Returns float32 (Z, Y, X)."""
    from skimage.exposure import cumulative_distribution

    image = np.asarray(image, dtype=np.float64 if image.dtype == np.float64 else np.float32)
    if image.size == 0 or float(image.max()) == float(image.min()):
        return np.zeros(image.shape, np.float32)
    cdf, bins = cumulative_distribution(image)
    ceiling = bins[np.argmax(cdf >= 0.99)]
    clipped = np.clip(image, image.min(), ceiling)
    low, high = float(clipped.min()), float(clipped.max())
    if high <= low:
        return np.zeros(image.shape, np.float32)
    return ((clipped - low) / (high - low)).astype(np.float32)


def normalise_zscore(image: np.ndarray) -> np.ndarray:
    """Mean 0, standard deviation 1 over the whole volume (a constant volume → zeros)."""
    image = np.asarray(image, dtype=np.float64)
    if image.size == 0:
        return np.zeros(image.shape, np.float32)
    std = float(image.std())
    if std == 0.0:
        return np.zeros(image.shape, np.float32)
    return ((image - float(image.mean())) / std).astype(np.float32)


#: name → per-volume normaliser ``(Z, Y, X) → float32 (Z, Y, X)``
NORMALISERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "wsl4mis-p99-minmax": normalise_intensity,
    "zscore": normalise_zscore,
}


def get_normaliser(name: str | None) -> Callable[[np.ndarray], np.ndarray]:
    """The normaliser called ``name`` (``None``: the default, WSL4MIS)."""
    name = name or DEFAULT_NORMALISATION
    try:
        return NORMALISERS[name]
    except KeyError:
        raise OptionError(f"unknown intensity normalisation {name!r}; known: "
                         f"{sorted(NORMALISERS)}") from None


# -- slice resampling --------------------------------------------------------------------------
def resize_slice(array: np.ndarray, size: tuple[int, int], order: int) -> np.ndarray:
    """Resize the last two axes to ``size`` (scipy ``zoom``, exact output shape)."""
    h, w = array.shape[-2:]
    if (h, w) == tuple(size):
        return array.copy()
    if array.size == 0:  # e.g. no coarse strategies: (0, H, W)
        return np.zeros(array.shape[:-2] + tuple(size), array.dtype)
    factors = (1,) * (array.ndim - 2) + (size[0] / h, size[1] / w)
    out = ndimage.zoom(array, factors, order=order, mode="nearest", grid_mode=order == 0)
    assert out.shape[-2:] == tuple(size), (out.shape, size)
    return out


def resample_slice(array: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    """Resample the last two axes to ``shape`` with pixel *areas* aligned (pixel centres
    at ``(i + ½)·extent/n``, the convention of ``torch`` ``align_corners=False``):
    ``order`` 1 bilinear (images), 0 nearest (targets)."""
    h, w = array.shape[-2:]
    if (h, w) == tuple(shape):
        return array.copy()
    if array.size == 0:
        return np.zeros(array.shape[:-2] + tuple(shape), array.dtype)
    factors = (1,) * (array.ndim - 2) + (shape[0] / h, shape[1] / w)
    dtype = array.dtype
    work = array.astype(np.uint8) if dtype == bool else array
    out = ndimage.zoom(work, factors, order=order, mode="nearest", grid_mode=True)
    assert out.shape[-2:] == tuple(shape), (out.shape, shape)
    return out.astype(dtype)


def centre_crop_or_pad(array: np.ndarray, size: tuple[int, int], fill=0) -> np.ndarray:
    """The centred ``size`` window of the last two axes: cropped where larger, padded with
    ``fill`` where smaller (the extra pixel of an odd difference goes after)."""
    out = array
    for axis, target in zip((-2, -1), size):
        n = out.shape[axis]
        if n > target:
            start = (n - target) // 2
            out = np.take(out, np.arange(start, start + target), axis=axis)
        elif n < target:
            before = (target - n) // 2
            pad = [(0, 0)] * out.ndim
            pad[axis] = (before, target - n - before)
            out = np.pad(out, pad, mode="constant", constant_values=fill)
    return np.ascontiguousarray(out)


def median_spacing(spacings: Sequence[Sequence[float]]) -> tuple[float, float]:
    """nnU-Net-style target: the median in-plane spacing ``(y, x)`` of ``(z, y, x)``
    spacings (rounded to 4 decimals)."""
    if not spacings:
        raise InputError("no volumes to choose a target spacing from")
    values = np.asarray([tuple(s)[-2:] for s in spacings], np.float64)
    return tuple(round(float(v), 4) for v in np.median(values, axis=0))  # type: ignore


# -- the pipeline ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preprocessing:
    """One model's pre-processing (see the module docstring). ``size``: the network input
    (``resize``) or the training patch (``spacing``), ``(H, W)``."""

    name: str = "resize"
    normalisation: str = DEFAULT_NORMALISATION
    size: tuple[int, int] = (256, 256)
    target_spacing: tuple[float, float] | None = None

    def __post_init__(self):
        if self.name not in PIPELINES:
            raise OptionError(f"unknown pre-processing {self.name!r}; known: {PIPELINES}")
        get_normaliser(self.normalisation)
        size = tuple(int(s) for s in self.size)
        if len(size) != 2 or min(size) < 1:
            raise OptionError(f"pre-processing size must be two positive integers, got "
                             f"{self.size!r}")
        object.__setattr__(self, "size", size)
        if self.name == "spacing":
            spacing = self.target_spacing
            if spacing is None or len(spacing) != 2 or not all(
                    np.isfinite(float(s)) and float(s) > 0 for s in spacing):
                raise OptionError("the spacing pre-processing needs target_spacing = two "
                                 f"positive numbers (mm), got {spacing!r}")
            object.__setattr__(self, "target_spacing", tuple(float(s) for s in spacing))

    # -- the record ------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict) -> Preprocessing:
        """The pipeline a model's ``preprocessing`` dict records (a legacy dict without
        ``name`` is ``resize``; ``size`` may be one integer)."""
        if not isinstance(config, dict):
            raise OptionError(f"preprocessing must be a JSON object, got {config!r}")
        name = config.get("name", "resize")
        size = config.get("size", 256)
        if isinstance(size, bool) or not isinstance(size, (int, list, tuple)):
            raise OptionError(f"preprocessing size must be an integer or [H, W], got {size!r}")
        if isinstance(size, int):
            size = (size, size)
        if any(isinstance(s, bool) or not isinstance(s, int) for s in size):
            raise OptionError(f"preprocessing size must hold integers, got {size!r}")
        if name == "resize" and config.get("resize", "bilinear") != "bilinear":
            raise OptionError(f"unknown resize {config['resize']!r} (bilinear only)")
        spacing = config.get("target_spacing")
        return cls(name=name, normalisation=config.get("normalisation") or DEFAULT_NORMALISATION,
                   size=tuple(size), target_spacing=tuple(spacing) if spacing else None)

    def to_config(self) -> dict:
        config = {"name": self.name, "normalisation": self.normalisation,
                  "size": list(self.size), "slice_axis": "z"}
        if self.name == "resize":
            config["resize"] = "bilinear"
        else:
            config["target_spacing"] = list(self.target_spacing)
        return config

    def describe(self) -> str:
        if self.name == "resize":
            return f"{self.normalisation}, slices resized to {self.size[0]}×{self.size[1]}"
        return (f"{self.normalisation}, in-plane resampling to "
                f"{self.target_spacing[0]:g}×{self.target_spacing[1]:g} mm, "
                f"{self.size[0]}×{self.size[1]} training patches")

    # -- shared steps ----------------------------------------------------------------------
    def normalise(self, image: np.ndarray) -> np.ndarray:
        return get_normaliser(self.normalisation)(image)

    def resampled_shape(self, shape: tuple[int, int],
                        spacing: Sequence[float] | None) -> tuple[int, int]:
        """In-plane shape of a ``shape`` slice at the network's resolution: ``size`` for
        ``resize``; at the target spacing for ``spacing`` (``spacing`` = the slice's
        ``(…, y, x)`` mm)."""
        if self.name == "resize":
            return self.size
        if spacing is None:
            raise InputError("this model resamples to a target spacing: the image's voxel "
                             "spacing is needed")
        sy, sx = (float(s) for s in tuple(spacing)[-2:])
        ty, tx = self.target_spacing
        return (max(1, int(round(shape[0] * sy / ty))), max(1, int(round(shape[1] * sx / tx))))

    # -- training --------------------------------------------------------------------------
    def training_slice(self, array: np.ndarray, spacing: Sequence[float] | None, order: int,
                       fill=0, *, crop: bool = True) -> np.ndarray:
        """One slice's image (``order`` 1) or target (``order`` 0; ``fill`` for padding)
        at the training size; the last two axes are the slice. With ``crop=False`` the
        ``spacing`` pipeline returns the whole resampled slice, padded (centred) to at least
        the patch size, for random patches drawn per iteration."""
        if self.name == "resize":
            return resize_slice(array, self.size, order)
        shape = self.resampled_shape(array.shape[-2:], spacing)
        resampled = resample_slice(array, shape, order)
        if not crop:
            at_least = (max(shape[0], self.size[0]), max(shape[1], self.size[1]))
            return centre_crop_or_pad(resampled, at_least, fill)
        return centre_crop_or_pad(resampled, self.size, fill)

    # -- prediction ------------------------------------------------------------------------
    def forward_probabilities(self, forward, block: np.ndarray,
                              spacing: Sequence[float] | None, device="cpu"):
        """Softmax probabilities ``(B, C, H, W)`` (torch, on the input's slice grid) of a
        normalised block of slices ``(B, H, W)``; ``forward(x)`` maps a network input
        ``(B, 1, h, w)`` to probabilities ``(B, C, h, w)``."""
        import torch
        import torch.nn.functional as F

        h, w = block.shape[-2:]
        if self.name == "resize":
            x = resize_slice(block, self.size, 1)
            x = torch.from_numpy(np.ascontiguousarray(x[:, None], np.float32)).to(device)
            probs = forward(x)
            return F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
        rh, rw = self.resampled_shape((h, w), spacing)
        x = torch.from_numpy(np.ascontiguousarray(block[:, None], np.float32)).to(device)
        if (rh, rw) != (h, w):
            x = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False)
        ph, pw = (-rh) % MULTIPLE, (-rw) % MULTIPLE
        top, left = ph // 2, pw // 2
        if ph or pw:
            x = F.pad(x, (left, pw - left, top, ph - top), value=0.0)
        probs = forward(x)[:, :, top:top + rh, left:left + rw]
        if (rh, rw) != (h, w):
            probs = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
        return probs


def preprocessing_of(config: dict) -> Preprocessing:
    """The pipeline recorded in a model ``config`` (its ``preprocessing`` entry)."""
    return Preprocessing.from_config(config["preprocessing"])


__all__ = [
    "DEFAULT_NORMALISATION", "NORMALISERS", "PIPELINES", "Preprocessing", "centre_crop_or_pad",
    "get_normaliser", "median_spacing", "normalise_intensity", "normalise_zscore",
    "preprocessing_of", "resample_slice", "resize_slice", "select_device",
]
