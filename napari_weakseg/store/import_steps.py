"""What every importer of :mod:`.importers` shares: the :class:`ImportReport`, and the
per-file steps that make an import resumable (a volume already in the project gets only what
it still lacks) and collect a bad file's error in the report instead of stopping — unless
the error concerns the whole project (read-only, disk full, damaged manifest).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.errors import VolumeError
from ..io.nifti import is_nifti_path, read_labels
from .manifest import ManifestError
from .project import Project
from .records import (NotFoundError, ProjectDiskError, ReadOnlyProjectError, StoreError,
                      VolumeRecord)


@dataclass
class ImportReport:
    """What an import did: volume names added / already present, files refused."""

    added: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    annotations: int = 0
    ground_truths: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        text = (f"{len(self.added)} volumes added, {len(self.existing)} already present, "
                f"{self.annotations} annotations and {self.ground_truths} ground truths saved")
        if self.errors:
            text += f"; {len(self.errors)} files refused:\n  " + "\n  ".join(self.errors)
        return text


def get_or_add(project: Project, report: ImportReport, image: Path, *, name: str,
               copy: bool, tags: Mapping[str, str]) -> VolumeRecord | None:
    try:
        record = project.volume(name)
    except NotFoundError:
        try:
            record = project.add_volume(image, copy=copy, name=name, tags=tags)
        except (VolumeError, StoreError) as exc:
            raise_if_project_wide(exc)
            report.errors.append(str(exc))
            return None
        report.added.append(name)
        return record
    report.existing.append(name)
    missing = {k: v for k, v in tags.items() if record.tags.get(k) is None}
    if missing:
        record = project.set_tags(record, **missing)
    return record


def add_annotation(project: Project, report: ImportReport, record: VolumeRecord, kind: str,
                   path: Path, *, encoding: str, author: str | None) -> None:
    if project.annotations(record, kind=kind):
        return  # resumed import: already there
    try:
        project.save_annotation(record, kind, path, encoding=encoding, author=author,
                                note=f"imported from {path}")
        report.annotations += 1
    except (VolumeError, StoreError) as exc:
        raise_if_project_wide(exc)
        report.errors.append(str(exc))


def add_ground_truth(project: Project, report: ImportReport, record: VolumeRecord,
                     path: Path) -> None:
    if project.has_ground_truth(record):
        return
    try:
        project.set_ground_truth(record, path)
        report.ground_truths += 1
    except (VolumeError, StoreError) as exc:
        raise_if_project_wide(exc)
        report.errors.append(str(exc))


def nifti_files(folder: Path) -> list[Path]:
    """The NIfTI files of ``folder`` (sorted; hidden files left out)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and is_nifti_path(p) and not p.name.startswith("."))


def sibling(folder: Path, stem: str) -> Path | None:
    """``folder/STEM.nii.gz`` or ``folder/STEM.nii``, whichever exists first, or ``None``."""
    for suffix in (".nii.gz", ".nii"):
        path = folder / f"{stem}{suffix}"
        if path.exists():
            return path
    return None


def add_plain_labels(project: Project, report: ImportReport, record: VolumeRecord,
                     kind: str, path: Path) -> None:
    """Plain class labels (0 = background) → an annotation of ``kind``.

    ``dense``: every voxel (class + 1), all classes declared. ``partial``/``sparse``:
    background left unannotated (0 = "background or an undeclared class"), nothing declared
    (targets fall back to the classes present). ``scribble``/``coarse_pos``: every voxel
    labelled, background included.
    """
    if project.annotations(record, kind=kind):
        return
    try:
        labels = read_labels(path, like=record.geometry).data.astype(np.int64)
        if labels.size and labels.max() >= project.num_classes:
            raise VolumeError(path, f"labels hold {labels.max()}, outside the schema "
                                    f"(0 … {project.num_classes - 1})")
        declared = range(project.num_classes) if kind == "dense" else None
        data = labels + 1
        if kind in ("partial", "sparse"):
            data[labels == 0] = 0
        project.save_annotation(record, kind, data, note=f"imported from {path}",
                                declared_classes=declared)
        report.annotations += 1
    except (VolumeError, StoreError) as exc:
        raise_if_project_wide(exc)
        report.errors.append(str(exc))


def raise_if_project_wide(exc: Exception) -> None:
    """Per-file import errors are collected in the report; a read-only project, a full disk or
    a corrupt manifest concerns every file, so it stops the import at once."""
    if isinstance(exc, (ReadOnlyProjectError, ProjectDiskError, ManifestError)):
        raise exc
