"""A project: a folder with an SQLite manifest and NIfTI files (see ``docs/store.md``).

Layout::

    PROJECT/
      project.sqlite                      manifest (WAL: -wal and -shm files beside it)
      images/NAME.TOKEN.nii.gz            copied images (referenced ones stay where they are)
      annotations/ID-NAME/KIND.STRATEGY.TOKEN.nii.gz   one file per saved version
      ground_truth/ID-NAME/gt.TOKEN.nii.gz             one file per version

Durability: every file is written atomically (temporary name, fsync, rename, fsync of the
folder) under a name never used before, and only then is its manifest row inserted, in one
``BEGIN IMMEDIATE`` transaction that also assigns the version number. A crash at any point
leaves either a committed version whose file is complete (its SHA-256 is in the row and is
checked on every read) or an unreferenced file that :meth:`Project.verify` lists as an
orphan; nothing committed is ever modified or deleted. Orphan removal touches only regular
files of this package's naming inside the project's own folders, never through a symbolic
link. A project that cannot be written (a colleague's share) opens read-only; failures that
are the user's situation (damaged manifest, disk full, read-only, I/O error) raise one-line
:class:`~napari_weakseg.errors.ProjectError` / ``DiskError`` subclasses naming the project.

Arrays are ``(Z, Y, X)`` on the image grid; annotations use the encoding of
:mod:`napari_weakseg.weak.encoding`; ground truth holds plain class values.

:class:`Project` is the facade: it opens and creates the folder and hands each call to a
repository — :mod:`.volumes` (volume rows, tags, image files), :mod:`.annotations`
(versioned annotations and ground truth), :mod:`.runs` (runs and models), :mod:`.verify`
(checksums and orphans) — over one :class:`~.connection.ManifestConnection`; the file
naming and the disk's refusals are :mod:`.files`'s.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import fsync_dir, sha256_file
from ..io.geometry import VolumeGeometry
from ..io.nifti import Volume
from ..schema import LabelSchema
from . import manifest
from .annotations import (ArrayOrPath, AnnotationRepository, CorruptFileError,
                          GroundTruthRepository)
from .connection import ManifestConnection
from .files import SUBFOLDERS, disk_errors as _disk_errors
from .files import link_no_replace as _link_no_replace
from .files import unlink_quietly as _unlink_quietly
from .records import (Annotation, AnnotationRecord, GroundTruthRecord, ModelRecord,
                      NotFoundError, ProjectExistsError, RunRecord, VolumeRecord, dumps)
from .runs import RUN_STATUSES, RunRepository
from .verify import ORPHAN_MIN_AGE_S, VerifyReport
from .verify import remove_orphans as _remove_orphans
from .verify import verify as _verify
from .volumes import ImageChangedError, ImageMissingError, VolumeRef, VolumeRepository


class Project:
    """A project folder. Open with :meth:`create` or :meth:`open`; usable as a context
    manager. One instance may be shared by threads; several processes may open one folder.
    """

    def __init__(self, root: Path, conn, schema: LabelSchema, *, read_only: bool = False):
        self.root = root
        self._db = ManifestConnection(root, conn, read_only=read_only)
        self.schema = schema
        self._volumes = VolumeRepository(self._db)
        self._annotations = AnnotationRepository(self._db, self._volumes, schema)
        self._ground_truth = GroundTruthRepository(self._db, self._volumes, schema)
        self._runs = RunRepository(self._db)
        #: :meth:`create` finished a project whose creation had been interrupted
        self.repaired = False

    @property
    def read_only(self) -> bool:
        """Opened read-only: every write raises :class:`ReadOnlyProjectError`."""
        return self._db.read_only

    @read_only.setter
    def read_only(self, value: bool) -> None:
        self._db.read_only = value

    # -- opening ------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, schema: LabelSchema | None = None, *,
               name: str | None = None) -> Project:
        """Make a new project folder (may exist but must hold no project).

        ``schema`` defaults to :meth:`LabelSchema.cardiac` (background, RV, MYO, LV).

        Atomic: the manifest is built complete under a temporary name and linked into place,
        so a project exists only once it is whole. A folder left by an interrupted creation
        of older versions (an empty or partial manifest: no label schema, no volume,
        annotation, run or model) is finished; anything else is refused untouched
        (:class:`ProjectExistsError`).
        """
        root = Path(path).resolve()
        manifest_path = root / manifest.MANIFEST_NAME
        repair = False
        if manifest_path.exists() or manifest_path.is_symlink():
            if manifest_path.is_symlink() or not manifest_path.is_file():
                raise ProjectExistsError(f"{manifest_path}: exists and is not a project "
                                         "manifest file; left untouched")
            if not manifest.unfinished(manifest_path):
                raise ProjectExistsError(f"{root}: a project already exists here (or "
                                         f"{manifest.MANIFEST_NAME} holds other data); left "
                                         "untouched")
            repair = True
        schema = schema or LabelSchema.cardiac()
        tmp = root / f".{manifest.MANIFEST_NAME}.{uuid.uuid4().hex[:12]}.tmp"
        with _disk_errors(root):
            root.mkdir(parents=True, exist_ok=True)
            for sub in SUBFOLDERS:
                (root / sub).mkdir(exist_ok=True)
            try:
                conn = manifest.connect(tmp, create=True, journal="DELETE")
                try:
                    with manifest.write_transaction(conn):
                        rows = {"schema": dumps(schema.to_dict()), "name": name or root.name,
                                "created_at": manifest.now(), "project_id": uuid.uuid4().hex}
                        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                                         rows.items())
                finally:
                    conn.close()
                if repair:
                    for suffix in ("-wal", "-shm", "-journal"):  # the unfinished one's
                        _unlink_quietly(Path(f"{manifest_path}{suffix}"))
                    os.replace(tmp, manifest_path)
                else:
                    _link_no_replace(tmp, manifest_path, root)
                fsync_dir(root)
            finally:
                _unlink_quietly(tmp)
                _unlink_quietly(Path(f"{tmp}-journal"))
        project = cls.open(root, read_only=False)
        project.repaired = repair
        return project

    @classmethod
    def open(cls, path: str | os.PathLike, *, read_only: bool | None = None) -> Project:
        """Open an existing project (applying manifest migrations if needed).

        ``read_only``: never write (the manifest is opened with SQLite ``mode=ro``); by
        default a project whose folder or manifest cannot be written (a colleague's share)
        is opened read-only. Writes then raise :class:`ReadOnlyProjectError`.
        """
        root = Path(path).resolve()
        manifest_path = root / manifest.MANIFEST_NAME
        if not manifest_path.exists():
            raise NotFoundError(f"{root}: not a napari-weakseg project (no "
                                f"{manifest.MANIFEST_NAME}); create one with 'weakseg init'")
        if read_only is None:
            read_only = not (os.access(root, os.W_OK) and os.access(manifest_path, os.W_OK))
        conn = manifest.connect(manifest_path, read_only=read_only)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.Error as exc:
            conn.close()
            raise (manifest.database_error(exc, manifest_path, root) or manifest.ManifestError(
                f"{manifest_path}: not a usable project manifest ({exc})")) from exc
        if row is None:
            conn.close()
            raise manifest.ManifestError(
                f"{manifest_path}: manifest has no label schema (interrupted project "
                f"creation?); run 'weakseg init {root}' to finish it")
        return cls(root, conn, LabelSchema.from_dict(json.loads(row[0])), read_only=read_only)

    @classmethod
    def open_or_create(cls, path: str | os.PathLike,
                       schema: LabelSchema | None = None) -> Project:
        """Open ``path``; create it (with ``schema``) when it holds no project yet (or only
        an unfinished one, see :meth:`create`)."""
        manifest_path = Path(path) / manifest.MANIFEST_NAME
        if manifest_path.exists():
            try:
                return cls.open(path)
            except manifest.ManifestError:
                if not manifest_path.is_file() or manifest_path.is_symlink() \
                        or not manifest.unfinished(manifest_path):
                    raise
        return cls.create(path, schema)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({str(self.root)!r}, classes={self.schema.names})"

    @property
    def manifest_path(self) -> Path:
        return self.root / manifest.MANIFEST_NAME

    @property
    def num_classes(self) -> int:
        return self.schema.num_classes

    @property
    def name(self) -> str:
        return self._meta("name") or self.root.name

    def _meta(self, key: str) -> str | None:
        return self._db.meta(key)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list:
        return self._db.query(sql, params)

    def _write(self):
        """One ``BEGIN IMMEDIATE`` transaction, holding the thread lock."""
        return self._db.write()

    def check_writable(self) -> None:
        """Raise :class:`ReadOnlyProjectError` when the project was opened read-only."""
        self._db.check_writable()

    # -- volumes (.volumes) -------------------------------------------------------------
    def add_volume(self, image_path: str | os.PathLike, *, copy: bool = True,
                   name: str | None = None, tags: Mapping[str, str] | None = None
                   ) -> VolumeRecord:
        """Add a 3D NIfTI image; returns its record.

        ``copy``: copy the file into ``images/`` (else reference it where it is). The file's
        SHA-256 is kept and checked by :meth:`read_image`. ``name`` defaults to the file name
        without its NIfTI suffix and must be unique. ``tags``: e.g. ``dataset``,
        ``modality``, ``subject``, ``frame``, ``split`` (train / val / test).
        """
        return self._volumes.add(image_path, copy=copy, name=name, tags=tags)

    def volume(self, ref: VolumeRef) -> VolumeRecord:
        """The record of a volume given its record, id or name."""
        return self._volumes.get(ref)

    def volumes(self, **tag_filters: str | Iterable[str] | None) -> list[VolumeRecord]:
        """Volumes (sorted by name) whose tags match every filter.

        A filter value may be a string, a collection of strings (any of them), or ``None``
        (the tag must be absent). Example: ``project.volumes(split="train",
        dataset="ACDC")``.
        """
        return self._volumes.matching(**tag_filters)

    def set_tags(self, volume: VolumeRef, **tags: str | None) -> VolumeRecord:
        """Set (or with ``None`` remove) tags of a volume."""
        return self._volumes.set_tags(volume, **tags)

    def image_problem(self, volume: VolumeRef) -> str | None:
        """``None`` when the image file is present and unchanged, else the problem."""
        return self._volumes.image_problem(volume)

    def read_image(self, volume: VolumeRef, *, verify: bool = True) -> Volume:
        """The image (``data`` (Z, Y, X), ``geometry``) of a volume.

        Raises :class:`ImageMissingError` when the file was moved or deleted and
        :class:`ImageChangedError` when its bytes changed (``verify``: compare the SHA-256)
        or its grid differs from the one recorded.
        """
        return self._volumes.read_image(volume, verify=verify)

    def relocate_image(self, volume: VolumeRef, new_path: str | os.PathLike) -> VolumeRecord:
        """Point a referenced volume at its moved image; the checksum must match."""
        return self._volumes.relocate_image(volume, new_path)

    # -- annotations (.annotations) -----------------------------------------------------
    def save_annotation(self, volume: VolumeRef, kind: str, data: ArrayOrPath, *,
                        strategy: str = "default", author: str | None = None,
                        declared_classes: Iterable[int | str] | None = None,
                        declared_slices: Mapping[int, Iterable[int | str] | None] | None = None,
                        note: str | None = None, geometry: VolumeGeometry | None = None,
                        encoding: str = "ours", allow_empty: bool = False,
                        if_changed: bool = False,
                        _restored_from: int | None = None) -> AnnotationRecord:
        """Save a new version of ``volume``'s ``kind`` annotation; return its record.

        ``data``: (Z, Y, X) integer array in our encoding (docs/annotations.md), or a NIfTI
        path (then its shape *and* affine must match the image). ``geometry``: for an array,
        the grid it was drawn on (e.g. a napari layer's), checked against the image.
        ``encoding="wsl4mis"`` converts class-encoded data from that convention first.
        ``strategy``: a name that tells apart several annotations of one kind (e.g. two
        coarse_pos strategies); ``declared_classes``: classes delineated completely
        (partial/sparse/dense; names or indices); ``declared_slices``: sparse only,
        ``{z: classes complete on slice z}`` (``None`` = every class).

        ``if_changed`` (for autosave): when array and declarations equal the current
        version, return its record instead of saving a new one.

        Refused, with nothing written: a shape/affine mismatch
        (:class:`GeometryMismatchError`), values outside the schema
        (:class:`AnnotationValueError`), an empty annotation unless ``allow_empty``.
        """
        return self._annotations.save(
            volume, kind, data, strategy=strategy, author=author,
            declared_classes=declared_classes, declared_slices=declared_slices, note=note,
            geometry=geometry, encoding=encoding, allow_empty=allow_empty,
            if_changed=if_changed, restored_from=_restored_from)

    def annotation_versions(self, volume: VolumeRef, kind: str, *,
                            strategy: str = "default") -> list[AnnotationRecord]:
        """Every saved version (oldest first) of one annotation."""
        return self._annotations.versions(volume, kind, strategy=strategy)

    def annotations(self, volume: VolumeRef | None = None, *, kind: str | None = None,
                    strategy: str | None = None,
                    all_versions: bool = False) -> list[AnnotationRecord]:
        """Records of the current (latest) versions, or of every version with
        ``all_versions``; optionally for one volume / kind / strategy."""
        return self._annotations.matching(volume, kind=kind, strategy=strategy,
                                          all_versions=all_versions)

    def strategies(self, kind: str) -> list[str]:
        """The strategy names used for ``kind`` anywhere in the project (sorted)."""
        return self._annotations.strategies(kind)

    def annotation_record(self, volume: VolumeRef, kind: str, *, strategy: str = "default",
                          version: int | None = None) -> AnnotationRecord:
        """The record of one version (the latest when ``version`` is None)."""
        return self._annotations.record(volume, kind, strategy=strategy, version=version)

    def annotation(self, volume: VolumeRef, kind: str, *, strategy: str = "default",
                   version: int | None = None) -> Annotation:
        """One version (latest by default) with its array (Z, Y, X), checksum verified."""
        return self._annotations.get(volume, kind, strategy=strategy, version=version)

    def latest_annotations(self, volume: VolumeRef, *,
                           kinds: Iterable[str] | None = None) -> list[Annotation]:
        """The current version of every annotation (all strategies; all kinds or ``kinds``)
        of a volume, with arrays."""
        return self._annotations.latest(volume, kinds=kinds)

    def restore_annotation(self, volume: VolumeRef, kind: str, version: int, *,
                           strategy: str = "default",
                           author: str | None = None) -> AnnotationRecord:
        """Make ``version`` current again by saving it as a new version (history kept)."""
        return self._annotations.restore(volume, kind, version, strategy=strategy,
                                         author=author)

    def export_annotation(self, volume: VolumeRef, kind: str, path: str | os.PathLike, *,
                          strategy: str = "default", version: int | None = None,
                          encoding: str = "ours") -> Path:
        """Write one annotation version as NIfTI on the image grid (image header copied).

        ``encoding``: ``"ours"`` (as stored) or ``"wsl4mis"`` (class kinds only: background
        stroke 0, class c → c, ``C`` = unannotated).
        """
        return self._annotations.export(volume, kind, path, strategy=strategy,
                                        version=version, encoding=encoding)

    # -- ground truth (.annotations) ----------------------------------------------------
    def set_ground_truth(self, volume: VolumeRef, data: ArrayOrPath, *,
                         source: str | None = None,
                         geometry: VolumeGeometry | None = None) -> GroundTruthRecord:
        """Store dense reference labels (plain class values, 0 = background) for evaluation.

        Ground truth is kept apart from annotations and never used for training unless a
        caller asks for it explicitly. Versioned like annotations (never overwritten).
        """
        return self._ground_truth.set(volume, data, source=source, geometry=geometry)

    def ground_truth_record(self, volume: VolumeRef) -> GroundTruthRecord | None:
        return self._ground_truth.record(volume)

    def ground_truth(self, volume: VolumeRef) -> np.ndarray | None:
        """The latest ground truth (Z, Y, X) class values, or ``None`` when there is none."""
        return self._ground_truth.get(volume)

    def has_ground_truth(self, volume: VolumeRef) -> bool:
        return self.ground_truth_record(volume) is not None

    # -- runs and models (.runs) --------------------------------------------------------
    def create_run(self, method: str, config: Mapping[str, Any] | None = None, *,
                   device: str | None = None, out_dir: str | os.PathLike | None = None,
                   log_path: str | os.PathLike | None = None) -> RunRecord:
        """Record a new training run (status ``created``)."""
        return self._runs.create_run(method, config, device=device, out_dir=out_dir,
                                     log_path=log_path)

    def update_run(self, run_id: int, *, status: str | None = None,
                   metrics: Mapping[str, Any] | None = None, device: str | None = None,
                   error: str | None = None, out_dir: str | os.PathLike | None = None,
                   log_path: str | os.PathLike | None = None) -> RunRecord:
        """Update a run; ``metrics`` are merged into the stored ones. Setting status
        ``running`` stamps ``started_at`` (first time), a final status ``finished_at``."""
        return self._runs.update_run(run_id, status=status, metrics=metrics, device=device,
                                     error=error, out_dir=out_dir, log_path=log_path)

    def run(self, run_id: int) -> RunRecord:
        return self._runs.run(run_id)

    def runs(self, *, method: str | None = None, status: str | None = None) -> list[RunRecord]:
        """Runs, oldest first, optionally filtered."""
        return self._runs.runs(method=method, status=status)

    def register_model(self, name: str, path: str | os.PathLike, *, method: str | None = None,
                       run_id: int | None = None, config: Mapping[str, Any] | None = None,
                       metrics: Mapping[str, Any] | None = None) -> ModelRecord:
        """Register a model folder (relative paths are taken relative to the project)."""
        return self._runs.register_model(name, path, method=method, run_id=run_id,
                                         config=config, metrics=metrics)

    def model(self, ref: int | str) -> ModelRecord:
        return self._runs.model(ref)

    def models(self, *, method: str | None = None) -> list[ModelRecord]:
        return self._runs.models(method=method)

    # -- maintenance (.verify) ----------------------------------------------------------
    def verify(self, *, check_images: bool = True) -> VerifyReport:
        """Check every committed file (exists, checksum) and list orphan files.

        Orphans are files in ``images/``, ``annotations/`` or ``ground_truth/`` that no
        manifest row references: temporary files of an interrupted write, or a file whose
        transaction never committed. They are harmless; :meth:`remove_orphans` deletes them.
        Only regular files named the way this package names its files, inside the project's
        own folders, can be orphans: nothing reached through a symbolic link (a linked
        ``images/`` folder, a linked file or sub-folder) and no file of another name (a
        README, another study's images) is ever listed.
        """
        return _verify(self._db, self._volumes, check_images=check_images)

    def remove_orphans(self, *, min_age_s: float = ORPHAN_MIN_AGE_S) -> list[Path]:
        """Delete orphan files older than ``min_age_s`` seconds (younger ones may belong to
        a write in progress in another process). Returns the deleted paths.

        Only what :meth:`verify` lists: regular files of this package's naming, not
        referenced by the manifest, whose real path lies in the project's own
        ``images/``, ``annotations/`` or ``ground_truth/`` folder; symbolic links are never
        followed or removed, so files elsewhere can never be deleted."""
        return _remove_orphans(self._db, self._volumes, min_age_s=min_age_s)


__all__ = ["CorruptFileError", "ImageChangedError", "ImageMissingError", "Project",
           "VerifyReport", "sha256_file",
           # kept importable from here (they live in the repositories now)
           "ORPHAN_MIN_AGE_S", "RUN_STATUSES", "SUBFOLDERS", "ArrayOrPath", "VolumeRef"]
