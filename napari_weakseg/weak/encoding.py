"""The annotation encoding, one for napari layers and for files (see ``docs/annotations.md``).

Arrays are ``(Z, Y, X)`` on the image grid. ``C`` is the number of classes of the project's
:class:`~napari_weakseg.schema.LabelSchema` (class 0 = background).

* ``scribble``, ``coarse_pos``, ``partial``, ``sparse``, ``dense`` — **class encoding**:
  0 = unannotated, value ``c + 1`` = class ``c`` (so annotated background is 1). Values
  ``0 … C`` are allowed.
* ``coarse_neg`` — **bitmask encoding**: bit ``c`` set ⇔ "this voxel is NOT class c";
  0 = unannotated. A brush painting "not c" writes ``2**c``; several bits may be set
  ("not RV and not LV" = 2 + 8 = 10 for the cardiac schema). Values ``0 … 2**C − 2`` are
  allowed: all ``C`` bits set ("not any class") is a contradiction and is refused. At most
  16 classes (uint16 storage).
* Dense ground truth is *not* an annotation: it keeps plain class values (0 = background).

External conventions are converted at the edges only: WSL4MIS/ACDC scribbles use
background stroke 0, class ``c`` → ``c`` and ``C`` (4 for the cardiac schema) = unannotated.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputError, OptionError
from ..io.errors import VolumeError

#: Every annotation kind the store accepts (matches ``methods.base.ANNOTATION_KINDS``).
KINDS = ("scribble", "coarse_pos", "coarse_neg", "partial", "sparse", "dense")
#: Kinds stored with the class encoding (0 = unannotated, class c → c + 1).
CLASS_KINDS = ("scribble", "coarse_pos", "partial", "sparse", "dense")
#: Kinds stored as a bitmask of excluded classes.
BITMASK_KINDS = ("coarse_neg",)
UNANNOTATED = 0
MAX_BITMASK_CLASSES = 16


class AnnotationValueError(VolumeError):
    """An annotation holds values that its kind and the label schema do not allow."""


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise OptionError(f"unknown annotation kind {kind!r}; kinds are {', '.join(KINDS)}")
    return kind


def max_value(kind: str, num_classes: int) -> int:
    """Largest stored value allowed for ``kind`` under a schema of ``num_classes``."""
    check_kind(kind)
    if kind in BITMASK_KINDS:
        if num_classes > MAX_BITMASK_CLASSES:
            raise InputError(f"coarse_neg supports at most {MAX_BITMASK_CLASSES} classes, "
                             f"the schema has {num_classes}")
        return 2 ** num_classes - 2
    return num_classes


def storage_dtype(kind: str, num_classes: int) -> np.dtype:
    """uint8 when every allowed value fits, else uint16."""
    return np.dtype(np.uint8 if max_value(kind, num_classes) <= 255 else np.uint16)


def validate_annotation(kind: str, array: np.ndarray, num_classes: int,
                        source: str | os.PathLike | None = None) -> np.ndarray:
    """Check an annotation array's values and return it in its storage dtype.

    ``array``: (Z, Y, X) integers (or integral floats / bool) in our encoding. Raises
    :class:`AnnotationValueError` (naming ``source``) for non-integers, negative values and
    values above :func:`max_value`, listing the offending values and their counts.
    """
    check_kind(kind)
    array = np.asarray(array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating):
            raise AnnotationValueError(source, f"{kind} annotation has dtype {array.dtype}; "
                                               "integers are required")
        if not np.all(np.isfinite(array)) or not np.array_equal(np.rint(array), array):
            raise AnnotationValueError(source, f"{kind} annotation holds non-integer values")
    if array.ndim != 3:
        raise AnnotationValueError(source, f"{kind} annotation is {array.ndim}D with shape "
                                           f"{array.shape}; a 3D (Z, Y, X) array is required")
    top = max_value(kind, num_classes)
    values, counts = np.unique(array, return_counts=True)
    bad = (values < 0) | (values > top)
    if bad.any():
        listed = ", ".join(f"{int(v)} ({int(n)} voxels)" for v, n in
                           zip(values[bad][:8], counts[bad][:8]))
        if kind in BITMASK_KINDS:
            rule = (f"coarse_neg values are bitmasks of excluded classes, 0 … {top} for "
                    f"{num_classes} classes (all bits set = 'not any class' is refused)")
        else:
            rule = (f"{kind} values are 0 (unannotated) or class + 1, i.e. 0 … {top} for "
                    f"{num_classes} classes")
        raise AnnotationValueError(source, f"{kind} annotation holds values outside the label "
                                           f"schema: {listed}; {rule}")
    return array.astype(storage_dtype(kind, num_classes), copy=False)


def validate_ground_truth(array: np.ndarray, num_classes: int,
                          source: str | os.PathLike | None = None) -> np.ndarray:
    """Dense ground truth: plain class values ``0 … C − 1``; returned as uint8/uint16."""
    array = np.asarray(array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.array_equal(np.rint(array), array):
            raise AnnotationValueError(source, "ground truth holds non-integer values")
    if array.ndim != 3:
        raise AnnotationValueError(source, f"ground truth is {array.ndim}D with shape "
                                           f"{array.shape}; a 3D (Z, Y, X) array is required")
    values, counts = np.unique(array, return_counts=True)
    bad = (values < 0) | (values >= num_classes)
    if bad.any():
        listed = ", ".join(f"{int(v)} ({int(n)} voxels)" for v, n in
                           zip(values[bad][:8], counts[bad][:8]))
        raise AnnotationValueError(source, f"ground truth holds values outside the label "
                                           f"schema: {listed}; classes are 0 … {num_classes - 1}")
    return array.astype(np.uint8 if num_classes <= 256 else np.uint16, copy=False)


# -- class encoding -------------------------------------------------------------------------
def encode_classes(class_map: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Class indices (−1 or anything outside ``mask`` = unannotated) → stored values."""
    class_map = np.asarray(class_map).astype(np.int64)
    keep = class_map >= 0 if mask is None else (np.asarray(mask, bool) & (class_map >= 0))
    out = np.where(keep, class_map + 1, UNANNOTATED)
    return out.astype(np.uint16 if out.size and out.max() > 255 else np.uint8)


def decode_classes(stored: np.ndarray) -> np.ndarray:
    """Stored class-encoded values → int64 class index, −1 where unannotated."""
    return np.asarray(stored).astype(np.int64) - 1


# -- bitmask encoding (coarse_neg) -----------------------------------------------------------
def not_class_value(class_index: int) -> int:
    """The value a "not ``class_index``" brush paints (``2**class_index``)."""
    return 1 << int(class_index)


def encode_not_classes(excluded: np.ndarray) -> np.ndarray:
    """(C, Z, Y, X) bool "voxel is not class c" → (Z, Y, X) bitmask (uint8/uint16)."""
    excluded = np.asarray(excluded, bool)
    num_classes = excluded.shape[0]
    if num_classes > MAX_BITMASK_CLASSES:
        raise InputError(f"at most {MAX_BITMASK_CLASSES} classes fit the coarse_neg bitmask")
    dtype = np.uint8 if num_classes <= 8 else np.uint16
    out = np.zeros(excluded.shape[1:], dtype)
    for c in range(num_classes):
        out |= (excluded[c].astype(dtype) << c).astype(dtype)
    return out


def decode_not_classes(stored: np.ndarray, num_classes: int) -> np.ndarray:
    """(Z, Y, X) bitmask → (C, Z, Y, X) bool, True where the voxel is declared "not c"."""
    stored = np.asarray(stored).astype(np.int64)
    return np.stack([(stored >> c) & 1 for c in range(num_classes)]).astype(bool)


# -- WSL4MIS / ACDC scribble convention ------------------------------------------------------
def from_wsl4mis(array: np.ndarray, num_classes: int,
                 unannotated: int | tuple[int, ...] | None = None,
                 source: str | os.PathLike | None = None) -> np.ndarray:
    """WSL4MIS scribble (bg stroke 0, class c → c, ``num_classes`` = unannotated) → ours.

    ``unannotated`` defaults to ``num_classes`` (4 for the cardiac schema); pass a tuple to
    accept several values (e.g. ``(4, 255)`` for the WSL4MIS generator's output).
    """
    array = np.asarray(array).astype(np.int64)
    ignore = (num_classes,) if unannotated is None else np.atleast_1d(unannotated).tolist()
    unlabelled = np.isin(array, ignore)
    bad = ~unlabelled & ((array < 0) | (array >= num_classes))
    if bad.any():
        values = np.unique(array[bad])[:8].tolist()
        raise AnnotationValueError(source, f"WSL4MIS-encoded labels hold values {values} that "
                                           f"are neither a class (0 … {num_classes - 1}) nor "
                                           f"the unannotated value {ignore}")
    return encode_classes(np.where(unlabelled, -1, array))


def to_wsl4mis(stored: np.ndarray, num_classes: int) -> np.ndarray:
    """Ours (class encoding) → WSL4MIS (bg stroke 0, class c → c, ``num_classes`` =
    unannotated), uint8 (uint16 beyond 255 classes)."""
    classes = decode_classes(stored)
    out = np.where(classes < 0, num_classes, classes)
    return out.astype(np.uint8 if num_classes <= 255 else np.uint16)
