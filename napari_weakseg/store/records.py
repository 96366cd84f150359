"""Plain records returned by :class:`~napari_weakseg.store.project.Project` (no I/O here)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DiskError, ProjectError
from ..io.atomic import json_default
from ..io.geometry import VolumeGeometry

#: Values of the ``split`` tag.
SPLITS = ("train", "val", "test")


class StoreError(ProjectError):
    """A store operation cannot be done; the message names the volume/file and the problem."""


class ReadOnlyProjectError(StoreError):
    """A write to a project that is read-only (opened with ``read_only=True``, or its folder or
    manifest cannot be written, e.g. a colleague's share); nothing was written."""


class ProjectExistsError(StoreError):
    """``Project.create`` / ``weakseg init`` where a project (or a database that is not an
    unfinished project) already exists; it is left untouched."""


class ProjectDiskError(StoreError, DiskError):
    """The disk refused a project operation (full, quota, I/O error); names the path."""


class NotFoundError(StoreError, KeyError):
    """No such volume, annotation, ground truth, run or model."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, eq=False)
class VolumeRecord:
    """One image of the project.

    ``shape`` is ``(Z, Y, X)``, ``spacing`` ``(sz, sy, sx)`` mm, ``affine`` 4×4 voxel
    (i, j, k) → world mm; ``image_path`` is absolute (copies live under the project).
    """

    id: int
    name: str
    image_path: Path
    copied: bool
    sha256: str = field(repr=False)
    size_bytes: int = field(repr=False)
    shape: tuple[int, int, int]
    affine: np.ndarray = field(repr=False)
    spacing: tuple[float, float, float]
    dtype: str
    added_at: str
    tags: dict[str, str] = field(default_factory=dict)
    header_block: bytes | None = field(default=None, repr=False)
    header_kind: str | None = field(default=None, repr=False)

    @property
    def split(self) -> str | None:
        return self.tags.get("split")

    @property
    def geometry(self) -> VolumeGeometry:
        """The image grid, with the image's NIfTI header (writers copy it)."""
        header = None
        if self.header_block is not None:
            import nibabel as nib

            cls = nib.Nifti2Header if self.header_kind == "nifti2" else nib.Nifti1Header
            header = cls(binaryblock=self.header_block)
        return VolumeGeometry(self.shape, self.affine, self.spacing, header,
                              str(self.image_path))


@dataclass(frozen=True)
class AnnotationRecord:
    """One saved version of one annotation (volume × kind × strategy).

    ``declared_classes``: classes declared complete (partial/sparse/dense), ``None`` when
    nothing was declared. ``declared_slices``: for sparse, ``{z: classes complete on z}``.
    ``counts``: stored value → voxel count (0 excluded).
    """

    id: int
    volume_id: int
    volume_name: str
    kind: str
    strategy: str
    version: int
    path: Path
    sha256: str
    author: str | None
    created_at: str
    declared_classes: tuple[int, ...] | None
    declared_slices: dict[int, tuple[int, ...]] | None
    restored_from: int | None
    note: str | None
    counts: dict[int, int]

    @property
    def annotated_voxels(self) -> int:
        return int(sum(self.counts.values()))


@dataclass(frozen=True, eq=False)
class Annotation:
    """A version's record plus its array (Z, Y, X) in the stored encoding."""

    record: AnnotationRecord
    data: np.ndarray

    # the attributes weak.targets reads
    @property
    def kind(self) -> str:
        return self.record.kind

    @property
    def strategy(self) -> str:
        return self.record.strategy

    @property
    def declared_classes(self) -> tuple[int, ...] | None:
        return self.record.declared_classes

    @property
    def declared_slices(self) -> dict[int, tuple[int, ...]] | None:
        return self.record.declared_slices

    @property
    def version(self) -> int:
        return self.record.version


@dataclass(frozen=True)
class GroundTruthRecord:
    id: int
    volume_id: int
    volume_name: str
    version: int
    path: Path
    sha256: str
    source: str | None
    created_at: str


@dataclass(frozen=True)
class RunRecord:
    """A training run. ``status``: created | running | completed | failed | cancelled."""

    id: int
    method: str
    config: dict[str, Any]
    device: str | None
    status: str
    metrics: dict[str, Any]
    out_dir: str | None
    log_path: str | None
    error: str | None
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None


@dataclass(frozen=True)
class ModelRecord:
    """A model folder registered with the project (config + weights + card)."""

    id: int
    name: str
    path: Path
    method: str | None
    run_id: int | None
    config: dict[str, Any]
    metrics: dict[str, Any]
    created_at: str


def dumps(value: Any) -> str:
    """JSON for the manifest (numpy scalars/arrays become plain numbers/lists)."""
    return json.dumps(value, default=json_default, sort_keys=True)
