"""Tiny synthetic inputs shared by the store, weak, io and CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_weakseg.io import write_labels, write_volume
from napari_weakseg.synthetic import SyntheticCase, make_cardiac_volume

TINY_SHAPE = (4, 40, 40)
TINY_SPACING = (10.0, 4.0, 4.0)  # 160 mm field of view: the whole phantom heart fits


def tiny_case(seed: int = 0, phase: float = 0.0) -> SyntheticCase:
    """A 4 × 40 × 40 cardiac phantom (image, ground truth, scribble in our encoding)."""
    return make_cardiac_volume(seed, phase=phase, shape=TINY_SHAPE, spacing=TINY_SPACING,
                               name=f"tiny{seed:03d}", noise=0.02)


def write_case(folder: Path, case: SyntheticCase, *, labels: bool = True) -> dict[str, Path]:
    """Write ``NAME.nii.gz`` (+ ``NAME_gt.nii.gz``) into ``folder``; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"image": write_volume(folder / f"{case.name}.nii.gz", case.image, case.geometry)}
    if labels:
        paths["labels"] = write_labels(folder / f"{case.name}_gt.nii.gz", case.ground_truth,
                                       case.geometry)
    return paths


def files_under(folder: Path) -> set[Path]:
    return {p for p in Path(folder).rglob("*") if p.is_file()}


def random_annotation(seed: int, shape=TINY_SHAPE, top: int = 4) -> np.ndarray:
    """A reproducible annotation array (values 0 … top) for crash tests."""
    return np.random.default_rng(seed).integers(0, top + 1, size=shape).astype(np.uint8)
