"""How much drawing an annotation costs: strokes, path length and estimated seconds.

Counted per 2D slice (annotators draw on slices), from what ends up in the annotation:

* **Scribbles** (:func:`scribble_effort`): every 8-connected component of one label value
  is one stroke; its path length is its skeleton length (pixels on the medial line), or its
  area divided by the brush width when that is longer (a thick stroke).
* **Coarse masks** (:func:`region_effort`): every component is outlined once (lasso, then
  fill): one stroke whose length is the component's outline (boundary pixels).
* **Corrections** (:func:`correction_effort`): the pixels whose label differs between the
  prediction and the corrected map, grouped by the label painted there; every 8-connected
  component is one brush stroke (paint or erase) whose length is the longer of its skeleton
  length and area / brush width. A slice accepted without change costs no stroke.

:class:`EffortModel` turns counts into seconds:
``slices · slice_s + strokes · stroke_s + free_px / free_speed + trace_px / trace_speed``
— scribbles are drawn freely inside a structure, corrections and outlines follow a
boundary (slower). The default constants are **assumptions** of this project, not
measurements (see ``docs/results.md``, "annotation effort"); they are parameters of
``benchmarks/annotation_effort.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

_EIGHT = np.ones((3, 3), bool)


@dataclass
class Effort:
    """Effort of some drawing: ``strokes``, ``pixels`` painted (or changed), path length in
    pixels — ``free_px`` (scribbles) and ``trace_px`` (along boundaries: outlines,
    corrections) — and ``slices`` touched."""

    strokes: int = 0
    pixels: int = 0
    free_px: float = 0.0
    trace_px: float = 0.0
    slices: int = 0

    def __add__(self, other: Effort) -> Effort:
        return Effort(self.strokes + other.strokes, self.pixels + other.pixels,
                      self.free_px + other.free_px, self.trace_px + other.trace_px,
                      self.slices + other.slices)

    @property
    def length_px(self) -> float:
        return self.free_px + self.trace_px

    def to_dict(self) -> dict:
        return {**asdict(self), "length_px": self.length_px}


@dataclass(frozen=True)
class EffortModel:
    """Seconds of an :class:`Effort` (module docstring). Defaults are assumptions."""

    slice_s: float = 3.0        # navigate to the slice and look at it
    stroke_s: float = 1.0       # pick the label, move to the start, press
    free_speed_px_s: float = 60.0   # free scribbling inside a structure
    trace_speed_px_s: float = 20.0  # following a boundary (outline, correction)
    brush_px: int = 3            # brush diameter for painted regions (corrections)
    notes: str = field(default="assumed, not measured", compare=False)

    def seconds(self, effort: Effort) -> float:
        return (effort.slices * self.slice_s + effort.strokes * self.stroke_s
                + effort.free_px / self.free_speed_px_s
                + effort.trace_px / self.trace_speed_px_s)

    def to_dict(self) -> dict:
        return asdict(self)


def _components(mask: np.ndarray):
    labelled, count = ndimage.label(mask, structure=_EIGHT)
    return labelled, count


def _skeleton_length(component: np.ndarray) -> float:
    from skimage.morphology import skeletonize

    return float(skeletonize(component).sum()) if component.any() else 0.0


def _stroke_lengths(mask: np.ndarray, brush_px: float) -> list[float]:
    labelled, count = _components(mask)
    lengths = []
    for index, box in enumerate(ndimage.find_objects(labelled), start=1):
        if box is None:
            continue
        component = labelled[box] == index
        area = float(component.sum())
        lengths.append(max(_skeleton_length(component), area / max(brush_px, 1), 1.0))
    return lengths


def scribble_effort(encoded_slice: np.ndarray, brush_px: int = 1) -> Effort:
    """Strokes of one slice of a class-encoded annotation (0 = unannotated)."""
    data = np.asarray(encoded_slice)
    strokes, length = 0, 0.0
    for value in np.unique(data):
        if value == 0:
            continue
        lengths = _stroke_lengths(data == value, brush_px)
        strokes += len(lengths)
        length += sum(lengths)
    return Effort(strokes=strokes, pixels=int((data != 0).sum()), free_px=length,
                  slices=1 if strokes else 0)


def region_effort(encoded_slice: np.ndarray) -> Effort:
    """Outlines of the regions of one slice of a class-encoded mask (coarse masks)."""
    data = np.asarray(encoded_slice)
    strokes, length = 0, 0.0
    for value in np.unique(data):
        if value == 0:
            continue
        labelled, count = _components(data == value)
        for index in range(1, count + 1):
            component = labelled == index
            boundary = component & ~ndimage.binary_erosion(component, border_value=0)
            strokes += 1
            length += float(max(boundary.sum(), 1))
    return Effort(strokes=strokes, pixels=int((data != 0).sum()), trace_px=length,
                  slices=1 if strokes else 0)


def correction_effort(original_slice: np.ndarray, edited_slice: np.ndarray,
                      brush_px: int = 3) -> Effort:
    """Brush strokes that turn ``original_slice`` into ``edited_slice`` (label maps)."""
    original, edited = np.asarray(original_slice), np.asarray(edited_slice)
    changed = original != edited
    strokes, length = 0, 0.0
    for value in np.unique(edited[changed]):
        lengths = _stroke_lengths(changed & (edited == value), brush_px)
        strokes += len(lengths)
        length += sum(lengths)
    return Effort(strokes=strokes, pixels=int(changed.sum()), trace_px=length, slices=1)


__all__ = ["Effort", "EffortModel", "correction_effort", "region_effort", "scribble_effort"]
