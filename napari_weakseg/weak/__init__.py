"""Weak labels: the annotation encoding (:mod:`.encoding`), annotations → training targets
(:mod:`.targets`) and simulation from dense masks (:mod:`.simulate`, imported on demand: it
needs scipy and scikit-image). See ``docs/annotations.md``. No Qt, napari or torch here.
"""

from .encoding import (KINDS, AnnotationValueError, decode_classes, decode_not_classes,
                       encode_classes, encode_not_classes, from_wsl4mis, not_class_value,
                       to_wsl4mis, validate_annotation)
from .targets import SimpleAnnotation, VolumeTargets, build_targets, dense_targets, volume_targets

__all__ = [
    "KINDS", "AnnotationValueError", "SimpleAnnotation", "VolumeTargets", "build_targets",
    "decode_classes", "decode_not_classes", "dense_targets", "encode_classes",
    "encode_not_classes", "from_wsl4mis", "not_class_value", "to_wsl4mis",
    "validate_annotation", "volume_targets",
]
