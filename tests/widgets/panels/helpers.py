"""Shared pieces of the panel tests: the tiny synthetic project, a tiny training config."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: A training run of a few seconds on CPU (the tiny project's 32×32 slices).
TINY = {"iterations": 6, "batch_size": 2, "size": 32, "base_width": 4, "val_every": 3,
        "threads": 1, "device": "cpu"}
SHAPE = (4, 32, 32)


def build_tiny_project(root: Path) -> Path:
    """2 synthetic subjects × ED/ES (4 volumes of 4×32×32) with scribbles and ground truth;
    the last volume is tagged ``split=val``."""
    from napari_weakseg.store import Project
    from napari_weakseg.store.importers import import_folder
    from napari_weakseg.synthetic import make_cohort, write_cohort

    write_cohort(root / "data", make_cohort(2, shape=SHAPE))
    with Project.create(root / "project") as project:
        report = import_folder(project, root / "data")
        assert report.ok, report.summary()
        project.set_tags(project.volumes()[-1], split="val")
    return root / "project"


def save_screenshot(viewer, path: Path) -> np.ndarray:
    from PIL import Image

    shot = viewer.screenshot(canvas_only=False, flash=False)
    Image.fromarray(shot).save(path)
    return shot
