"""What every dataset returns: :class:`TrainingData` (training, validation and report
volumes with the class names and the schema's rules), and the target dicts of a scribble
or a dense mask that the datasets share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..training.data import TrainingVolume


@dataclass
class TrainingData:
    """The volumes a source gives training (``train``), the ones that choose checkpoints
    (``val``) and, with an inner split, the ones only reported (``report``)."""

    train: list[TrainingVolume]
    val: list[TrainingVolume]
    class_names: list[str]
    description: str
    #: the label schema's anatomical rules (``LabelSchema.rules()``), for post-processing
    rules: dict = field(default_factory=dict)
    #: volumes held out for reporting only, never for choosing (with an inner split ``val``
    #: holds the inner-validation volumes that choose checkpoints, ``report`` the ACDC val
    #: split)
    report: list[TrainingVolume] = field(default_factory=list)
    #: slices held out of training and validated on, ``{volume name: (z, …)}`` (a project
    #: without reference validation: ``training.holdout``); empty otherwise
    held_out: dict[str, tuple[int, ...]] = field(default_factory=dict)


def scribble_targets(encoded: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Targets of a scribble in our encoding (0 = unannotated, class + 1)."""
    labels = encoded.astype(np.int64) - 1
    return {"labels": labels, "valid": np.ones(encoded.shape, bool),
            "annotated": np.zeros((encoded.shape[0], num_classes), bool)}


def dense_targets(truth: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    return {"labels": truth.astype(np.int64), "valid": np.ones(truth.shape, bool),
            "annotated": np.ones((truth.shape[0], num_classes), bool)}
