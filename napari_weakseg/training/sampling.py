"""Which volume (and slice) the next training sample comes from: multi-source sampling.

Pure Python/numpy (no torch). Built from ``(volume_id, tags, classes)`` triples: ``tags`` a
mapping with ``dataset`` and ``modality`` (missing → ``"unknown"``), ``classes`` the
foreground classes (ints ≥ 1) whose voxels the volume's labels contain.

Strategies (Chen et al., CVPR'24, Table 3):

``"hierarchical"`` (default)  class → modality → dataset → volume, each level drawn
    uniformly among the values available under the choices above it (the authors' code:
    ``random.choice`` per level of a category → modality → dataset → file tree). As coded,
    background (class 0) is a category too and every volume carries it
    (``include_background``), so a fraction 1/(#classes + 1) of the draws ignores the classes.
``"mdc"``  modality → dataset → class → volume. The acronym is not explained in the
    material we have (``methods-as-coded.md`` §3, issue 7); *our interpretation*: the same
    hierarchical sampler with the levels in the order Modality → Dataset → Class, i.e. balance
    modalities first, then datasets within a modality, then the classes a dataset carries.
``"uniform"``  every volume equally likely (plain random sampling); no class is drawn.

Any other level order can be given with ``levels`` (a permutation of
``("class", "modality", "dataset")``).

A draw returns the volume and the class it was drawn for; :func:`choose_slice` then picks a
slice: proportional to that class's voxel count per slice (= the authors' "patch centred on
a uniformly drawn voxel of the class"), restricted to usable (e.g. declared) slices.

``"kinds"`` (:class:`KindSampler`, the ``mixed`` method's default; *our* choice, no paper
has it): the annotation kind is one more level above the slices — a term group (scribble,
coarse, partial, dense) is drawn uniformly among the groups present, then a slice uniformly
among the slices carrying that group (a slice carrying two groups can be drawn under
either). So three accepted corrected slices are drawn as often as all the scribbled slices
together: the rare, expensive annotations count, at the risk of repeating them often
(``sampling="slices"`` draws uniformly over slices instead).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, OptionError

__all__ = ["Draw", "KindSampler", "VolumeSampler", "choose_slice", "STRATEGIES", "LEVELS"]

LEVELS = ("class", "modality", "dataset")
STRATEGIES = {
    "hierarchical": ("class", "modality", "dataset"),
    "mdc": ("modality", "dataset", "class"),
    "uniform": (),
}


@dataclass(frozen=True)
class Draw:
    """One sampling outcome: the volume and the class it was drawn for (``None`` for the
    uniform strategy; 0 = the background category)."""

    volume_id: Hashable
    category: int | None


def _sort_key(value):
    return (type(value).__name__, value)


class VolumeSampler:
    """Seeded sampler of training volumes.

    ``volumes``: iterable of ``(volume_id, tags, classes)``; ``strategy``: a key of
    :data:`STRATEGIES`; ``levels`` overrides the strategy's level order; ``seed`` an int or a
    ``numpy.random.Generator`` (shared with :meth:`choose_slice`).
    """

    def __init__(self, volumes: Iterable[tuple[Hashable, Mapping, Iterable[int]]],
                 strategy: str = "hierarchical", *, seed: int | np.random.Generator = 0,
                 include_background: bool = True, levels: Sequence[str] | None = None):
        if strategy not in STRATEGIES:
            raise OptionError(f"unknown strategy {strategy!r}; choose from {sorted(STRATEGIES)}")
        self.strategy = strategy
        self.levels = tuple(STRATEGIES[strategy] if levels is None else levels)
        if self.levels and sorted(self.levels) != sorted(LEVELS):
            raise ValueError(f"levels must be a permutation of {LEVELS}, got {self.levels}")
        self.include_background = include_background
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._pairs: list[tuple[Hashable, dict]] = []  # (volume_id, keys) per (volume, class)
        self._ids: list[Hashable] = []
        self._pairs_seen: set = set()
        for volume_id, tags, classes in volumes:
            if volume_id in self._pairs_seen:
                raise ValueError(f"duplicate volume id {volume_id!r}")
            self._pairs_seen.add(volume_id)
            self._ids.append(volume_id)
            cats = sorted({int(c) for c in classes if int(c) > 0})
            if include_background:
                cats = [0] + cats
            for c in cats:
                self._pairs.append((volume_id, {
                    "class": c,
                    "modality": str(tags.get("modality", "unknown")),
                    "dataset": str(tags.get("dataset", "unknown")),
                }))
        if not self._ids:
            raise InputError("no volumes to sample from")
        if self.levels and not self._pairs:
            raise InputError("no volume carries a class (and include_background is False)")
        self._tree = self._build(self._pairs, 0) if self.levels else None

    # tree: {"keys": [...], "children": [...]} per level, leaf = list of (volume_id, class)
    def _build(self, pairs, depth):
        if depth == len(self.levels):
            seen: dict = {}
            for vid, keys in pairs:
                seen.setdefault(vid, keys["class"])
            return sorted(seen.items(), key=lambda kv: _sort_key(kv[0]))
        level = self.levels[depth]
        groups: dict = {}
        for vid, keys in pairs:
            groups.setdefault(keys[level], []).append((vid, keys))
        keys = sorted(groups, key=_sort_key)
        return {"keys": keys, "children": [self._build(groups[k], depth + 1) for k in keys]}

    @property
    def volume_ids(self) -> list[Hashable]:
        return list(self._ids)

    def draw(self) -> Draw:
        """One draw (advances the generator)."""
        if self._tree is None:
            return Draw(self._ids[int(self.rng.integers(len(self._ids)))], None)
        node = self._tree
        while isinstance(node, dict):
            node = node["children"][int(self.rng.integers(len(node["keys"])))]
        vid, category = node[int(self.rng.integers(len(node)))]
        return Draw(vid, category)

    def sample(self, n: int) -> list[Draw]:
        return [self.draw() for _ in range(n)]

    def __iter__(self):
        while True:
            yield self.draw()

    def probabilities(self) -> dict[Hashable, float]:
        """Exact probability of each volume under the strategy (sums to 1)."""
        out = {vid: 0.0 for vid in self._ids}
        if self._tree is None:
            return {vid: 1.0 / len(self._ids) for vid in self._ids}

        def walk(node, mass):
            if isinstance(node, dict):
                for child in node["children"]:
                    walk(child, mass / len(node["keys"]))
            else:
                for vid, _ in node:
                    out[vid] += mass / len(node)

        walk(self._tree, 1.0)
        return out

    def choose_slice(self, n_slices: int, class_counts=None, allowed=None) -> int:
        """:func:`choose_slice` with this sampler's generator."""
        return choose_slice(self.rng, n_slices, class_counts, allowed)


def choose_slice(rng: np.random.Generator, n_slices: int, class_counts=None,
                 allowed=None) -> int:
    """Slice index for a drawn (volume, class).

    ``class_counts`` (n_slices,): voxels of the drawn class per slice → probability ∝ count
    (a uniformly drawn voxel of the class); ``None`` or all zero among the allowed slices →
    uniform. ``allowed`` (n_slices,) bool: usable slices (e.g. a sparse volume's declared
    slices); ``None`` = all. Raises ``ValueError`` when no slice is allowed.
    """
    ok = np.ones(n_slices, bool) if allowed is None else np.asarray(allowed, bool)
    if ok.shape != (n_slices,):
        raise ValueError(f"allowed has shape {ok.shape}, expected ({n_slices},)")
    if not ok.any():
        raise ValueError("no slice is allowed")
    w = ok.astype(float)
    if class_counts is not None:
        counts = np.asarray(class_counts, float)
        if counts.shape != (n_slices,):
            raise ValueError(f"class_counts has shape {counts.shape}, expected ({n_slices},)")
        if (counts < 0).any():
            raise ValueError("class_counts must be non-negative")
        if (counts * ok).sum() > 0:
            w = counts * ok
    return int(rng.choice(n_slices, p=w / w.sum()))


class KindSampler:
    """Kind → slice: a term group uniformly among those present, then one of its slices
    uniformly. ``slice_groups[i]``: the groups (names) slice ``i`` carries. Each draw uses
    two draws of the given generator (so an iteration's batch depends on its seed only)."""

    def __init__(self, slice_groups: Sequence[Iterable[str]]):
        by_group: dict[str, list[int]] = {}
        for i, groups in enumerate(slice_groups):
            for group in groups:
                by_group.setdefault(group, []).append(i)
        if not by_group:
            raise InputError("no slice carries a supervised kind to sample from")
        self.groups = sorted(by_group)
        self._slices = [np.asarray(by_group[g]) for g in self.groups]

    def draw(self, rng: np.random.Generator) -> int:
        positions = self._slices[int(rng.integers(len(self.groups)))]
        return int(positions[int(rng.integers(len(positions)))])

    def probabilities(self, n_slices: int) -> np.ndarray:
        """Exact probability of each slice (sums to 1)."""
        out = np.zeros(n_slices)
        for positions in self._slices:
            out[positions] += 1.0 / (len(self.groups) * len(positions))
        return out
