"""Where training volumes come from: a project (the store) or the synthetic generator.

A *source* is a JSON-serialisable dict so that the training process can rebuild it:

* ``{"kind": "synthetic", "subjects": 4, "val_subjects": 1, "seed": 0, "shape": [Z, Y, X]}``
  — the procedural cardiac phantoms with their example scribbles (tests, the demo);
* ``{"kind": "acdc", "root": "../shared/data/acdc", "supervision": "scribble" | "dense",
  "limit": N}`` — the ACDC folder layout (``images/``, ``scribbles/`` with 4 = unannotated,
  ``labels/``, ``splits.json``): trains on the ``train`` split, validates on ``val``;
* ``{"kind": "project", "path": ..., "train": {tag filters}, "val": {tag filters}}`` —
  a project's annotated volumes (see :func:`project_data`).
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
    if kind == "acdc":
        return acdc_data(**{k: v for k, v in source.items() if k != "kind"})
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


def acdc_data(root: str = "../shared/data/acdc", supervision: str = "scribble",
              limit: int | None = None, val_limit: int | None = None) -> TrainingData:
    """ACDC train split with its real manual scribbles (or dense labels), val split for
    validation. ``limit``/``val_limit`` keep the first N volumes (quick runs)."""
    import json
    from pathlib import Path

    from ..io import read_labels, read_volume
    from ..schema import LabelSchema

    root = Path(root)
    splits_path = root / "splits.json"
    if not splits_path.exists():
        raise FileNotFoundError(f"{splits_path}: ACDC splits file not found")
    splits = json.loads(splits_path.read_text())
    names = LabelSchema.cardiac().names
    if supervision not in ("scribble", "dense"):
        raise ValueError(f"ACDC supervision must be 'scribble' or 'dense', got {supervision!r}")

    def load(case: str, for_training: bool) -> TrainingVolume:
        image = read_volume(root / "images" / f"{case}.nii.gz")
        truth = read_labels(root / "labels" / f"{case}.nii.gz", like=image.geometry).data
        if for_training and supervision == "scribble":
            wsl = read_labels(root / "scribbles" / f"{case}.nii.gz", like=image.geometry).data
            encoded = np.where(wsl == len(names), 0, wsl.astype(np.int64) + 1)
            targets = scribble_targets(encoded, len(names))
        else:
            targets = dense_targets(truth, len(names))
        return TrainingVolume(case, normalise_intensity(image.data), targets, truth,
                              image.geometry.spatial_spacing, {"dataset": "acdc"})

    train = [load(c, True) for c in splits["train"][:limit]]
    val = [load(c, False) for c in splits["val"][:val_limit]]
    return TrainingData(train, val, names,
                        f"ACDC train split ({len(train)} volumes, "
                        f"{'real manual scribbles' if supervision == 'scribble' else 'dense labels'}); "
                        f"validation: ACDC val split ({len(val)} volumes)")


def project_data(source: dict, config=None) -> TrainingData:
    """A project's volumes. Keys of ``source``: ``path``; ``train`` / ``val`` tag filters
    (default: every volume not tagged ``split`` = val/test trains, ``split`` = val
    validates); ``ground_truth_as_training``: train on the stored ground truth (the ``full``
    upper bound in benchmarks — never implied).

    Training volumes are those carrying annotations of the kinds the method learns from;
    validation volumes need a reference mask (ground truth, else a ``dense`` annotation).
    """
    from ..methods import get_method
    from ..store import Project
    from ..weak.targets import dense_targets as dense_volume_targets
    from ..weak.targets import volume_targets

    project = Project.open(source["path"])
    try:
        method_kinds = get_method(config.method).kinds if config is not None else None
        train_filter = source.get("train")
        val_filter = source.get("val", {"split": "val"})
        if train_filter is None:
            records = [r for r in project.volumes()
                       if r.tags.get("split") not in ("val", "test")]
        else:
            records = project.volumes(**train_filter)
        use_truth = bool(source.get("ground_truth_as_training"))
        train: list[TrainingVolume] = []
        for record in records:
            if use_truth:
                truth = project.ground_truth(record)
                if truth is None:
                    continue
                targets = dense_volume_targets(truth, project.num_classes)
            else:
                kinds = {a.kind for a in project.annotations(record)}
                if method_kinds is not None:
                    kinds &= set(method_kinds)
                if not kinds:
                    continue
                targets = volume_targets(project, record, kinds=kinds)
            image = project.read_image(record)
            train.append(TrainingVolume(record.name, normalise_intensity(image.data),
                                        targets.as_dict(), None,
                                        image.geometry.spatial_spacing, dict(record.tags)))
        if not train:
            raise ValueError(f"{project.root}: no volume carries annotations the method "
                             f"'{getattr(config, 'method', '?')}' learns from "
                             f"({', '.join(sorted(method_kinds or []))})")
        val: list[TrainingVolume] = []
        for record in project.volumes(**val_filter):
            reference = project.ground_truth(record)
            if reference is None and any(a.kind == "dense" for a in project.annotations(record)):
                reference = project.annotation(record, "dense").data.astype(np.int64) - 1
            if reference is None:
                continue
            image = project.read_image(record)
            val.append(TrainingVolume(record.name, normalise_intensity(image.data), {},
                                      np.asarray(reference), image.geometry.spatial_spacing,
                                      dict(record.tags)))
        description = (f"project {project.root} ({len(train)} training volumes"
                       f"{', stored ground truth' if use_truth else ''}; "
                       f"{len(val)} validation volumes)")
        return TrainingData(train, val, project.schema.names, description)
    finally:
        project.close()
