"""Training data: per-volume normalisation, slices at the training size, augmentation.

Sampling (``sampling``): ``slices`` draws uniformly over all supervised slices (WSL4MIS);
``uniform``, ``hierarchical`` and ``mdc`` draw a volume first (:mod:`.sampling`, the
self-disambiguation paper's strategies over the volumes' ``dataset``/``modality`` tags and
classes), then a slice in proportion to the drawn class's voxels; ``kinds`` (the ``mixed``
method's default) draws a term group (scribble, coarse, partial, dense) uniformly among those
present, then a slice carrying it uniformly (:class:`.sampling.KindSampler`).

Volumes of different kinds share batches: missing target keys get their "no supervision"
fill and coarse channels are padded to the largest count; with ``kind_masks`` every sample
also carries the per-pixel ``kind`` bitmask (``napari_weakseg.weak.targets.KIND_BITS``).

A :class:`TrainingVolume` holds one volume's image and its targets (the keys of
``methods/base.py`` in 3D: ``labels`` (Z,Y,X) int64 −1 unknown, ``annotated`` (Z,C) bool,
``valid`` (Z,Y,X) bool, optionally ``coarse_pos`` (P,Z,Y,X) and ``coarse_neg``
(Q,C,Z,Y,X)). :class:`SliceDataset` resizes every slice once to the training size and draws
augmented batches; the draw of iteration ``t`` depends only on ``(seed, t, rank)``, so a
resumed run sees exactly the batches an uninterrupted run would.

Pre-processing follows WSL4MIS (methods-as-coded §2.2, §2.7) by default: intensities clipped
at the 99th percentile of the volume's cumulative distribution, then min-max to [0, 1]
(the normalisers and the ``resize``/``spacing`` pipelines live in
:mod:`napari_weakseg.preprocess`; ``SliceDataset(pipeline=...)`` makes the patches);
augmentation: with p 0.5 rot90(k) + one flip, else with p 0.5 a rotation by an integer
angle in [−20°, 19°] (nearest neighbour; image filled with 0, labels with "unknown").
Deliberate difference: slices are resized to the training size *before* augmentation
(once, cached), image bilinear and targets nearest, instead of after each augmentation.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, OptionError
from .augment import TARGET_FILL, augment, intensity_augment, random_patch  # noqa: F401
from ..preprocess import (Preprocessing, normalise_intensity, resample_slice,  # noqa: F401
                          resize_slice)



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


def _slice_targets(volume: TrainingVolume, z: int,
                   pipeline: Preprocessing) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    t = volume.targets

    def patch(array, key):
        return pipeline.training_slice(array, volume.spacing, 0, TARGET_FILL[key],
                                       crop=pipeline.name == "resize")

    if "labels" in t:
        out["labels"] = patch(t["labels"][z], "labels").astype(np.int64)
    if "valid" in t:
        out["valid"] = patch(t["valid"][z].astype(np.uint8), "valid").astype(bool)
    if "annotated" in t:
        out["annotated"] = t["annotated"][z].astype(bool)
    if "coarse_pos" in t:
        out["coarse_pos"] = patch(t["coarse_pos"][:, z], "coarse_pos").astype(np.int64)
    if "coarse_neg" in t:
        neg = t["coarse_neg"][:, :, z].astype(np.uint8)
        out["coarse_neg"] = patch(neg, "coarse_neg").astype(bool)
    if "kind" in t:
        out["kind"] = patch(t["kind"][z].astype(np.uint8), "kind").astype(np.uint8)
    return out


@dataclass(frozen=True)
class FillSpec:
    """What every sample of a dataset carries (:func:`fill_missing`): its target ``keys``,
    the largest coarse channel counts ``p_max``/``q_max`` and ``num_classes``."""

    keys: frozenset
    p_max: int = 0
    q_max: int = 0
    num_classes: int = 0
    #: every sample already carries every key with the same channel counts (nothing to do)
    uniform: bool = True


def fill_spec_of_samples(slices: list[dict[str, np.ndarray]]) -> FillSpec:
    keys = frozenset().union(*(s.keys() for s in slices))
    counts = {k: {s[k].shape[0] for s in slices if k in s} for k in ("coarse_pos", "coarse_neg")}
    num_classes = next((s["annotated"].shape[0] for s in slices if "annotated" in s), None)
    if num_classes is None:
        num_classes = next((s["coarse_neg"].shape[1] for s in slices if "coarse_neg" in s), 0)
    return FillSpec(keys, max(counts["coarse_pos"], default=0),
                    max(counts["coarse_neg"], default=0), num_classes,
                    all(set(s) == keys for s in slices)
                    and all(len(c) <= 1 for c in counts.values()))


def fill_spec_of_volumes(volumes: list[TrainingVolume], kind_masks: bool) -> FillSpec:
    """The :class:`FillSpec` the prepared slices of ``volumes`` (those with supervised
    slices) will have, from the targets' keys and shapes alone (nothing is prepared)."""
    key_sets, counts = [], {"coarse_pos": set(), "coarse_neg": set()}
    num_classes = None
    for volume in volumes:
        t = volume.targets
        keys = {"image"} | ({"labels", "valid", "annotated", "coarse_pos", "coarse_neg"}
                            & set(t))
        if kind_masks:
            keys.add("kind")
        key_sets.append(keys)
        for key in counts:
            if key in t:
                counts[key].add(int(t[key].shape[0]))
        if num_classes is None and "annotated" in t:
            num_classes = int(t["annotated"].shape[1])
    if num_classes is None:
        num_classes = next((int(v.targets["coarse_neg"].shape[1]) for v in volumes
                            if "coarse_neg" in v.targets), 0)
    keys = frozenset().union(*key_sets) if key_sets else frozenset({"image"})
    return FillSpec(keys, max(counts["coarse_pos"], default=0),
                    max(counts["coarse_neg"], default=0), num_classes,
                    all(k == keys for k in key_sets)
                    and all(len(c) <= 1 for c in counts.values()))


def fill_missing(sample: dict[str, np.ndarray], spec: FillSpec) -> dict[str, np.ndarray]:
    """Give one sample every key of ``spec`` (in place; returned): a missing key gets its "no
    supervision" fill (:data:`TARGET_FILL`; ``annotated`` all False) and
    ``coarse_pos``/``coarse_neg`` are padded with empty channels up to ``p_max``/``q_max``."""
    if spec.uniform:
        return sample
    keys, hw, num_classes = spec.keys, sample["image"].shape[-2:], spec.num_classes
    if "labels" in keys and "labels" not in sample:
        sample["labels"] = np.full(hw, -1, np.int64)
    if "valid" in keys and "valid" not in sample:
        sample["valid"] = np.zeros(hw, bool)
    if "annotated" in keys and "annotated" not in sample:
        sample["annotated"] = np.zeros(num_classes, bool)
    if "kind" in keys and "kind" not in sample:
        sample["kind"] = np.zeros(hw, np.uint8)
    if "coarse_pos" in keys:
        have = sample["coarse_pos"] if "coarse_pos" in sample else np.zeros((0,) + hw, np.int64)
        pad = np.full((spec.p_max - have.shape[0],) + hw, -1, np.int64)
        sample["coarse_pos"] = np.concatenate([have, pad]) if len(pad) else have
    if "coarse_neg" in keys:
        have = sample["coarse_neg"] if "coarse_neg" in sample else \
            np.zeros((0, num_classes) + hw, bool)
        pad = np.zeros((spec.q_max - have.shape[0], num_classes) + hw, bool)
        sample["coarse_neg"] = np.concatenate([have, pad]) if len(pad) else have
    return sample


def _fill_missing_targets(slices: list[dict[str, np.ndarray]]) -> None:
    """Make every sample carry the same keys and coarse channel counts (in place).

    Volumes of different kinds (a scribble volume without coarse arrays, a coarse volume
    with P = 1 strategy, …) can then share a batch: a missing key gets its "no supervision"
    fill (:data:`TARGET_FILL`; ``annotated`` all False), and ``coarse_pos``/``coarse_neg``
    are padded with empty channels up to the largest P / Q. Samples that already agree are
    left untouched (so single-kind batches are unchanged)."""
    spec = fill_spec_of_samples(slices)
    for s in slices:
        fill_missing(s, spec)


class SliceDataset:
    """All supervised slices of some volumes at the training size, drawn in batches.

    ``batch(iteration, batch_size)`` returns numpy arrays keyed like the method batch:
    ``image`` (B,1,S,S) float32 and whichever targets the volumes carry.
    """

    def __init__(self, volumes: list[TrainingVolume], size: int | tuple[int, int], seed: int = 0,
                 augment_data: bool = True, rank: int = 0, sampling: str = "slices",
                 pipeline: Preprocessing | None = None,
                 intensity_augmentation: bool = False, kind_masks: bool = False,
                 cache_bytes: int | None = None):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        #: how a slice becomes a training patch (``resize`` to ``size`` by default)
        self.pipeline = pipeline or Preprocessing("resize", size=self.size)
        if self.pipeline.size != self.size:
            raise OptionError(f"pre-processing size {self.pipeline.size} differs from the "
                             f"training size {self.size}")
        self.seed = seed
        self.rank = rank
        self.augment_data = augment_data
        self.intensity_augmentation = intensity_augmentation
        #: ``spacing`` pipeline: whole resampled slices are kept and a patch is drawn at a
        #: random position each time (the network sees background all over the field of
        #: view, not only around the image centre)
        self.random_patches = self.pipeline.name == "spacing"
        self.index: list[tuple[str, int]] = []
        self.sampling = sampling
        # per volume: its slices' positions in self.slices and their foreground voxel counts
        self._volume_slices: dict[str, np.ndarray] = {}
        self._class_counts: dict[str, np.ndarray] = {}
        #: samples carry the per-pixel ``kind`` bitmask (``weak.targets.KIND_BITS``): the
        #: ``mixed`` method's term groups; volumes without one get it inferred
        self.kind_masks = kind_masks or sampling == "kinds"
        #: term groups of each slice (``kinds`` sampling)
        self.slice_groups: list[tuple[str, ...]] = []
        entries = []
        #: (volume, z) of each supervised slice, in draw order
        self._sources: list[tuple[TrainingVolume, int]] = []
        for volume in volumes:
            zs = volume.supervised_slices()
            first = len(self._sources)
            if self.kind_masks and "kind" not in volume.targets:
                from ..weak.targets import infer_kind_mask

                volume = TrainingVolume(volume.name, volume.image,
                                        {**volume.targets,
                                         "kind": infer_kind_mask(volume.targets)},
                                        volume.reference, volume.spacing, volume.tags)
            for z in zs:
                if self.kind_masks:
                    from ..weak.targets import kind_groups

                    self.slice_groups.append(kind_groups(volume.targets["kind"][z]))
                self._sources.append((volume, z))
                self.index.append((volume.name, z))
            if not zs:
                continue
            labels = np.asarray(volume.targets["labels"][zs]).reshape(len(zs), -1)
            counts = np.stack([(labels == c).sum(1) for c in range(int(labels.max()) + 2)], 1) \
                if labels.size and labels.max() >= 0 else np.zeros((len(zs), 1), int)
            self._volume_slices[volume.name] = np.arange(first, len(self._sources))
            self._class_counts[volume.name] = counts
            classes = [c for c in range(1, counts.shape[1]) if counts[:, c].any()]
            entries.append((volume.name, volume.tags, classes))
        self._sampler = None
        self._kind_sampler = None
        if not self._sources:
            raise InputError("no annotated slices to train on: every volume lacks annotations "
                             "of the kinds this method learns from")
        if sampling == "kinds":
            from .sampling import KindSampler

            self._kind_sampler = KindSampler(self.slice_groups)
        elif sampling != "slices" and entries:
            from .sampling import VolumeSampler

            self._sampler = VolumeSampler(entries, sampling, seed=seed)
        self._spec = fill_spec_of_volumes([v for v, _ in self._sources], kind_masks)
        self._keep_kind = kind_masks
        first_sample = self._prepare(0)
        self.keys = sorted(first_sample)
        per_slice = sum(v.nbytes for v in first_sample.values())
        budget = cache_bytes if cache_bytes is not None else default_cache_bytes()
        #: every prepared slice kept in memory (the cohort fits ``cache_bytes``), else a
        #: bounded least-recently-used cache: memory stays flat in the number of volumes
        self.lazy = per_slice * len(self._sources) > budget
        if self.lazy:
            self._cache: OrderedDict[int, dict] = OrderedDict({0: first_sample})
            self._cache_slots = max(32, budget // max(per_slice, 1))
            self.slices = _LazySlices(self)
        else:
            self.slices = [first_sample] + [self._prepare(i)
                                            for i in range(1, len(self._sources))]

    def _prepare(self, i: int) -> dict[str, np.ndarray]:
        """Slice ``i`` at the training size with every key of the dataset (uncached)."""
        volume, z = self._sources[i]
        image = self.pipeline.training_slice(np.asarray(volume.image[z]), volume.spacing, 1,
                                             0.0, crop=not self.random_patches)
        sample = {"image": image.astype(np.float32)}
        sample.update(_slice_targets(volume, z, self.pipeline))
        if not self._keep_kind:
            sample.pop("kind", None)  # single-kind methods: batches as before
        return fill_missing(sample, self._spec)

    def sample(self, i: int) -> dict[str, np.ndarray]:
        """Prepared slice ``i`` (not to be modified: copy first)."""
        if not self.lazy:
            return self.slices[i]
        cached = self._cache.get(i)
        if cached is not None:
            self._cache.move_to_end(i)
            return cached
        prepared = self._prepare(i)
        self._cache[i] = prepared
        if len(self._cache) > self._cache_slots:
            self._cache.popitem(last=False)
        return prepared

    def __len__(self) -> int:
        return len(self._sources)

    def _draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Positions in ``self.slices``: uniform over slices, kind → slice, or volume →
        class → slice."""
        if self._kind_sampler is not None:
            return np.asarray([self._kind_sampler.draw(rng) for _ in range(n)])
        if self._sampler is None:
            return rng.integers(0, len(self._sources), size=n)
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
            prepared = self.sample(int(i))
            if self.random_patches:
                sample = random_patch(prepared, self.size, rng)
            else:
                sample = {k: v.copy() for k, v in prepared.items()}
            sample = augment(sample, rng) if self.augment_data else sample
            if self.intensity_augmentation:
                sample["image"] = intensity_augment(sample["image"], rng)
            samples.append(sample)
        out = {k: np.stack([s[k] for s in samples]) for k in self.keys}
        out["image"] = out["image"][:, None]
        return out


def memory_mapped(volume: TrainingVolume, folder) -> TrainingVolume:
    """``volume`` with its image, targets and reference written to ``folder`` (created; one
    ``.npy`` per array, each written atomically) and read back memory-mapped (read-only): a
    cohort larger than memory trains from the page cache. ``folder`` must be one the caller
    owns (a run's cache folder)."""
    from pathlib import Path

    from ..io.atomic import atomic_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def spill(name: str, array: np.ndarray) -> np.ndarray:
        path = folder / f"{name}.npy"
        with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
        return np.load(path, mmap_mode="r", allow_pickle=False)

    targets = {key: spill(f"target_{key}", value) for key, value in volume.targets.items()}
    reference = None if volume.reference is None else spill("reference", volume.reference)
    return TrainingVolume(volume.name, spill("image", volume.image), targets, reference,
                          volume.spacing, volume.tags)


class _LazySlices:
    """``dataset.slices`` of a lazy dataset: indexable, prepared on demand."""

    def __init__(self, dataset: SliceDataset):
        self._dataset = dataset

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return self._dataset.sample(int(i))

    def __iter__(self):
        return (self._dataset.sample(i) for i in range(len(self._dataset)))


def default_cache_bytes() -> int:
    """Memory for prepared training slices before a dataset turns lazy: the
    ``WEAKSEG_SLICE_CACHE_MB`` environment variable (MiB), default 2048."""
    import os

    try:
        return int(float(os.environ.get("WEAKSEG_SLICE_CACHE_MB", "2048")) * 2 ** 20)
    except ValueError:
        raise OptionError("WEAKSEG_SLICE_CACHE_MB must be a number of MiB") from None


def to_tensors(batch: dict[str, np.ndarray], device) -> dict:
    import torch

    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device, non_blocking=True)
            for k, v in batch.items()}
