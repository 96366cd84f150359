"""Label schema (ordered classes with names and colours) and the annotation encoding.

Encoding used in napari layers *and* on disk for every annotation kind except
``coarse_neg`` (see ``docs/annotations.md``): value 0 = **unannotated**, value ``c + 1`` =
class ``c`` (so annotated background is 1). napari paints 0 as "nothing", so an eraser
stroke truly removes information. Dense ground truth keeps the plain class values
(0 = background), as ACDC ships it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError, UnknownNameError

UNANNOTATED = 0


def encode_class(class_index: int | np.ndarray) -> int | np.ndarray:
    """Class index → stored annotation value."""
    return class_index + 1


def decode_value(value: int | np.ndarray) -> int | np.ndarray:
    """Stored annotation value → class index (−1 where unannotated)."""
    return np.asarray(value).astype(np.int64) - 1


@dataclass(frozen=True)
class LabelClass:
    """A class: ``name``, ``color`` and optional anatomical rules used by the ``anatomy``
    post-processing and the export QC (``napari_weakseg.postprocess``):
    ``enclosed_by`` — the name of the class that encloses this one in-plane (a cavity inside
    its wall, e.g. the LV blood pool inside the myocardium)."""

    name: str
    color: tuple[float, float, float, float]  # RGBA in [0, 1]
    enclosed_by: str | None = None


def _rgba(hex_color: str, alpha: float = 1.0) -> tuple[float, float, float, float]:
    hex_color = hex_color.lstrip("#")
    r, g, b = (int(hex_color[i:i + 2], 16) / 255.0 for i in (0, 2, 4))
    return (r, g, b, alpha)


@dataclass(frozen=True)
class LabelSchema:
    """Ordered classes; index 0 is background. Values of dense masks are class indices."""

    classes: tuple[LabelClass, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if len(self.classes) < 2:
            raise InputError("a label schema needs background plus at least one class")
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise InputError(f"class names must be unique, got {names}")
        for c in self.classes:
            if c.enclosed_by is not None and (c.enclosed_by not in names[1:]
                                              or c.enclosed_by == c.name):
                raise InputError(f"class {c.name!r}: enclosed_by must name another "
                                 f"foreground class, got {c.enclosed_by!r}")

    @classmethod
    def cardiac(cls) -> LabelSchema:
        """ACDC values: 0 background, 1 RV, 2 MYO, 3 LV; the LV is enclosed by the MYO."""
        return cls((
            LabelClass("background", _rgba("#f2d95c")),
            LabelClass("RV", _rgba("#3d8bff")),
            LabelClass("MYO", _rgba("#3fd16b")),
            LabelClass("LV", _rgba("#ff4a4a"), enclosed_by="MYO"),
        ))

    @classmethod
    def from_names(cls, names: list[str], colors: list[str] | None = None) -> LabelSchema:
        palette = colors or ["#f2d95c", "#3d8bff", "#3fd16b", "#ff4a4a", "#c05cff",
                             "#ff9f1c", "#2ec4b6", "#e71d73", "#8d6e63", "#9e9e9e"]
        return cls(tuple(LabelClass(n, _rgba(palette[i % len(palette)]))
                         for i, n in enumerate(names)))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise UnknownNameError(f"no class named {name!r}; classes are {self.names}") from None

    def annotation_colormap(self) -> dict[int | None, tuple[float, ...]]:
        """napari Labels colour dict for the annotation encoding (value = class + 1)."""
        colors: dict[int | None, tuple[float, ...]] = {None: (0.0, 0.0, 0.0, 0.0),
                                                       UNANNOTATED: (0.0, 0.0, 0.0, 0.0)}
        for i, label_class in enumerate(self.classes):
            colors[int(encode_class(i))] = label_class.color
        return colors

    def dense_colormap(self) -> dict[int | None, tuple[float, ...]]:
        """napari Labels colour dict for dense masks (value = class; background hidden)."""
        colors: dict[int | None, tuple[float, ...]] = {None: (0.0, 0.0, 0.0, 0.0),
                                                       0: (0.0, 0.0, 0.0, 0.0)}
        for i, label_class in enumerate(self.classes[1:], start=1):
            colors[i] = label_class.color
        return colors

    def rules(self) -> dict[str, dict[str, str]]:
        """The anatomical rules by class name, e.g. ``{"LV": {"enclosed_by": "MYO"}}``."""
        return {c.name: {"enclosed_by": c.enclosed_by} for c in self.classes
                if c.enclosed_by is not None}

    def to_dict(self) -> dict:
        return {"classes": [{"name": c.name, "color": list(c.color),
                             **({"enclosed_by": c.enclosed_by} if c.enclosed_by else {})}
                            for c in self.classes]}

    @classmethod
    def from_dict(cls, data: dict) -> LabelSchema:
        return cls(tuple(LabelClass(c["name"], tuple(c["color"]), c.get("enclosed_by"))
                         for c in data["classes"]))
