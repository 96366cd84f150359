"""Training data: per-volume normalisation, slices at the training size, augmentation.

Sampling (``sampling``): ``slices`` draws uniformly over all supervised slices (WSL4MIS);
``uniform``, ``hierarchical`` and ``mdc`` draw a volume first (:mod:`.sampling`, the
self-disambiguation paper's strategies over the volumes' ``dataset``/``modality`` tags and
classes), then a slice in proportion to the drawn class's voxels.

A :class:`TrainingVolume` holds one volume's image and its targets (the keys of
``methods/base.py`` in 3D: ``labels`` (Z,Y,X) int64 −1 unknown, ``annotated`` (Z,C) bool,
``valid`` (Z,Y,X) bool, optionally ``coarse_pos`` (P,Z,Y,X) and ``coarse_neg``
(Q,C,Z,Y,X)). :class:`SliceDataset` resizes every slice once to the training size and draws
augmented batches; the draw of iteration ``t`` depends only on ``(seed, t, rank)``, so a
resumed run sees exactly the batches an uninterrupted run would.

Pre-processing follows WSL4MIS (methods-as-coded §2.2, §2.7): intensities clipped at the
99th percentile of the volume's cumulative distribution, then min-max to [0, 1];
augmentation: with p 0.5 rot90(k) + one flip, else with p 0.5 a rotation by an integer
angle in [−20°, 19°] (nearest neighbour; image filled with 0, labels with "unknown").
Deliberate difference: slices are resized to the training size *before* augmentation
(once, cached), image bilinear and targets nearest, instead of after each augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

TARGET_FILL = {"labels": -1, "valid": False, "coarse_pos": -1, "coarse_neg": False}


def normalise_intensity(image: np.ndarray) -> np.ndarray:
    """WSL4MIS rule: clip at the 99th percentile (skimage cumulative distribution), then
    min-max to [0, 1]. Returns float32 (Z, Y, X)."""
    from skimage.exposure import cumulative_distribution

    image = np.asarray(image, dtype=np.float64 if image.dtype == np.float64 else np.float32)
    if image.size == 0 or float(image.max()) == float(image.min()):
        return np.zeros(image.shape, np.float32)
    source = image if np.issubdtype(image.dtype, np.integer) else image
    cdf, bins = cumulative_distribution(source)
    ceiling = bins[np.argmax(cdf >= 0.99)]
    clipped = np.clip(image, image.min(), ceiling)
    low, high = float(clipped.min()), float(clipped.max())
    if high <= low:
        return np.zeros(image.shape, np.float32)
    return ((clipped - low) / (high - low)).astype(np.float32)


@dataclass(eq=False)
class TrainingVolume:
    """One volume ready for training. ``image`` is normalised (Z, Y, X) float32.

    ``reference``: a dense mask (Z, Y, X) for validation (ground truth or a complete
    annotation), ``None`` when there is none. ``spacing`` in mm (z, y, x).
    """

    name: str
    image: np.ndarray
    targets: dict[str, np.ndarray]
    reference: np.ndarray | None = None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    tags: dict = field(default_factory=dict)

    def supervised_slices(self) -> list[int]:
        """Slices that carry any supervision (``valid`` anywhere on the slice)."""
        valid = self.targets["valid"]
        return [int(z) for z in np.flatnonzero(valid.reshape(valid.shape[0], -1).any(axis=1))]


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


def _slice_targets(volume: TrainingVolume, z: int, size) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    t = volume.targets
    if "labels" in t:
        out["labels"] = resize_slice(t["labels"][z], size, 0).astype(np.int64)
    if "valid" in t:
        out["valid"] = resize_slice(t["valid"][z].astype(np.uint8), size, 0).astype(bool)
    if "annotated" in t:
        out["annotated"] = t["annotated"][z].astype(bool)
    if "coarse_pos" in t:
        out["coarse_pos"] = resize_slice(t["coarse_pos"][:, z], size, 0).astype(np.int64)
    if "coarse_neg" in t:
        neg = t["coarse_neg"][:, :, z].astype(np.uint8)
        out["coarse_neg"] = resize_slice(neg, size, 0).astype(bool)
    return out


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


class SliceDataset:
    """All supervised slices of some volumes at the training size, drawn in batches.

    ``batch(iteration, batch_size)`` returns numpy arrays keyed like the method batch:
    ``image`` (B,1,S,S) float32 and whichever targets the volumes carry.
    """

    def __init__(self, volumes: list[TrainingVolume], size: int | tuple[int, int], seed: int = 0,
                 augment_data: bool = True, rank: int = 0, sampling: str = "slices"):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.seed = seed
        self.rank = rank
        self.augment_data = augment_data
        self.slices: list[dict[str, np.ndarray]] = []
        self.index: list[tuple[str, int]] = []
        self.sampling = sampling
        # per volume: its slices' positions in self.slices and their foreground voxel counts
        self._volume_slices: dict[str, np.ndarray] = {}
        self._class_counts: dict[str, np.ndarray] = {}
        entries = []
        for volume in volumes:
            zs = volume.supervised_slices()
            first = len(self.slices)
            for z in zs:
                sample = {"image": resize_slice(volume.image[z], self.size, 1).astype(np.float32)}
                sample.update(_slice_targets(volume, z, self.size))
                self.slices.append(sample)
                self.index.append((volume.name, z))
            if not zs:
                continue
            labels = volume.targets["labels"][zs].reshape(len(zs), -1)
            counts = np.stack([(labels == c).sum(1) for c in range(int(labels.max()) + 2)], 1) \
                if labels.size and labels.max() >= 0 else np.zeros((len(zs), 1), int)
            self._volume_slices[volume.name] = np.arange(first, len(self.slices))
            self._class_counts[volume.name] = counts
            classes = [c for c in range(1, counts.shape[1]) if counts[:, c].any()]
            entries.append((volume.name, volume.tags, classes))
        self._sampler = None
        if sampling != "slices" and entries:
            from .sampling import VolumeSampler

            self._sampler = VolumeSampler(entries, sampling, seed=seed)
        if not self.slices:
            raise ValueError("no annotated slices to train on: every volume lacks annotations "
                             "of the kinds this method learns from")
        self.keys = sorted(self.slices[0])
        missing = [k for s in self.slices for k in self.keys if k not in s]
        if missing:
            raise ValueError("volumes carry different target kinds; convert them with "
                             "napari_weakseg.weak.targets first")

    def __len__(self) -> int:
        return len(self.slices)

    def _draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Positions in ``self.slices``: uniform over slices, or volume → class → slice."""
        if self._sampler is None:
            return rng.integers(0, len(self.slices), size=n)
        self._sampler.rng = rng  # the draws of an iteration depend on (seed, t, rank) only
        picks = []
        for _ in range(n):
            draw = self._sampler.draw()
            positions = self._volume_slices[draw.volume_id]
            counts = self._class_counts[draw.volume_id]
            column = counts[:, draw.category] if draw.category and \
                draw.category < counts.shape[1] else None
            picks.append(positions[self._sampler.choose_slice(len(positions), column)])
        return np.asarray(picks)

    def batch(self, iteration: int, batch_size: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, iteration, self.rank])
        picks = self._draw(rng, batch_size)
        samples = []
        for i in picks:
            sample = {k: v.copy() for k, v in self.slices[int(i)].items()}
            samples.append(augment(sample, rng) if self.augment_data else sample)
        out = {k: np.stack([s[k] for s in samples]) for k in self.keys}
        out["image"] = out["image"][:, None]
        return out


def to_tensors(batch: dict[str, np.ndarray], device) -> dict:
    import torch

    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device, non_blocking=True)
            for k, v in batch.items()}
