"""Where training volumes come from: a project (the store) or the synthetic generator.

A *source* is a JSON-serialisable dict so that the training process can rebuild it:

* ``{"kind": "synthetic", "subjects": 4, "val_subjects": 1, "seed": 0, "shape": [Z, Y, X]}``
  — the procedural cardiac phantoms with their example scribbles (tests, the demo);
* ``{"kind": "project", "path": ..., "train": {tag filters}, "val": {tag filters}}`` —
  a project's annotated volumes (see :func:`project_volumes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import TrainingVolume, normalise_intensity


@dataclass
class TrainingData:
    train: list[TrainingVolume]
    val: list[TrainingVolume]
    class_names: list[str]
    description: str


def load_source(source: dict, config=None) -> TrainingData:
    kind = source.get("kind")
    if kind == "synthetic":
        return synthetic_data(**{k: v for k, v in source.items() if k != "kind"})
    if kind == "project":
        return project_data(source, config)
    raise ValueError(f"unknown data source kind {kind!r} (expected 'synthetic' or 'project')")


def scribble_targets(encoded: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Targets of a scribble in our encoding (0 = unannotated, class + 1)."""
    labels = encoded.astype(np.int64) - 1
    return {"labels": labels, "valid": np.ones(encoded.shape, bool),
            "annotated": np.zeros((encoded.shape[0], num_classes), bool)}


def dense_targets(truth: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    return {"labels": truth.astype(np.int64), "valid": np.ones(truth.shape, bool),
            "annotated": np.ones((truth.shape[0], num_classes), bool)}


def synthetic_data(subjects: int = 4, val_subjects: int = 1, seed: int = 0,
                   shape: tuple[int, int, int] | list[int] = (8, 64, 64),
                   supervision: str = "scribble") -> TrainingData:
    """Synthetic cohort: ``subjects`` training subjects (ED + ES) and ``val_subjects``."""
    from ..schema import LabelSchema
    from ..synthetic import make_cohort

    names = LabelSchema.cardiac().names
    shape = tuple(shape)
    spacing = (10.0, 1.5625 * 128 / shape[1], 1.5625 * 128 / shape[2])
    cases = make_cohort(subjects + val_subjects, seed=seed, shape=shape, spacing=spacing)
    volumes = []
    for case in cases:
        targets = (scribble_targets(case.scribble, len(names)) if supervision == "scribble"
                   else dense_targets(case.ground_truth, len(names)))
        volumes.append(TrainingVolume(case.name, normalise_intensity(case.image), targets,
                                      case.ground_truth, case.geometry.spatial_spacing,
                                      case.tags))
    split = 2 * subjects
    return TrainingData(volumes[:split], volumes[split:], names,
                        f"synthetic cardiac phantoms: {subjects} subjects × ED/ES "
                        f"({supervision}), {val_subjects} validation subjects, seed {seed}")


def project_data(source: dict, config=None) -> TrainingData:
    raise NotImplementedError  # replaced once the store lands (see project_volumes)
