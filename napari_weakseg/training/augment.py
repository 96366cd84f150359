"""Augmentation of prepared training samples (a dict of arrays sharing their last two axes):
WSL4MIS's geometric ``RandomGenerator`` (:func:`augment`), random patches of whole
resampled slices (:func:`random_patch`), and appearance changes for other scanners and
sequences (:func:`intensity_augment`). Every draw comes from the ``rng`` passed in, seeded
per iteration by :class:`napari_weakseg.training.data.SliceDataset`, so a resumed run sees
the same samples.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..preprocess import resample_slice

#: the "no supervision" value of each target key (image borders, padding, missing keys)
TARGET_FILL = {"labels": -1, "valid": False, "coarse_pos": -1, "coarse_neg": False,
               "kind": 0}


def augment(sample: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """WSL4MIS ``RandomGenerator`` on one resized sample (arrays share the last two axes)."""
    spatial = [k for k, v in sample.items() if k != "annotated" and v.ndim >= 2]
    if rng.random() > 0.5:
        k = int(rng.integers(0, 4))
        axis = int(rng.integers(0, 2))
        for key in spatial:
            rotated = np.rot90(sample[key], k, axes=(-2, -1))
            sample[key] = np.ascontiguousarray(np.flip(rotated, axis=rotated.ndim - 2 + axis))
    elif rng.random() > 0.5:
        angle = int(rng.integers(-20, 20))
        for key in spatial:
            fill = 0 if key == "image" else TARGET_FILL.get(key, 0)
            array = sample[key]
            dtype = array.dtype
            work = array.astype(np.int16) if dtype == bool else array
            rotated = ndimage.rotate(work, angle, axes=(-2, -1), order=0, reshape=False,
                                     mode="constant", cval=fill)
            sample[key] = rotated.astype(dtype)
    return sample


def random_patch(sample: dict[str, np.ndarray], size: tuple[int, int],
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A ``size`` window at a uniformly drawn position of every spatial array of ``sample``
    (all share their last two axes, at least ``size``); copies."""
    spatial = [k for k, v in sample.items() if k != "annotated" and v.ndim >= 2]
    h, w = sample["image"].shape[-2:]
    top = int(rng.integers(0, h - size[0] + 1))
    left = int(rng.integers(0, w - size[1] + 1))
    out = {k: v.copy() for k, v in sample.items() if k not in spatial}
    for key in spatial:
        out[key] = np.ascontiguousarray(
            sample[key][..., top:top + size[0], left:left + size[1]])
    return out


def intensity_augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Appearance changes another scanner or sequence brings, on one normalised slice
    ``(H, W)`` float32, each with its own probability (nnU-Net/batchgenerators-style ranges):
    gamma 0.7–1.5 (p 0.3), contrast ×0.75–1.25 around the mean (p 0.3), brightness ±10 % of
    the range (p 0.3), a smooth multiplicative bias field up to ±30 % (p 0.3), simulated low
    resolution ×1–2 (p 0.2), Gaussian blur σ 0.5–1 px (p 0.2), Gaussian noise up to 5 % of
    the range (p 0.2). Every draw comes from ``rng`` (seeded per iteration), so a resumed
    run sees the same images; the number of draws does not depend on the image."""
    draws = rng.random(7)
    params = rng.random(12)
    out = image.astype(np.float32, copy=True)
    low, high = float(out.min()), float(out.max())
    span = max(high - low, 1e-6)
    if draws[0] < 0.3:
        gamma = 0.7 + 0.8 * params[0]
        out = low + span * ((out - low) / span) ** gamma
    if draws[1] < 0.3:
        mean = float(out.mean())
        out = mean + (out - mean) * (0.75 + 0.5 * params[1])
    if draws[2] < 0.3:
        out = out + span * 0.1 * (2 * params[2] - 1)
    if draws[3] < 0.3:
        h, w = out.shape
        yy, xx = np.meshgrid(np.linspace(-1, 1, h, dtype=np.float32),
                             np.linspace(-1, 1, w, dtype=np.float32), indexing="ij")
        a, b, c = (2 * params[3:6] - 1)
        field = a * yy + b * xx + c * (yy * xx)
        field = field / max(float(np.abs(field).max()), 1e-6)
        out = out * (1.0 + 0.3 * params[6] * field)
    if draws[4] < 0.2:
        factor = 1.0 + params[7]
        h, w = out.shape
        small = resample_slice(out, (max(1, round(h / factor)), max(1, round(w / factor))), 1)
        out = resample_slice(small, (h, w), 1)
    if draws[5] < 0.2:
        out = ndimage.gaussian_filter(out, 0.5 + 0.5 * params[8])
    if draws[6] < 0.2:
        noise_rng = np.random.default_rng(int(params[9] * 2 ** 31))
        out = out + noise_rng.normal(0.0, 0.05 * span * params[10], out.shape)
    return out.astype(np.float32)
