"""Post-processing of label maps, declared by name and recorded in the model.

A model folder's ``config.json`` records ``postprocessing``:
``{"name": "anatomy", "rules": {"LV": {"enclosed_by": "MYO"}}, "apply_rules": true}``;
:meth:`Postprocessing.from_config` reads it back (a legacy ``{"largest_component": true}``
is ``largest``; no entry at all is ``none``, i.e. as before). Names (:data:`POSTPROCESSORS`):

``none``
    the network's argmax as it is;
``largest``
    per foreground class, only its largest 3D connected component (26-connectivity);
``anatomy``
    the organ first: one 3D connected component of the *union* of all foreground classes
    is kept, every class voxel outside it becomes background (so each class keeps exactly
    its components that touch or lie in the organ). The organ is the component with the
    most *confident* volume — the sum over its voxels of ``2·p − 1`` (``p`` the winning
    class's softmax probability) — when the probabilities are given, else the largest one:
    a network that fires on the chest wall does so with less confidence than on the organ
    (on ACDC val with the zoo model the confident volume picks the heart in 20 of 20
    volumes, the plain size in 17). Then, unless switched off
    (``apply_rules``), the label schema's rules (:meth:`LabelSchema.rules`):
    ``enclosed_by`` — class A is enclosed by class B (e.g. a cavity inside its wall): per
    slice, background holes of ``A ∪ B`` become A.

Rules come from the schema (``schema.LabelClass.enclosed_by``), never from class names.
Qt-, napari- and torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import OptionError


class _Ndimage:
    """``scipy.ndimage``, imported on first use: the CLI builds its flags from
    :data:`POSTPROCESSORS` and should not pay scipy's import (~0.25 s) for ``--help``."""

    def __getattr__(self, name: str):
        global ndimage
        from scipy import ndimage as module

        ndimage = module  # from now on the module itself
        return getattr(module, name)


ndimage = _Ndimage()

POSTPROCESSORS = ("none", "largest", "anatomy")
DEFAULT_POSTPROCESSING = "anatomy"


def _structure_3d():
    return ndimage.generate_binary_structure(3, 3)


def keep_largest_component(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per foreground class, keep the largest 3D connected component (26-connectivity);
    the other voxels of that class become background (0). Returns a new array."""
    out = np.array(labels, copy=True)
    structure = _structure_3d()
    for c in range(1, num_classes):
        mask = out == c
        if not mask.any():
            continue
        components, n = ndimage.label(mask, structure)
        if n > 1:
            sizes = np.bincount(components.ravel())[1:]
            out[mask & (components != int(np.argmax(sizes)) + 1)] = 0
    return out


def keep_largest_foreground_component(labels: np.ndarray,
                                      probabilities: np.ndarray | None = None) -> np.ndarray:
    """Keep one 3D connected component (26-connectivity) of the union of all foreground
    classes (the organ) — the largest, or with ``probabilities`` (C, Z, Y, X) the one with
    the largest confident volume Σ (2·p_max − 1); every other foreground voxel becomes
    background."""
    out = np.array(labels, copy=True)
    foreground = out > 0
    if not foreground.any():
        return out
    components, n = ndimage.label(foreground, _structure_3d())
    if n > 1:
        if probabilities is None:
            scores = np.bincount(components.ravel())[1:]
        else:
            confidence = 2.0 * np.asarray(probabilities).max(axis=0) - 1.0
            scores = ndimage.sum(confidence, components, np.arange(1, n + 1))
        out[foreground & (components != int(np.argmax(scores)) + 1)] = 0
    return out


def fill_holes(labels: np.ndarray) -> np.ndarray:
    """Slice by slice (axis 0), a background region (4-connected) that does not touch the
    slice border and borders exactly one class becomes that class — a hole inside the
    myocardium ring that borders the LV too is left alone. Returns a new array."""
    out = np.array(labels, copy=True)
    cross = ndimage.generate_binary_structure(2, 1)
    for z in range(out.shape[0]):
        plane = out[z]
        background = plane == 0
        if background.all() or not background.any():
            continue
        components, n = ndimage.label(background, cross)
        border = set(np.unique(np.concatenate([components[0], components[-1],
                                               components[:, 0], components[:, -1]])))
        for index, box in enumerate(ndimage.find_objects(components), start=1):
            if box is None or index in border:
                continue
            box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
            region = components[box] == index
            ring = ndimage.binary_dilation(region, cross) & ~region
            neighbours = np.unique(plane[box][ring])
            if neighbours.size == 1 and neighbours[0] != 0:
                plane[box][region] = neighbours[0]
    return out


def fill_enclosed(labels: np.ndarray, inner: int, outer: int) -> np.ndarray:
    """Rule ``inner`` enclosed by ``outer``: per slice (axis 0), the background holes of
    ``inner ∪ outer`` become ``inner``. Returns a new array."""
    out = np.array(labels, copy=True)
    for z in range(out.shape[0]):
        plane = out[z]
        both = (plane == inner) | (plane == outer)
        if not (plane == outer).any():
            continue
        holes = ndimage.binary_fill_holes(both) & (plane == 0)
        plane[holes] = inner
    return out


def enclosed_fraction(labels: np.ndarray, inner: int, outer: int) -> float | None:
    """The fraction of ``inner``'s voxels that lie, slice by slice, inside ``outer`` with
    its holes filled (1.0: fully enclosed); ``None`` when there is no ``inner`` voxel."""
    labels = np.asarray(labels)
    total = inside = 0
    for z in range(labels.shape[0]):
        mask = labels[z] == inner
        count = int(mask.sum())
        if not count:
            continue
        total += count
        wall = labels[z] == outer
        if wall.any():
            inside += int((mask & ndimage.binary_fill_holes(wall)).sum())
    return None if total == 0 else inside / total


def component_count(mask: np.ndarray) -> tuple[int, float]:
    """``(n, fraction outside the largest)`` of a 3D mask's 26-connected components."""
    if not np.any(mask):
        return 0, 0.0
    components, n = ndimage.label(mask, _structure_3d())
    if n <= 1:
        return int(n), 0.0
    sizes = np.bincount(components.ravel())[1:]
    return int(n), float(1.0 - sizes.max() / sizes.sum())


@dataclass(frozen=True)
class Postprocessing:
    """A named post-processing with the schema's rules (``{class name: {"enclosed_by":
    class name}}``) and whether ``anatomy`` applies them."""

    name: str = DEFAULT_POSTPROCESSING
    rules: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    apply_rules: bool = True

    def __post_init__(self):
        if self.name not in POSTPROCESSORS:
            raise OptionError(f"unknown post-processing {self.name!r}; known: "
                             f"{', '.join(POSTPROCESSORS)}")

    @classmethod
    def from_config(cls, config: Mapping | None) -> Postprocessing:
        """The post-processing a model ``config.json`` records (its ``postprocessing``
        entry): none when absent, ``largest`` for the legacy ``largest_component: true``."""
        if config is None:
            return cls("none")
        if not isinstance(config, Mapping):
            raise OptionError(f"postprocessing must be a JSON object, got {config!r}")
        name = config.get("name")
        if name is None:
            name = "largest" if config.get("largest_component") else "none"
        rules = config.get("rules") or {}
        if not isinstance(rules, Mapping):
            raise OptionError(f"postprocessing rules must be a JSON object, got {rules!r}")
        return cls(str(name), {str(k): dict(v) for k, v in rules.items()},
                   bool(config.get("apply_rules", True)))

    @classmethod
    def for_schema(cls, name: str, schema) -> Postprocessing:
        return cls(name, schema.rules())

    def with_name(self, name: str | None) -> Postprocessing:
        return self if name is None else Postprocessing(name, self.rules, self.apply_rules)

    def to_config(self) -> dict:
        return {"name": self.name, "rules": {k: dict(v) for k, v in self.rules.items()},
                "apply_rules": self.apply_rules}

    def enclosures(self, classes: Sequence[str]) -> list[tuple[int, int]]:
        """``(inner index, outer index)`` of the ``enclosed_by`` rules whose classes the
        model has."""
        out = []
        for inner, rule in self.rules.items():
            outer = rule.get("enclosed_by")
            if outer and inner in classes and outer in classes:
                out.append((list(classes).index(inner), list(classes).index(outer)))
        return out

    def __call__(self, labels: np.ndarray, classes: Sequence[str],
                 probabilities: np.ndarray | None = None) -> np.ndarray:
        """The post-processed labels (a new array); ``classes``: names, index 0 background;
        ``probabilities`` (C, Z, Y, X): the softmax, used by ``anatomy`` to find the organ."""
        if self.name == "none":
            return np.array(labels, copy=True)
        if self.name == "largest":
            return keep_largest_component(labels, len(classes))
        out = keep_largest_foreground_component(labels, probabilities)
        if self.apply_rules:
            for inner, outer in self.enclosures(classes):
                out = fill_enclosed(out, inner, outer)
        return out


def postprocess_labels(labels: np.ndarray, classes: Sequence[str], name: str = "none",
                       rules: Mapping | None = None,
                       probabilities: np.ndarray | None = None) -> np.ndarray:
    """``Postprocessing(name, rules)(labels, classes, probabilities)``."""
    return Postprocessing(name, dict(rules or {}))(labels, classes, probabilities)


__all__ = [
    "DEFAULT_POSTPROCESSING", "POSTPROCESSORS", "Postprocessing", "component_count",
    "enclosed_fraction", "fill_enclosed", "fill_holes", "keep_largest_component",
    "keep_largest_foreground_component", "postprocess_labels",
]
