"""The keys this plugin stores in a napari layer's ``metadata`` — declared once.

The widgets and the reader (:mod:`napari_weakseg.plugin`) read and write layer metadata
through these names only; the values stay the plain strings they always were (saved
sessions and tests see ``"weakseg_kind"`` etc.). Qt-, napari- and torch-free.
"""

from __future__ import annotations

from enum import StrEnum

#: annotation kind of an annotation Labels layer (``scribble``, ``coarse_pos``, …)
KIND = "weakseg_kind"
#: name of the image layer an annotation layer was drawn on
IMAGE = "weakseg_image"
#: classes declared fully annotated (partial/sparse kinds), or ``None``
DECLARED_CLASSES = "weakseg_declared_classes"
#: slices declared annotated (sparse kind: ``{z: classes}``), or ``None``
DECLARED_SLICES = "weakseg_declared_slices"
#: SHA-256 of the annotation version the layer was loaded from / last saved as
SHA256 = "weakseg_sha256"
#: project volume an image layer shows, and that project's root folder
VOLUME = "weakseg_volume"
PROJECT = "weakseg_project"
#: what an overlay layer is (:class:`Role`); images themselves have none
ROLE = "weakseg_role"
#: fingerprint of an export layer's data when it was added (an edit changes it)
EXPORT_FINGERPRINT = "weakseg_export_fingerprint"
#: training iteration a live preview layer shows
PREVIEW_ITERATION = "weakseg_preview_iteration"


class Role(StrEnum):
    """The ``weakseg_role`` of a layer the plugin added over an image."""

    PREDICTION = "prediction"
    UNCERTAINTY = "uncertainty"
    PREVIEW = "preview"
    EXPORT = "export"
    #: a project volume's stored ground truth (Review tab; contours, not editable)
    GROUND_TRUTH = "ground_truth"


ALL_KEYS = (KIND, IMAGE, DECLARED_CLASSES, DECLARED_SLICES, SHA256, VOLUME, PROJECT, ROLE,
            EXPORT_FINGERPRINT, PREVIEW_ITERATION)

__all__ = ["ALL_KEYS", "DECLARED_CLASSES", "DECLARED_SLICES", "EXPORT_FINGERPRINT", "IMAGE",
           "KIND", "PREVIEW_ITERATION", "PROJECT", "ROLE", "Role", "SHA256", "VOLUME"]
