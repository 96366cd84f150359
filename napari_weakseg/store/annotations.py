"""A project's versioned annotations and ground truth: every save writes a new NIfTI file
under ``annotations/ID-NAME/`` or ``ground_truth/ID-NAME/`` (never overwritten), then its
manifest row in one transaction that assigns the version; reads check the SHA-256.

Annotations use the encoding of :mod:`napari_weakseg.weak.encoding` (converted from and to
the WSL4MIS one here, on save and export); ground truth holds plain class values.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import sha256_file
from ..io.errors import GeometryMismatchError, VolumeError
from ..io.geometry import VolumeGeometry
from ..io.nifti import check_same_grid, read_labels, write_labels
from ..schema import LabelSchema
from ..weak.encoding import (CLASS_KINDS, AnnotationValueError, check_kind, to_wsl4mis,
                             validate_annotation, validate_ground_truth)
from . import manifest
from .connection import ManifestConnection
from .files import disk_errors, token, unlink_quietly
from .records import (Annotation, AnnotationRecord, GroundTruthRecord, NotFoundError,
                      StoreError, VolumeRecord, dumps)
from .volumes import VolumeRef, VolumeRepository

ArrayOrPath = np.ndarray | str | os.PathLike
_STRATEGY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ANNOTATION_SELECT = ("SELECT a.*, v.name AS volume_name FROM annotations a "
                      "JOIN volumes v ON v.id = a.volume_id")
_GT_SELECT = ("SELECT g.*, v.name AS volume_name FROM ground_truth g "
              "JOIN volumes v ON v.id = g.volume_id")


class CorruptFileError(VolumeError):
    """A committed file's bytes do not match the checksum in the manifest."""


class _LabelRepository:
    """Rows of one project whose files are label maps on its volumes' grids."""

    def __init__(self, db: ManifestConnection, volumes: VolumeRepository,
                 schema: LabelSchema):
        self.db = db
        self.root = db.root
        self.volumes = volumes
        self.schema = schema


class AnnotationRepository(_LabelRepository):
    """The ``annotations`` rows of one project and their files."""

    @property
    def num_classes(self) -> int:
        return self.schema.num_classes

    def save(self, volume: VolumeRef, kind: str, data: ArrayOrPath, *,
             strategy: str = "default", author: str | None = None,
             declared_classes: Iterable[int | str] | None = None,
             declared_slices: Mapping[int, Iterable[int | str] | None] | None = None,
             note: str | None = None, geometry: VolumeGeometry | None = None,
             encoding: str = "ours", allow_empty: bool = False, if_changed: bool = False,
             restored_from: int | None = None) -> AnnotationRecord:
        """:meth:`Project.save_annotation
        <napari_weakseg.store.project.Project.save_annotation>`."""
        self.db.check_writable()
        record = self.volumes.get(volume)
        check_kind(kind)
        strategy = check_strategy(strategy)
        source = f"{record.name} ({kind}{'' if strategy == 'default' else '/' + strategy})"
        array, source = annotation_array(record, data, geometry, source)
        if encoding == "wsl4mis":
            if kind not in CLASS_KINDS:
                raise StoreError(f"{source}: the WSL4MIS convention has no encoding for {kind}")
            from ..weak.encoding import from_wsl4mis

            array = from_wsl4mis(array, self.num_classes, source=source)
        elif encoding != "ours":
            raise StoreError(f"unknown encoding {encoding!r} (ours | wsl4mis)")
        array = validate_annotation(kind, array, self.num_classes, source)
        classes, slices = self._check_declarations(kind, record, declared_classes,
                                                   declared_slices, source)
        values, counts = np.unique(array, return_counts=True)
        count_map = {int(v): int(n) for v, n in zip(values, counts) if v != 0}
        if not count_map and not slices and not allow_empty:
            raise AnnotationValueError(source, f"{kind} annotation is empty (no annotated "
                                               "voxel, no declared slice); nothing saved")
        if if_changed:
            try:
                current = self.get(record, kind, strategy=strategy)
            except NotFoundError:
                current = None
            if current is not None and current.declared_classes == classes \
                    and current.declared_slices == slices \
                    and np.array_equal(current.data, array):
                return current.record
        folder = self.volumes.folder("annotations", record)
        path = folder / f"{kind}.{strategy}.{token()}.nii.gz"
        with disk_errors(self.root):
            write_labels(path, array, record.geometry)
            digest = sha256_file(path)
        try:
            with self.db.write() as conn:
                row = conn.execute(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM annotations "
                    "WHERE volume_id = ? AND kind = ? AND strategy = ?",
                    (record.id, kind, strategy)).fetchone()
                version = int(row[0])
                cursor = conn.execute(
                    "INSERT INTO annotations (volume_id, kind, strategy, version, path, sha256,"
                    " author, created_at, declared_classes, declared_slices, restored_from,"
                    " note, counts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (record.id, kind, strategy, version, path.relative_to(self.root).as_posix(),
                     digest, author, manifest.now(),
                     None if classes is None else dumps(list(classes)),
                     None if slices is None else dumps({str(z): list(c)
                                                        for z, c in slices.items()}),
                     restored_from, note, dumps({str(k): v for k, v in count_map.items()})))
                annotation_id = cursor.lastrowid
        except BaseException:
            unlink_quietly(path)
            raise
        return self._record(self.db.query(
            _ANNOTATION_SELECT + " WHERE a.id = ?", (annotation_id,))[0])

    def versions(self, volume: VolumeRef, kind: str, *,
                 strategy: str = "default") -> list[AnnotationRecord]:
        """Every saved version (oldest first) of one annotation."""
        record = self.volumes.get(volume)
        rows = self.db.query(_ANNOTATION_SELECT + " WHERE a.volume_id = ? AND a.kind = ? AND "
                             "a.strategy = ? ORDER BY a.version",
                             (record.id, check_kind(kind), strategy))
        return [self._record(r) for r in rows]

    def matching(self, volume: VolumeRef | None = None, *, kind: str | None = None,
                 strategy: str | None = None,
                 all_versions: bool = False) -> list[AnnotationRecord]:
        """Records of the current (latest) versions, or of every version with
        ``all_versions``; optionally for one volume / kind / strategy."""
        clauses, params = [], []
        if volume is not None:
            clauses.append("a.volume_id = ?")
            params.append(self.volumes.get(volume).id)
        if kind is not None:
            clauses.append("a.kind = ?")
            params.append(check_kind(kind))
        if strategy is not None:
            clauses.append("a.strategy = ?")
            params.append(strategy)
        if not all_versions:
            clauses.append("a.version = (SELECT MAX(b.version) FROM annotations b WHERE "
                           "b.volume_id = a.volume_id AND b.kind = a.kind AND "
                           "b.strategy = a.strategy)")
        sql = _ANNOTATION_SELECT + (" WHERE " + " AND ".join(clauses) if clauses else "")
        rows = self.db.query(sql + " ORDER BY v.name, a.kind, a.strategy, a.version", params)
        return [self._record(r) for r in rows]

    def strategies(self, kind: str) -> list[str]:
        """The strategy names used for ``kind`` anywhere in the project (sorted)."""
        return [r[0] for r in self.db.query("SELECT DISTINCT strategy FROM annotations WHERE "
                                            "kind = ? ORDER BY strategy", (check_kind(kind),))]

    def record(self, volume: VolumeRef, kind: str, *, strategy: str = "default",
               version: int | None = None) -> AnnotationRecord:
        """The record of one version (the latest when ``version`` is None)."""
        record = self.volumes.get(volume)
        sql = _ANNOTATION_SELECT + " WHERE a.volume_id = ? AND a.kind = ? AND a.strategy = ?"
        params: list[Any] = [record.id, check_kind(kind), strategy]
        if version is None:
            sql += " ORDER BY a.version DESC LIMIT 1"
        else:
            sql += " AND a.version = ?"
            params.append(int(version))
        rows = self.db.query(sql, params)
        if not rows:
            what = "no" if version is None else f"no version {version} of the"
            raise NotFoundError(f"volume {record.name!r} has {what} {kind} annotation"
                                f"{'' if strategy == 'default' else f' ({strategy})'}")
        return self._record(rows[0])

    def get(self, volume: VolumeRef, kind: str, *, strategy: str = "default",
            version: int | None = None) -> Annotation:
        """One version (latest by default) with its array (Z, Y, X), checksum verified."""
        record = self.record(volume, kind, strategy=strategy, version=version)
        return Annotation(record, read_committed(record.path, record.sha256,
                                                 self.volumes.get(record.volume_id)))

    def latest(self, volume: VolumeRef, *,
               kinds: Iterable[str] | None = None) -> list[Annotation]:
        """The current version of every annotation (all strategies; all kinds or ``kinds``)
        of a volume, with arrays."""
        record = self.volumes.get(volume)
        kinds = None if kinds is None else {check_kind(k) for k in kinds}
        return [Annotation(r, read_committed(r.path, r.sha256, record))
                for r in self.matching(record) if kinds is None or r.kind in kinds]

    def restore(self, volume: VolumeRef, kind: str, version: int, *,
                strategy: str = "default", author: str | None = None) -> AnnotationRecord:
        """Make ``version`` current again by saving it as a new version (history kept)."""
        self.db.check_writable()
        old = self.get(volume, kind, strategy=strategy, version=version)
        slices = old.declared_slices
        return self.save(
            old.record.volume_id, kind, old.data, strategy=strategy, author=author,
            declared_classes=old.declared_classes, declared_slices=slices,
            note=f"restored from version {version}", allow_empty=True,
            restored_from=version)

    def export(self, volume: VolumeRef, kind: str, path: str | os.PathLike, *,
               strategy: str = "default", version: int | None = None,
               encoding: str = "ours") -> Path:
        """:meth:`Project.export_annotation
        <napari_weakseg.store.project.Project.export_annotation>`."""
        annotation = self.get(volume, kind, strategy=strategy, version=version)
        data = annotation.data
        if encoding == "wsl4mis":
            if kind not in CLASS_KINDS:
                raise StoreError(f"{kind} has no WSL4MIS encoding (class kinds only)")
            data = to_wsl4mis(data, self.num_classes)
        elif encoding != "ours":
            raise StoreError(f"unknown encoding {encoding!r} (ours | wsl4mis)")
        return write_labels(path, data, self.volumes.get(volume).geometry)

    def _check_declarations(self, kind, record, classes, slices, source):
        def to_index(value) -> int:
            if isinstance(value, str):
                return self.schema.index(value)
            index = int(value)
            if not 0 <= index < self.num_classes:
                raise StoreError(f"{source}: declared class {index} is outside the schema "
                                 f"(0 … {self.num_classes - 1})")
            return index

        if classes is not None and kind not in ("partial", "sparse", "dense"):
            raise StoreError(f"{source}: declared classes apply to partial, sparse and dense "
                             f"annotations, not {kind}")
        if slices is not None and kind != "sparse":
            raise StoreError(f"{source}: declared slices apply to sparse annotations only")
        out_classes = None if classes is None else tuple(sorted({to_index(c) for c in classes}))
        out_slices = None
        if slices is not None:
            out_slices = {}
            for z, cls in slices.items():
                z = int(z)
                if not 0 <= z < record.shape[0]:
                    raise StoreError(f"{source}: declared slice {z} is outside the volume "
                                     f"(0 … {record.shape[0] - 1})")
                if cls is None:
                    cls = out_classes if out_classes is not None else range(self.num_classes)
                out_slices[z] = tuple(sorted({to_index(c) for c in cls}))
            out_slices = dict(sorted(out_slices.items()))
        return out_classes, out_slices

    def _record(self, row) -> AnnotationRecord:
        slices = row["declared_slices"]
        classes = row["declared_classes"]
        return AnnotationRecord(
            id=row["id"], volume_id=row["volume_id"], volume_name=row["volume_name"],
            kind=row["kind"], strategy=row["strategy"], version=row["version"],
            path=self.root / row["path"], sha256=row["sha256"], author=row["author"],
            created_at=row["created_at"],
            declared_classes=None if classes is None else tuple(json.loads(classes)),
            declared_slices=None if slices is None else {
                int(z): tuple(c) for z, c in json.loads(slices).items()},
            restored_from=row["restored_from"], note=row["note"],
            counts={int(k): v for k, v in json.loads(row["counts"]).items()})


class GroundTruthRepository(_LabelRepository):
    """The ``ground_truth`` rows of one project and their files."""

    def set(self, volume: VolumeRef, data: ArrayOrPath, *, source: str | None = None,
            geometry: VolumeGeometry | None = None) -> GroundTruthRecord:
        """:meth:`Project.set_ground_truth
        <napari_weakseg.store.project.Project.set_ground_truth>`."""
        self.db.check_writable()
        record = self.volumes.get(volume)
        label = f"{record.name} (ground truth)"
        array, label = annotation_array(record, data, geometry, label)
        if source is None and isinstance(data, (str, os.PathLike)):
            source = str(data)
        array = validate_ground_truth(array, self.schema.num_classes, label)
        path = self.volumes.folder("ground_truth", record) / f"gt.{token()}.nii.gz"
        with disk_errors(self.root):
            write_labels(path, array, record.geometry)
            digest = sha256_file(path)
        try:
            with self.db.write() as conn:
                version = int(conn.execute(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM ground_truth WHERE volume_id = ?",
                    (record.id,)).fetchone()[0])
                cursor = conn.execute(
                    "INSERT INTO ground_truth (volume_id, version, path, sha256, source, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (record.id, version, path.relative_to(self.root).as_posix(), digest, source,
                     manifest.now()))
                gt_id = cursor.lastrowid
        except BaseException:
            unlink_quietly(path)
            raise
        return self._record(self.db.query(_GT_SELECT + " WHERE g.id = ?", (gt_id,))[0])

    def record(self, volume: VolumeRef) -> GroundTruthRecord | None:
        record = self.volumes.get(volume)
        rows = self.db.query(_GT_SELECT + " WHERE g.volume_id = ? ORDER BY g.version DESC "
                                          "LIMIT 1", (record.id,))
        return self._record(rows[0]) if rows else None

    def get(self, volume: VolumeRef) -> np.ndarray | None:
        """The latest ground truth (Z, Y, X) class values, or ``None`` when there is none."""
        gt = self.record(volume)
        if gt is None:
            return None
        return read_committed(gt.path, gt.sha256, self.volumes.get(gt.volume_id))

    def _record(self, row) -> GroundTruthRecord:
        return GroundTruthRecord(id=row["id"], volume_id=row["volume_id"],
                                 volume_name=row["volume_name"], version=row["version"],
                                 path=self.root / row["path"], sha256=row["sha256"],
                                 source=row["source"], created_at=row["created_at"])


def check_strategy(strategy: str) -> str:
    if not isinstance(strategy, str) or not _STRATEGY.match(strategy):
        raise StoreError(f"invalid strategy name {strategy!r} (1–64 letters, digits, _ or -)")
    return strategy


def annotation_array(record: VolumeRecord, data: ArrayOrPath,
                     geometry: VolumeGeometry | None, source: str):
    """``(array, source)`` of an annotation or ground truth to save on ``record``'s grid: a
    NIfTI path is read (and checked against the image), an array checked by shape and, with
    ``geometry``, by the grid it was drawn on."""
    if isinstance(data, (str, os.PathLike)):
        labels = read_labels(data, like=record.geometry)  # names the file on mismatch
        return labels.data, str(data)
    array = np.asarray(data)
    if geometry is not None:
        check_same_grid(geometry, record.geometry, source)
    if array.shape != tuple(record.shape):
        raise GeometryMismatchError(source, f"array shape {array.shape} (z, y, x) differs "
                                            f"from the image's {tuple(record.shape)}")
    return array, source


def read_committed(path: Path, sha256: str, record: VolumeRecord) -> np.ndarray:
    """The labels of a committed file, its bytes checked against the manifest's SHA-256."""
    if not path.exists():
        raise CorruptFileError(path, f"file of volume {record.name!r} is missing from the "
                                     "project")
    if sha256_file(path) != sha256:
        raise CorruptFileError(path, "bytes differ from the checksum in the manifest "
                                     "(modified outside napari-weakseg?)")
    return read_labels(path, like=record.geometry).data
