"""Accepting a (corrected) prediction into the annotations — the Review tab's "Accept into
annotations", without Qt or napari.

A reviewer paints corrections into a predicted label map, then accepts it: the corrected
slices become a ``sparse`` annotation (each slice declared complete), or the corrected
classes a ``partial`` one (classes complete), or the whole volume ``partial`` with every
class. :func:`accepted_annotation` builds that annotation, :func:`merge_accepted` combines
it with the volume's current annotation of the kind, :func:`save_accepted` saves a new
version in the project store. Used headless by ``benchmarks/annotation_effort.py``.

Note: ``napari_weakseg/widgets/logic.py`` still carries its own copy of these functions
(the Review panel calls that one); they are meant to become re-exports of this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: How "Accept" turns a (corrected) prediction into an annotation.
ACCEPT_MODES = {
    "corrected_slices": "Corrected slices → sparse (each slice complete)",
    "current_slice": "Current slice → sparse (slice complete)",
    "corrected_classes": "Corrected classes → partial (classes complete)",
    "volume": "Whole volume → partial (every class complete)",
}


@dataclass
class Accepted:
    """An annotation made from a prediction, ready for ``Project.save_annotation``."""

    kind: str
    data: np.ndarray
    classes: tuple[int, ...] | None = None
    slices: dict[int, tuple[int, ...] | None] | None = None
    summary: str = ""
    replace: bool = False  # replaces the current annotation instead of merging


def corrected_slices(original: np.ndarray, edited: np.ndarray) -> list[int]:
    """Slices (z) where the user changed the prediction."""
    changed = np.asarray(original) != np.asarray(edited)
    return [int(z) for z in np.flatnonzero(changed.reshape(changed.shape[0], -1).any(axis=1))]


def corrected_classes(original: np.ndarray, edited: np.ndarray) -> list[int]:
    """Foreground classes whose extent the user changed (painted in or erased)."""
    changed = np.asarray(original) != np.asarray(edited)
    touched = np.union1d(np.unique(np.asarray(original)[changed]),
                         np.unique(np.asarray(edited)[changed]))
    return [int(c) for c in touched if c != 0]


def accepted_annotation(edited: np.ndarray, original: np.ndarray, mode: str,
                        num_classes: int, *, current_slice: int | None = None,
                        class_names: Sequence[str] | None = None) -> Accepted:
    """Turn the (corrected) prediction into a ``sparse`` or ``partial`` annotation.

    ``edited``/``original``: dense class maps (the Labels layer and the prediction as it
    came). Raises ``ValueError`` when the mode selects nothing (no correction made).
    """
    edited = np.asarray(edited).astype(np.int64)
    names = list(class_names) if class_names else [str(c) for c in range(num_classes)]
    every = tuple(range(num_classes))
    encoded = (edited + 1).astype(np.uint8 if num_classes < 255 else np.uint16)
    if mode == "volume":
        return Accepted("partial", encoded, every, None,
                        f"whole volume as partial ({edited.shape[0]} slices, every class)",
                        replace=True)
    if mode in ("corrected_slices", "current_slice"):
        if mode == "current_slice":
            if current_slice is None:
                raise ValueError("no current slice")
            zs = [int(current_slice)]
        else:
            zs = corrected_slices(original, edited)
            if not zs:
                raise ValueError("no slice was corrected: paint corrections into the "
                                 "prediction layer first, or accept the current slice")
        data = np.zeros_like(encoded)
        data[zs] = encoded[zs]
        return Accepted("sparse", data, None, {z: every for z in zs},
                        f"slice{'s' if len(zs) > 1 else ''} {', '.join(map(str, zs))} "
                        "as sparse (complete)")
    if mode == "corrected_classes":
        classes = corrected_classes(original, edited)
        if not classes:
            raise ValueError("no class was corrected: paint corrections into the prediction "
                             "layer first")
        data = np.where(np.isin(edited, classes), encoded, 0).astype(encoded.dtype)
        return Accepted("partial", data, tuple(classes), None,
                        "classes " + ", ".join(names[c] for c in classes)
                        + " as partial (complete)")
    raise ValueError(f"unknown accept mode {mode!r}; modes: {', '.join(ACCEPT_MODES)}")


def _present_classes(stored: np.ndarray) -> tuple[int, ...]:
    return tuple(int(v) - 1 for v in np.unique(stored) if v > 1)


def merge_accepted(existing, accepted: Accepted) -> Accepted:
    """Combine with the current annotation of that kind (``store.Annotation`` or None).

    Sparse: the accepted slices replace those slices; other declared slices are kept.
    Partial: the accepted classes replace those classes' voxels; declarations are united.
    Whole-volume accepts replace everything.
    """
    if existing is None or accepted.replace:
        return accepted
    old = np.asarray(existing.data)
    if accepted.kind == "sparse":
        data = old.astype(accepted.data.dtype, copy=True)
        old_slices = existing.declared_slices
        if old_slices is None:  # imported without declarations: labelled slices, present classes
            old_slices = {int(z): _present_classes(old[z]) for z in range(old.shape[0])
                          if np.any(old[z])}
        slices = dict(old_slices)
        for z, classes in (accepted.slices or {}).items():
            data[z] = accepted.data[z]
            slices[z] = classes
        return Accepted("sparse", data, None, dict(sorted(slices.items())),
                        accepted.summary)
    if accepted.kind == "partial":
        new_classes = set(accepted.classes or ())
        old_classes = set(existing.declared_classes or _present_classes(old))
        data = old.astype(accepted.data.dtype, copy=True)
        data[np.isin(data, [c + 1 for c in new_classes])] = 0
        painted = accepted.data > 0
        data[painted] = accepted.data[painted]
        return Accepted("partial", data, tuple(sorted(old_classes | new_classes)), None,
                        accepted.summary)
    return accepted


def save_accepted(project, volume, accepted: Accepted, *, author: str | None = None):
    """Merge with the current annotation of the kind and save a new version."""
    from ..store import NotFoundError

    try:
        existing = project.annotation(volume, accepted.kind)
    except NotFoundError:
        existing = None
    merged = merge_accepted(existing, accepted)
    return project.save_annotation(volume, merged.kind, merged.data, author=author,
                                   declared_classes=merged.classes,
                                   declared_slices=merged.slices,
                                   note=f"accepted prediction: {accepted.summary}",
                                   allow_empty=True)


__all__ = ["ACCEPT_MODES", "Accepted", "accepted_annotation", "corrected_classes",
           "corrected_slices", "merge_accepted", "save_accepted"]
