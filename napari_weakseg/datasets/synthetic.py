"""The synthetic cohort as training data: procedural cardiac phantoms
(:mod:`napari_weakseg.synthetic`) with their example scribbles or dense truth (tests, the
demo, quick runs); source ``{"kind": "synthetic", "subjects": 4, "val_subjects": 1,
"seed": 0, "shape": [Z, Y, X]}``.
"""

from __future__ import annotations

from ..preprocess import get_normaliser
from ..training.data import TrainingVolume
from .base import TrainingData, dense_targets, scribble_targets


def synthetic_data(subjects: int = 4, val_subjects: int = 1, seed: int = 0,
                   shape: tuple[int, int, int] | list[int] = (8, 64, 64),
                   supervision: str = "scribble",
                   normalisation: str | None = None) -> TrainingData:
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
        volumes.append(TrainingVolume(case.name, get_normaliser(normalisation)(case.image),
                                      targets,
                                      case.ground_truth, case.geometry.spatial_spacing,
                                      case.tags))
    split = 2 * subjects
    return TrainingData(volumes[:split], volumes[split:], names,
                        f"synthetic cardiac phantoms: {subjects} subjects × ED/ES "
                        f"({supervision}), {val_subjects} validation subjects, seed {seed}",
                        LabelSchema.cardiac().rules())
