"""Annotations of one volume → the per-volume training targets the methods consume.

The arrays are the 3D counterparts of the batch keys of :mod:`napari_weakseg.methods.base`
(slice ``z`` of each is one 2D sample; :meth:`VolumeTargets.slice`). ``C`` classes,
``(Z, Y, X)`` voxels, ``P`` positive and ``Q`` negative coarse strategies:

``labels``      (Z, Y, X) int64: known class of a voxel, −1 = unknown.
``annotated``   (Z, C) bool: classes declared complete on slice z.
``valid``       (Z, Y, X) bool: voxels that carry supervision (see below).
``coarse_pos``  (P, Z, Y, X) int64: coarse class per positive strategy, −1 = none.
``coarse_neg``  (Q, C, Z, Y, X) bool: "voxel is not class c" per negative strategy.

What each kind contributes (``docs/annotations.md`` has the full table):

* ``scribble``: stroke voxels → ``labels``; slices with a stroke → ``valid``.
* ``dense``: every annotated voxel → ``labels``; all classes on all slices → ``annotated``.
* ``partial``: delineated voxels → ``labels``; declared classes on *every* slice →
  ``annotated`` (fallback when nothing was declared: the foreground classes present in the
  volume); every slice valid.
* ``sparse``: on declared slices only, delineated voxels → ``labels`` and the slice's classes
  → ``annotated``; declared slices valid; undeclared slices carry nothing (strokes drawn
  there are ignored). Fallback when nothing was declared: slices holding any label, with the
  foreground classes present on each (or ``declared_classes`` on each, when only those were
  declared).
* ``coarse_pos`` / ``coarse_neg``: one channel per strategy (order ``pos_strategies`` /
  ``neg_strategies``); slices holding any coarse mark → ``valid``.

Combining several annotations of one volume:

* ``labels`` is the union of the known voxels. Where two annotations give a voxel different
  classes, the voxel becomes unknown and *invalid* (no supervision from contradicting
  information); :attr:`VolumeTargets.conflicts` counts such voxels.
* ``annotated`` is the union of the declarations (each declaration is a statement about
  the voxels of its annotation, which all end up in ``labels``).
* Background completion: on a slice where every foreground class is declared complete, the
  background is complete too — ``annotated[z, 0]`` is set and the unknown valid voxels of
  that slice become class 0 (explicit labels win over this implied background).
* ``valid`` is the union of the valid slices of all annotations, minus conflict voxels.

Per-voxel term groups (``kind_mask``, the batch key ``kind`` of the ``mixed`` method): a
uint8 bitmask saying which annotation supervises a voxel, so that one volume may carry
several kinds and one batch may mix kinds (:data:`KIND_BITS`):

* ``scribble`` (bit 1): a stroke voxel of a scribble;
* ``coarse`` (bit 2): a voxel with a positive or negative coarse mark;
* ``partial`` (bit 4): a voxel of a partial/sparse slice whose declaration is *incomplete*
  (some foreground class undeclared): the self-disambiguation terms apply;
* ``dense`` (bit 8): a voxel of a *complete* slice (dense annotations, partial/sparse slices
  with every class declared — e.g. accepted corrected slices): CE + Dice apply.

Conflict voxels carry no label bit (scribble/partial/dense). :func:`infer_kind_mask` derives
the bitmask from targets that were built without it (single-kind volumes: exact).

``as_labels`` reduces coarse kinds to labelled voxels (e.g. for the ``pce`` baseline):
``coarse_pos`` marks become labels; a ``coarse_neg`` voxel that excludes all classes but one
becomes that class. Reduced kinds no longer appear in the coarse arrays.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import InputError
from .encoding import KINDS, check_kind, decode_classes, decode_not_classes

#: Term groups of the per-voxel ``kind`` bitmask (see the module docstring).
KIND_BITS = {"scribble": 1, "coarse": 2, "partial": 4, "dense": 8}
#: Which term group each annotation kind feeds (partial/sparse: ``dense`` on complete slices).
KIND_GROUPS = {"scribble": "scribble", "coarse_pos": "coarse", "coarse_neg": "coarse",
               "partial": "partial", "sparse": "partial", "dense": "dense"}


class AnnotationLike(Protocol):
    """What :func:`build_targets` reads (``store.Annotation`` satisfies it)."""

    kind: str
    strategy: str
    data: np.ndarray
    declared_classes: tuple[int, ...] | None
    declared_slices: dict[int, tuple[int, ...]] | None


@dataclass(frozen=True)
class SimpleAnnotation:
    """An in-memory annotation (for tests, simulation and callers without a store)."""

    kind: str
    data: np.ndarray
    strategy: str = "default"
    declared_classes: tuple[int, ...] | None = None
    declared_slices: dict[int, tuple[int, ...]] | None = None


@dataclass(frozen=True, eq=False)
class VolumeTargets:
    """Training targets of one volume (shapes in the module docstring)."""

    labels: np.ndarray
    annotated: np.ndarray
    valid: np.ndarray
    coarse_pos: np.ndarray
    coarse_neg: np.ndarray
    pos_strategies: tuple[str, ...] = ()
    neg_strategies: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    conflicts: int = 0
    #: (Z, Y, X) uint8 term-group bitmask (:data:`KIND_BITS`); ``None`` = not built
    kind_mask: np.ndarray | None = None

    KEYS = ("labels", "annotated", "valid", "coarse_pos", "coarse_neg")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.labels.shape)  # type: ignore[return-value]

    def as_dict(self, kind: bool = False) -> dict[str, np.ndarray]:
        """The five batch keys as (Z, …) arrays; with ``kind`` also the ``kind`` bitmask
        (what the ``mixed`` method needs; single-kind methods' batches stay as they were)."""
        out = {key: getattr(self, key) for key in self.KEYS}
        if kind:
            out["kind"] = (self.kind_mask if self.kind_mask is not None
                           else infer_kind_mask(out))
        return out

    def slice(self, z: int) -> dict[str, np.ndarray]:
        """Slice ``z`` as one 2D sample: labels (Y, X), annotated (C,), valid (Y, X),
        coarse_pos (P, Y, X), coarse_neg (Q, C, Y, X)."""
        return {"labels": self.labels[z], "annotated": self.annotated[z],
                "valid": self.valid[z], "coarse_pos": self.coarse_pos[:, z],
                "coarse_neg": self.coarse_neg[:, :, z]}

    def supervised_slices(self) -> np.ndarray:
        """Indices of the slices that carry any supervision."""
        return np.flatnonzero(self.valid.reshape(self.valid.shape[0], -1).any(axis=1))


def build_targets(annotations: Iterable[AnnotationLike], num_classes: int,
                  shape: tuple[int, int, int] | None = None, *,
                  pos_strategies: Iterable[str] | None = None,
                  neg_strategies: Iterable[str] | None = None,
                  as_labels: Collection[str] = (),
                  kinds: Collection[str] | None = None) -> VolumeTargets:
    """Combine the annotations of one volume into its :class:`VolumeTargets`.

    ``annotations``: at most one per (kind, strategy), arrays (Z, Y, X) in the stored
    encoding. ``shape`` is required when there are no annotations. ``pos_strategies`` /
    ``neg_strategies`` fix the order (and size P / Q) of the coarse channels — pass the
    project-wide lists so that channel p means the same strategy in every volume; by default
    the strategies present, sorted. ``as_labels``: kinds reduced to labelled voxels
    (``coarse_pos``, ``coarse_neg``; the other kinds are labels already). ``kinds``: use only
    annotations of these kinds.
    """
    annotations = [a for a in annotations if kinds is None or a.kind in kinds]
    for kind in as_labels:
        check_kind(kind)
    seen = set()
    for a in annotations:
        check_kind(a.kind)
        key = (a.kind, a.strategy)
        if key in seen:
            raise InputError(f"two {a.kind} annotations with strategy {a.strategy!r}; pass one "
                             "version per annotation")
        seen.add(key)
        if shape is None:
            shape = tuple(np.shape(a.data))
        if tuple(np.shape(a.data)) != tuple(shape):
            raise InputError(f"{a.kind} annotation has shape {np.shape(a.data)}, expected "
                             f"{tuple(shape)}")
    if shape is None:
        raise ValueError("no annotations and no shape: cannot build targets")
    nz = shape[0]
    C = num_classes

    def strategies(kind: str, given: Iterable[str] | None) -> tuple[str, ...]:
        present = sorted({a.strategy for a in annotations if a.kind == kind})
        if kind in as_labels:
            return ()
        if given is None:
            return tuple(present)
        given = tuple(given)
        missing = [s for s in present if s not in given]
        if missing:
            raise ValueError(f"{kind} strategies {missing} are not in the channel list {given}")
        return given

    pos = strategies("coarse_pos", pos_strategies)
    neg = strategies("coarse_neg", neg_strategies)
    labels = np.full(shape, -1, np.int64)
    conflict = np.zeros(shape, bool)
    annotated = np.zeros((nz, C), bool)
    valid_slices = np.zeros(nz, bool)
    kind_mask = np.zeros(shape, np.uint8)
    delineated_slices = np.zeros(nz, bool)  # slices of partial/sparse/dense annotations
    coarse_pos = np.full((len(pos),) + tuple(shape), -1, np.int64)
    coarse_neg = np.zeros((len(neg), C) + tuple(shape), bool)

    def add_labels(candidate: np.ndarray) -> None:
        known = candidate >= 0
        conflict[...] |= known & (labels >= 0) & (labels != candidate)
        np.copyto(labels, candidate, where=known & (labels < 0))

    for a in annotations:
        data = np.asarray(a.data)
        if a.kind == "coarse_neg":
            excluded = decode_not_classes(data, C)
            marked = data > 0
        else:
            classes = decode_classes(data)
            marked = classes >= 0
        slices_marked = marked.reshape(nz, -1).any(axis=1)

        if a.kind in ("scribble", "dense", "partial"):
            add_labels(classes)
            if a.kind == "scribble":
                valid_slices |= slices_marked
                kind_mask[marked] |= KIND_BITS["scribble"]
            else:
                valid_slices[:] = True
                delineated_slices[:] = True
            if a.kind == "dense":
                annotated[:] = True
            elif a.kind == "partial":
                declared = a.declared_classes
                if declared is None:  # fallback: foreground classes present
                    declared = [int(c) for c in np.unique(classes) if c >= 1]
                annotated[:, list(declared)] = True
        elif a.kind == "sparse":
            per_slice = _sparse_slices(a, classes, slices_marked)
            keep = np.zeros(nz, bool)
            for z, declared in per_slice.items():
                keep[z] = True
                annotated[z, list(declared)] = True
            add_labels(np.where(keep[:, None, None], classes, -1))
            valid_slices |= keep
            delineated_slices |= keep
        elif a.kind == "coarse_pos":
            valid_slices |= slices_marked
            if "coarse_pos" in as_labels:
                add_labels(classes)
            else:
                coarse_pos[pos.index(a.strategy)] = classes
                kind_mask[marked] |= KIND_BITS["coarse"]
        elif a.kind == "coarse_neg":
            valid_slices |= slices_marked
            if "coarse_neg" in as_labels:
                single = excluded.sum(axis=0) == C - 1
                remaining = np.argmin(excluded, axis=0)
                add_labels(np.where(single, remaining, -1))
            else:
                coarse_neg[neg.index(a.strategy)] = excluded
                kind_mask[marked] |= KIND_BITS["coarse"]
        else:  # pragma: no cover - check_kind guards
            raise ValueError(a.kind)

    labels[conflict] = -1
    # background completion on slices where every foreground class is complete
    complete = annotated[:, 1:].all(axis=1) & valid_slices
    annotated[complete, 0] = True
    fill = complete[:, None, None] & (labels < 0) & ~conflict
    labels[fill] = 0
    valid = np.broadcast_to(valid_slices[:, None, None], shape) & ~conflict
    # term groups of the delineated slices: complete → dense, else partial (self-disambiguation)
    kind_mask[delineated_slices & complete] |= KIND_BITS["dense"]
    kind_mask[delineated_slices & ~complete] |= KIND_BITS["partial"]
    label_bits = KIND_BITS["scribble"] | KIND_BITS["partial"] | KIND_BITS["dense"]
    kind_mask[conflict] &= np.uint8(~label_bits & 0xFF)
    return VolumeTargets(labels=labels, annotated=annotated, valid=np.ascontiguousarray(valid),
                         coarse_pos=coarse_pos, coarse_neg=coarse_neg, pos_strategies=pos,
                         neg_strategies=neg,
                         kinds=tuple(k for k in KINDS if any(a.kind == k for a in annotations)),
                         conflicts=int(conflict.sum()), kind_mask=kind_mask)


def infer_kind_mask(targets: dict[str, np.ndarray]) -> np.ndarray:
    """The ``kind`` bitmask of targets built without one (a dict of the batch keys in 3D or
    2D: ``labels`` (…, Y, X), ``valid``, optional ``annotated`` (…, C), ``coarse_pos``
    (P, …), ``coarse_neg`` (Q, C, …)). Exact for single-kind volumes: a valid slice that
    declares every class is ``dense``, one that declares some is ``partial``, and the known
    voxels of a slice that declares none are ``scribble`` strokes; coarse marks are
    ``coarse``. A volume carrying a scribble *and* a delineation needs
    :func:`build_targets` (which knows which annotation labelled which voxel)."""
    labels = np.asarray(targets["labels"])
    valid = np.asarray(targets.get("valid", np.ones(labels.shape, bool))).astype(bool)
    out = np.zeros(labels.shape, np.uint8)
    annotated = targets.get("annotated")
    if annotated is not None and np.asarray(annotated).size:
        annotated = np.asarray(annotated).astype(bool)
        complete = annotated.all(axis=-1)[..., None, None]
        some = annotated.any(axis=-1)[..., None, None]
    else:
        complete = some = np.zeros(labels.shape[:-2] + (1, 1), bool)
    out[valid & complete] |= KIND_BITS["dense"]
    out[valid & some & ~complete] |= KIND_BITS["partial"]
    out[valid & ~some & (labels >= 0)] |= KIND_BITS["scribble"]
    coarse_pos = targets.get("coarse_pos")
    if coarse_pos is not None and np.asarray(coarse_pos).shape[0]:
        out[(np.asarray(coarse_pos) >= 0).any(axis=0)] |= KIND_BITS["coarse"]
    coarse_neg = targets.get("coarse_neg")
    if coarse_neg is not None and np.asarray(coarse_neg).shape[0]:
        out[np.asarray(coarse_neg).any(axis=(0, 1))] |= KIND_BITS["coarse"]
    return out


def kind_groups(kind_mask: np.ndarray) -> tuple[str, ...]:
    """The term groups present in a ``kind`` bitmask (any shape), in :data:`KIND_BITS` order."""
    present = int(np.bitwise_or.reduce(np.asarray(kind_mask, np.uint8).ravel(), initial=0))
    return tuple(g for g, bit in KIND_BITS.items() if present & bit)


def _sparse_slices(a: AnnotationLike, classes: np.ndarray,
                   slices_marked: np.ndarray) -> dict[int, tuple[int, ...]]:
    """Declared slices of a sparse annotation with their complete classes (or fallback)."""
    if a.declared_slices is not None:
        return {int(z): tuple(c) for z, c in a.declared_slices.items()}
    out = {}
    for z in np.flatnonzero(slices_marked):
        if a.declared_classes is not None:
            out[int(z)] = tuple(a.declared_classes)
        else:
            out[int(z)] = tuple(int(c) for c in np.unique(classes[z]) if c >= 1)
    return out


def dense_targets(ground_truth: np.ndarray, num_classes: int) -> VolumeTargets:
    """Targets of a dense mask with plain class values (the ``full`` upper bound; call it
    explicitly — ground truth is never used for training behind the user's back)."""
    gt = np.asarray(ground_truth).astype(np.int64)
    return build_targets([SimpleAnnotation("dense", gt + 1)], num_classes, gt.shape)


def volume_targets(project: Any, volume: Any, **options: Any) -> VolumeTargets:
    """:func:`build_targets` for the current annotations of ``volume`` in ``project``.

    Declarations come from the store. By default the coarse channels are the project-wide
    strategy lists (``project.strategies(kind)``), so channel p is the same strategy in
    every volume.
    """
    record = project.volume(volume)
    options.setdefault("pos_strategies", project.strategies("coarse_pos"))
    options.setdefault("neg_strategies", project.strategies("coarse_neg"))
    annotations = project.latest_annotations(record, kinds=options.get("kinds"))
    return build_targets(annotations, project.num_classes, tuple(record.shape), **options)
