"""The geometry contract shared by every reader, writer and the store.

Metadata contract (all readers return it, all writers consume it):

* **Axis order in memory**: the NIfTI voxel axes (i, j, k[, t]) reversed, i.e. arrays are
  ``(Z, Y, X)`` for 3D and ``(T, Z, Y, X)`` for 4D cine, with ``array[k, j, i] ==
  nifti[i, j, k]``. The leading axis is the slice axis (napari scrolls over it; the 2D
  networks run over it). No resampling or re-orientation ever happens on read, so a label
  array written back lands on exactly the voxels it was drawn on.
* **affine**: 4×4 float64, maps the NIfTI voxel index ``(i, j, k, 1)`` to world millimetres
  in nibabel's RAS+ convention (the header's best affine: sform, else qform).
* **spacing**: voxel size in mm in array order, ``(sz, sy, sx)`` (4D: ``(dt, sz, sy, sx)``),
  read from the header's ``pixdim`` — *not* from the affine, which some files (ACDC) store
  without the voxel size.
* **header**: the original ``nibabel.Nifti1Header``; writers copy it, so qform/sform codes,
  quaternions, ``srow_*`` and ``pixdim`` survive bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

AXIS_LABELS_3D = ("z", "y", "x")
AXIS_LABELS_4D = ("t", "z", "y", "x")


@dataclass(frozen=True, eq=False)
class VolumeGeometry:
    """Where an array lives in the world (see the module docstring for the contract).

    Attributes:
        shape: array shape in memory order, ``(Z, Y, X)`` or ``(T, Z, Y, X)``.
        affine: 4×4 voxel (i, j, k) → world mm (RAS+).
        spacing: voxel size in memory order, mm (time step in the header's unit for 4D).
        header: the original NIfTI header, or ``None`` for arrays made in memory.
        source: the file the geometry was read from, if any.
    """

    shape: tuple[int, ...]
    affine: np.ndarray
    spacing: tuple[float, ...]
    header: Any = field(default=None, repr=False)
    source: str | None = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        """``(Z, Y, X)`` whatever the number of time frames."""
        return tuple(self.shape[-3:])  # type: ignore[return-value]

    @property
    def spatial_spacing(self) -> tuple[float, float, float]:
        return tuple(self.spacing[-3:])  # type: ignore[return-value]

    @property
    def axis_labels(self) -> tuple[str, ...]:
        return AXIS_LABELS_4D if self.ndim == 4 else AXIS_LABELS_3D

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (mm³ / 1000)."""
        return float(np.prod(self.spatial_spacing)) / 1000.0

    def same_grid(self, other: VolumeGeometry, atol: float = 1e-4) -> bool:
        """True when both describe the same spatial voxel grid (shape, affine, spacing)."""
        return (
            self.spatial_shape == other.spatial_shape
            and np.allclose(self.affine, other.affine, atol=atol)
            and np.allclose(self.spatial_spacing, other.spatial_spacing, atol=atol)
        )

    def with_shape(self, shape: tuple[int, ...]) -> VolumeGeometry:
        return VolumeGeometry(tuple(shape), self.affine, self.spacing, self.header, self.source)

    # -- napari layer metadata (plain dict; no napari import) ---------------------------
    def to_layer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for a napari layer showing an array on this grid."""
        return {
            "scale": tuple(float(s) for s in self.spacing),
            "axis_labels": self.axis_labels,
            "metadata": {
                "affine": np.array(self.affine),
                "nifti_header": self.header,
                "spacing": tuple(self.spacing),
                "source_path": self.source,
            },
        }

    @classmethod
    def from_layer(cls, data_shape: tuple[int, ...], metadata: dict | None,
                   scale: tuple[float, ...] | None = None) -> VolumeGeometry:
        """Geometry of a layer: from its metadata, else an axis-aligned grid from ``scale``."""
        metadata = metadata or {}
        if metadata.get("affine") is not None:
            spacing = metadata.get("spacing") or scale or (1.0,) * len(data_shape)
            return cls(tuple(data_shape), np.asarray(metadata["affine"], dtype=float),
                       tuple(float(s) for s in spacing), metadata.get("nifti_header"),
                       metadata.get("source_path"))
        return cls.from_spacing(tuple(data_shape), scale or (1.0,) * len(data_shape))

    @classmethod
    def from_spacing(cls, shape: tuple[int, ...], spacing: tuple[float, ...]) -> VolumeGeometry:
        """An axis-aligned grid with the given voxel size (memory order), origin at 0."""
        spatial = tuple(float(s) for s in spacing[-3:])
        affine = np.diag([spatial[2], spatial[1], spatial[0], 1.0])
        return cls(tuple(shape), affine, tuple(float(s) for s in spacing))


def describe(geometry: VolumeGeometry) -> str:
    """One human line: shape, spacing and orientation code (e.g. ``LPS``)."""
    import nibabel as nib

    codes = "".join(nib.aff2axcodes(geometry.affine))
    spacing = " × ".join(f"{s:g}" for s in geometry.spacing)
    shape = " × ".join(str(s) for s in geometry.shape)
    src = f"{Path(geometry.source).name}: " if geometry.source else ""
    return f"{src}{shape} voxels ({'/'.join(geometry.axis_labels)}), {spacing} mm, {codes}"
