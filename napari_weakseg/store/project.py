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
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WeakSegError
from ..io.errors import GeometryMismatchError, VolumeError
from ..io.geometry import VolumeGeometry
from ..io.atomic import atomic_path, fsync_dir, sha256_file
from ..io.nifti import (Volume, check_same_grid, is_nifti_path,
                        read_labels, read_volume, strip_nifti_suffix, write_labels)
from ..schema import LabelSchema
from ..weak.encoding import (CLASS_KINDS, AnnotationValueError, check_kind, to_wsl4mis,
                             validate_annotation, validate_ground_truth)
from . import manifest
from ..states import STORED_RUN_STATUSES, RunStatus
from .records import (SPLITS, Annotation, AnnotationRecord, GroundTruthRecord, ModelRecord,
                      NotFoundError, ProjectDiskError, ProjectExistsError, ReadOnlyProjectError,
                      RunRecord, StoreError, VolumeRecord, dumps)

VolumeRef = VolumeRecord | int | str
ArrayOrPath = np.ndarray | str | os.PathLike
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_STRATEGY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TAG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
RUN_STATUSES = STORED_RUN_STATUSES
ORPHAN_MIN_AGE_S = 3600.0
SUBFOLDERS = ("images", "annotations", "ground_truth")
# names this package gives files in the subfolders: NAME.TOKEN.nii[.gz] (copies, versions)
# and the temporary names of atomic writes (".NAME.RANDOM.tmp[.nii[.gz]]")
_OUR_FILE = re.compile(r"\.\d{8}T\d{6}-[0-9a-f]{12}\.nii(\.gz)?$")
_OUR_TEMP = re.compile(r"^\..+\.\d{8}T\d{6}-[0-9a-f]{12}\.nii(\.gz)?\.[A-Za-z0-9_]+"
                       r"\.tmp(\.nii(\.gz)?)?$")


class ImageMissingError(VolumeError):
    """A volume's image file is gone (moved or deleted)."""


class ImageChangedError(VolumeError):
    """A volume's image file differs from the one that was added (checksum mismatch)."""


class CorruptFileError(VolumeError):
    """A committed file's bytes do not match the checksum in the manifest."""


@dataclass
class VerifyReport:
    """Result of :meth:`Project.verify`: problems found, nothing changed."""

    image_problems: list[str] = field(default_factory=list)
    file_problems: list[str] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)
    checked_files: int = 0

    @property
    def ok(self) -> bool:
        return not self.image_problems and not self.file_problems


def _token() -> str:
    """Unique, roughly chronological file-name token."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:12]


def _safe(name: str) -> str:
    return _SAFE.sub("_", name).strip("._") or "volume"


class Project:
    """A project folder. Open with :meth:`create` or :meth:`open`; usable as a context
    manager. One instance may be shared by threads; several processes may open one folder.
    """

    def __init__(self, root: Path, conn, schema: LabelSchema, *, read_only: bool = False):
        self.root = root
        self._conn = conn
        self._lock = threading.RLock()
        self.schema = schema
        #: opened read-only: every write raises :class:`ReadOnlyProjectError`
        self.read_only = read_only
        #: :meth:`create` finished a project whose creation had been interrupted
        self.repaired = False

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
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

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
        row = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0][0] if row else None

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list:
        with self._lock:
            if self._conn is None:
                raise StoreError(f"{self.root}: project is closed")
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                error = self._database_error(exc)
                if error is None:
                    raise
                raise error from exc

    @contextlib.contextmanager
    def _write(self):
        """One ``BEGIN IMMEDIATE`` transaction, holding the thread lock."""
        with self._lock:
            if self._conn is None:
                raise StoreError(f"{self.root}: project is closed")
            self.check_writable()
            try:
                with manifest.write_transaction(self._conn) as conn:
                    yield conn
            except sqlite3.Error as exc:
                error = self._database_error(exc)
                if error is None:
                    raise
                raise error from exc

    def _database_error(self, exc: sqlite3.Error) -> StoreError | None:
        """The one-line error for an SQLite failure that is the user's situation (damaged
        manifest, disk full, read-only, I/O error); ``None`` for a bug."""
        return manifest.database_error(exc, self.manifest_path, self.root)

    def check_writable(self) -> None:
        """Raise :class:`ReadOnlyProjectError` when the project was opened read-only."""
        if self.read_only:
            raise ReadOnlyProjectError(f"{self.root}: project is read-only (opened read-only, "
                                       "or its folder or manifest cannot be written); nothing "
                                       "was written")

    # -- volumes ------------------------------------------------------------------------
    def add_volume(self, image_path: str | os.PathLike, *, copy: bool = True,
                   name: str | None = None, tags: Mapping[str, str] | None = None
                   ) -> VolumeRecord:
        """Add a 3D NIfTI image; returns its record.

        ``copy``: copy the file into ``images/`` (else reference it where it is). The file's
        SHA-256 is kept and checked by :meth:`read_image`. ``name`` defaults to the file name
        without its NIfTI suffix and must be unique. ``tags``: e.g. ``dataset``,
        ``modality``, ``subject``, ``frame``, ``split`` (train / val / test).
        """
        self.check_writable()
        source = Path(image_path)
        name = name or strip_nifti_suffix(source.name)
        tags = self._check_tags(tags or {})
        if self._query("SELECT 1 FROM volumes WHERE name = ?", (name,)):
            raise StoreError(f"{source}: a volume named {name!r} already exists in the project")
        if not is_nifti_path(source):
            raise VolumeError(source, "not a NIfTI file (expected a .nii or .nii.gz name)")
        if not source.exists():
            raise VolumeError(source, "file does not exist")
        copied_path = None
        if copy:
            suffix = ".nii.gz" if source.name.lower().endswith(".gz") else ".nii"
            copied_path = self.root / "images" / f"{_safe(name)}.{_token()}{suffix}"
            with _disk_errors(self.root):
                digest = _atomic_copy(source, copied_path)
            stored_path, file_path = copied_path.relative_to(self.root).as_posix(), copied_path
        else:
            file_path = source.resolve()
            digest = sha256_file(file_path)
            stored_path = str(file_path)
        try:
            volume = read_volume(file_path, allow_4d=False)
            geometry = volume.geometry
            if 0 in volume.data.shape or 0 in tuple(geometry.shape):
                raise VolumeError(source, f"has a zero-size dimension (shape "
                                          f"{tuple(volume.data.shape)} z, y, x); an image "
                                          "needs at least one voxel along each axis")
            header = geometry.header
            header_kind = "nifti2" if type(header).__name__ == "Nifti2Header" else "nifti1"
            with self._write() as conn:
                # checked under the write lock: no other process can add the name meanwhile
                if conn.execute("SELECT 1 FROM volumes WHERE name = ?", (name,)).fetchone():
                    raise StoreError(f"{source}: a volume named {name!r} already exists in "
                                     "the project")
                cursor = conn.execute(
                    "INSERT INTO volumes (name, image_path, copied, sha256, size_bytes, shape,"
                    " affine, spacing, header, header_kind, dtype, added_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (name, stored_path, int(copy), digest, file_path.stat().st_size,
                     dumps(list(geometry.shape)), dumps(geometry.affine.tolist()),
                     dumps(list(geometry.spacing)),
                     bytes(header.binaryblock) if header is not None else None, header_kind,
                     str(volume.data.dtype), manifest.now()))
                volume_id = cursor.lastrowid
                conn.executemany("INSERT INTO volume_tags (volume_id, key, value) "
                                 "VALUES (?, ?, ?)",
                                 [(volume_id, k, v) for k, v in tags.items() if v is not None])
        except VolumeError as exc:
            _unlink_quietly(copied_path)
            if copy and exc.path == str(copied_path):
                raise type(exc)(source, exc.problem) from None
            raise
        except BaseException:
            _unlink_quietly(copied_path)
            raise
        return self.volume(volume_id)

    def volume(self, ref: VolumeRef) -> VolumeRecord:
        """The record of a volume given its record, id or name."""
        if isinstance(ref, VolumeRecord):
            ref = ref.id
        if isinstance(ref, (int, np.integer)):
            rows = self._query("SELECT * FROM volumes WHERE id = ?", (int(ref),))
        else:
            rows = self._query("SELECT * FROM volumes WHERE name = ?", (str(ref),))
        if not rows:
            raise NotFoundError(f"{self.root}: no volume {ref!r} in the project")
        return self._volume_record(rows[0])

    def volumes(self, **tag_filters: str | Iterable[str] | None) -> list[VolumeRecord]:
        """Volumes (sorted by name) whose tags match every filter.

        A filter value may be a string, a collection of strings (any of them), or ``None``
        (the tag must be absent). Example: ``project.volumes(split="train",
        dataset="ACDC")``.
        """
        sql = "SELECT * FROM volumes v"
        clauses, params = [], []
        for key, value in tag_filters.items():
            if value is None:
                clauses.append("NOT EXISTS (SELECT 1 FROM volume_tags t WHERE "
                               "t.volume_id = v.id AND t.key = ?)")
                params.append(key)
                continue
            values = [value] if isinstance(value, str) else [str(x) for x in value]
            marks = ", ".join("?" * len(values))
            clauses.append(f"EXISTS (SELECT 1 FROM volume_tags t WHERE t.volume_id = v.id "
                           f"AND t.key = ? AND t.value IN ({marks}))")
            params += [key, *values]
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        rows = self._query(sql + " ORDER BY v.name", params)
        tags = self._all_tags()
        return [self._volume_record(row, tags.get(row["id"], {})) for row in rows]

    def set_tags(self, volume: VolumeRef, **tags: str | None) -> VolumeRecord:
        """Set (or with ``None`` remove) tags of a volume."""
        self.check_writable()
        record = self.volume(volume)
        tags = self._check_tags(tags)
        with self._write() as conn:
            for key, value in tags.items():
                if value is None:
                    conn.execute("DELETE FROM volume_tags WHERE volume_id = ? AND key = ?",
                                 (record.id, key))
                else:
                    conn.execute("INSERT OR REPLACE INTO volume_tags (volume_id, key, value) "
                                 "VALUES (?, ?, ?)", (record.id, key, value))
        return self.volume(record.id)

    def image_problem(self, volume: VolumeRef) -> str | None:
        """``None`` when the image file is present and unchanged, else the problem."""
        record = self.volume(volume)
        try:
            self._check_image_file(record)
        except VolumeError as exc:
            return str(exc)
        return None

    def read_image(self, volume: VolumeRef, *, verify: bool = True) -> Volume:
        """The image (``data`` (Z, Y, X), ``geometry``) of a volume.

        Raises :class:`ImageMissingError` when the file was moved or deleted and
        :class:`ImageChangedError` when its bytes changed (``verify``: compare the SHA-256)
        or its grid differs from the one recorded.
        """
        record = self.volume(volume)
        if verify:
            self._check_image_file(record)
        elif not record.image_path.exists():
            self._check_image_file(record)
        image = read_volume(record.image_path, allow_4d=False)
        try:
            check_same_grid(image.geometry, record.geometry, record.image_path)
        except GeometryMismatchError as exc:
            raise ImageChangedError(record.image_path, f"(volume {record.name!r}) no longer "
                                                       f"matches the grid recorded: "
                                                       f"{exc.problem}") from None
        return image

    def relocate_image(self, volume: VolumeRef, new_path: str | os.PathLike) -> VolumeRecord:
        """Point a referenced volume at its moved image; the checksum must match."""
        self.check_writable()
        record = self.volume(volume)
        new_path = Path(new_path).resolve()
        if not new_path.exists():
            raise VolumeError(new_path, "file does not exist")
        digest = sha256_file(new_path)
        if digest != record.sha256:
            raise ImageChangedError(new_path, f"is not the image of volume {record.name!r} "
                                              "(checksum differs)")
        with self._write() as conn:
            conn.execute("UPDATE volumes SET image_path = ?, copied = 0 WHERE id = ?",
                         (str(new_path), record.id))
        return self.volume(record.id)

    def _check_image_file(self, record: VolumeRecord) -> None:
        path = record.image_path
        if not path.exists():
            raise ImageMissingError(path, f"image of volume {record.name!r} is missing (moved "
                                          "or deleted?); put it back or use "
                                          "Project.relocate_image")
        if sha256_file(path) != record.sha256:
            raise ImageChangedError(path, f"image of volume {record.name!r} changed since it "
                                          "was added (SHA-256 differs); annotations may no "
                                          "longer fit it")

    def _volume_record(self, row, tags: dict[str, str] | None = None) -> VolumeRecord:
        if tags is None:
            tags = {r["key"]: r["value"] for r in self._query(
                "SELECT key, value FROM volume_tags WHERE volume_id = ?", (row["id"],))}
        image_path = Path(row["image_path"])
        if row["copied"]:
            image_path = self.root / image_path
        return VolumeRecord(
            id=row["id"], name=row["name"], image_path=image_path, copied=bool(row["copied"]),
            sha256=row["sha256"], size_bytes=row["size_bytes"],
            shape=tuple(json.loads(row["shape"])),
            affine=np.asarray(json.loads(row["affine"]), dtype=np.float64),
            spacing=tuple(json.loads(row["spacing"])), dtype=row["dtype"],
            added_at=row["added_at"], tags=dict(tags), header_block=row["header"],
            header_kind=row["header_kind"])

    def _all_tags(self) -> dict[int, dict[str, str]]:
        out: dict[int, dict[str, str]] = {}
        for r in self._query("SELECT volume_id, key, value FROM volume_tags"):
            out.setdefault(r["volume_id"], {})[r["key"]] = r["value"]
        return out

    @staticmethod
    def _check_tags(tags: Mapping[str, Any]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for key, value in tags.items():
            if not _TAG_KEY.match(key):
                raise StoreError(f"invalid tag name {key!r} (letters, digits, underscore)")
            if value is not None:
                value = str(value)
                if key == "split" and value not in SPLITS:
                    raise StoreError(f"split must be one of {', '.join(SPLITS)}, got {value!r}")
            out[key] = value
        return out

    def _volume_dir(self, base: str, record: VolumeRecord) -> Path:
        return self.root / base / f"{record.id:05d}-{_safe(record.name)}"

    # -- annotations --------------------------------------------------------------------
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
        self.check_writable()
        record = self.volume(volume)
        check_kind(kind)
        strategy = _check_strategy(strategy)
        source = f"{record.name} ({kind}{'' if strategy == 'default' else '/' + strategy})"
        array, source = self._annotation_array(record, data, geometry, source)
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
                current = self.annotation(record, kind, strategy=strategy)
            except NotFoundError:
                current = None
            if current is not None and current.declared_classes == classes \
                    and current.declared_slices == slices \
                    and np.array_equal(current.data, array):
                return current.record
        folder = self._volume_dir("annotations", record)
        path = folder / f"{kind}.{strategy}.{_token()}.nii.gz"
        with _disk_errors(self.root):
            write_labels(path, array, record.geometry)
            digest = sha256_file(path)
        try:
            with self._write() as conn:
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
                     _restored_from, note, dumps({str(k): v for k, v in count_map.items()})))
                annotation_id = cursor.lastrowid
        except BaseException:
            _unlink_quietly(path)
            raise
        return self._annotation_record(self._query(
            _ANNOTATION_SELECT + " WHERE a.id = ?", (annotation_id,))[0])

    def annotation_versions(self, volume: VolumeRef, kind: str, *,
                            strategy: str = "default") -> list[AnnotationRecord]:
        """Every saved version (oldest first) of one annotation."""
        record = self.volume(volume)
        rows = self._query(_ANNOTATION_SELECT + " WHERE a.volume_id = ? AND a.kind = ? AND "
                           "a.strategy = ? ORDER BY a.version",
                           (record.id, check_kind(kind), strategy))
        return [self._annotation_record(r) for r in rows]

    def annotations(self, volume: VolumeRef | None = None, *, kind: str | None = None,
                    strategy: str | None = None,
                    all_versions: bool = False) -> list[AnnotationRecord]:
        """Records of the current (latest) versions, or of every version with
        ``all_versions``; optionally for one volume / kind / strategy."""
        clauses, params = [], []
        if volume is not None:
            clauses.append("a.volume_id = ?")
            params.append(self.volume(volume).id)
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
        rows = self._query(sql + " ORDER BY v.name, a.kind, a.strategy, a.version", params)
        return [self._annotation_record(r) for r in rows]

    def strategies(self, kind: str) -> list[str]:
        """The strategy names used for ``kind`` anywhere in the project (sorted)."""
        return [r[0] for r in self._query("SELECT DISTINCT strategy FROM annotations WHERE "
                                          "kind = ? ORDER BY strategy", (check_kind(kind),))]

    def annotation_record(self, volume: VolumeRef, kind: str, *, strategy: str = "default",
                          version: int | None = None) -> AnnotationRecord:
        """The record of one version (the latest when ``version`` is None)."""
        record = self.volume(volume)
        sql = _ANNOTATION_SELECT + " WHERE a.volume_id = ? AND a.kind = ? AND a.strategy = ?"
        params: list[Any] = [record.id, check_kind(kind), strategy]
        if version is None:
            sql += " ORDER BY a.version DESC LIMIT 1"
        else:
            sql += " AND a.version = ?"
            params.append(int(version))
        rows = self._query(sql, params)
        if not rows:
            what = "no" if version is None else f"no version {version} of the"
            raise NotFoundError(f"volume {record.name!r} has {what} {kind} annotation"
                                f"{'' if strategy == 'default' else f' ({strategy})'}")
        return self._annotation_record(rows[0])

    def annotation(self, volume: VolumeRef, kind: str, *, strategy: str = "default",
                   version: int | None = None) -> Annotation:
        """One version (latest by default) with its array (Z, Y, X), checksum verified."""
        record = self.annotation_record(volume, kind, strategy=strategy, version=version)
        return Annotation(record, self._read_committed(record.path, record.sha256,
                                                       self.volume(record.volume_id)))

    def latest_annotations(self, volume: VolumeRef, *,
                           kinds: Iterable[str] | None = None) -> list[Annotation]:
        """The current version of every annotation (all strategies; all kinds or ``kinds``)
        of a volume, with arrays."""
        record = self.volume(volume)
        kinds = None if kinds is None else {check_kind(k) for k in kinds}
        return [Annotation(r, self._read_committed(r.path, r.sha256, record))
                for r in self.annotations(record) if kinds is None or r.kind in kinds]

    def restore_annotation(self, volume: VolumeRef, kind: str, version: int, *,
                           strategy: str = "default",
                           author: str | None = None) -> AnnotationRecord:
        """Make ``version`` current again by saving it as a new version (history kept)."""
        self.check_writable()
        old = self.annotation(volume, kind, strategy=strategy, version=version)
        slices = old.declared_slices
        return self.save_annotation(
            old.record.volume_id, kind, old.data, strategy=strategy, author=author,
            declared_classes=old.declared_classes, declared_slices=slices,
            note=f"restored from version {version}", allow_empty=True,
            _restored_from=version)

    def export_annotation(self, volume: VolumeRef, kind: str, path: str | os.PathLike, *,
                          strategy: str = "default", version: int | None = None,
                          encoding: str = "ours") -> Path:
        """Write one annotation version as NIfTI on the image grid (image header copied).

        ``encoding``: ``"ours"`` (as stored) or ``"wsl4mis"`` (class kinds only: background
        stroke 0, class c → c, ``C`` = unannotated).
        """
        annotation = self.annotation(volume, kind, strategy=strategy, version=version)
        data = annotation.data
        if encoding == "wsl4mis":
            if kind not in CLASS_KINDS:
                raise StoreError(f"{kind} has no WSL4MIS encoding (class kinds only)")
            data = to_wsl4mis(data, self.num_classes)
        elif encoding != "ours":
            raise StoreError(f"unknown encoding {encoding!r} (ours | wsl4mis)")
        return write_labels(path, data, self.volume(volume).geometry)

    def _annotation_array(self, record: VolumeRecord, data: ArrayOrPath,
                          geometry: VolumeGeometry | None, source: str):
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

    def _annotation_record(self, row) -> AnnotationRecord:
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

    def _read_committed(self, path: Path, sha256: str, record: VolumeRecord) -> np.ndarray:
        if not path.exists():
            raise CorruptFileError(path, f"file of volume {record.name!r} is missing from the "
                                         "project")
        if sha256_file(path) != sha256:
            raise CorruptFileError(path, "bytes differ from the checksum in the manifest "
                                         "(modified outside napari-weakseg?)")
        return read_labels(path, like=record.geometry).data

    # -- ground truth -------------------------------------------------------------------
    def set_ground_truth(self, volume: VolumeRef, data: ArrayOrPath, *,
                         source: str | None = None,
                         geometry: VolumeGeometry | None = None) -> GroundTruthRecord:
        """Store dense reference labels (plain class values, 0 = background) for evaluation.

        Ground truth is kept apart from annotations and never used for training unless a
        caller asks for it explicitly. Versioned like annotations (never overwritten).
        """
        self.check_writable()
        record = self.volume(volume)
        label = f"{record.name} (ground truth)"
        array, label = self._annotation_array(record, data, geometry, label)
        if source is None and isinstance(data, (str, os.PathLike)):
            source = str(data)
        array = validate_ground_truth(array, self.num_classes, label)
        path = self._volume_dir("ground_truth", record) / f"gt.{_token()}.nii.gz"
        with _disk_errors(self.root):
            write_labels(path, array, record.geometry)
            digest = sha256_file(path)
        try:
            with self._write() as conn:
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
            _unlink_quietly(path)
            raise
        return self._gt_record(self._query(_GT_SELECT + " WHERE g.id = ?", (gt_id,))[0])

    def ground_truth_record(self, volume: VolumeRef) -> GroundTruthRecord | None:
        record = self.volume(volume)
        rows = self._query(_GT_SELECT + " WHERE g.volume_id = ? ORDER BY g.version DESC "
                                        "LIMIT 1", (record.id,))
        return self._gt_record(rows[0]) if rows else None

    def ground_truth(self, volume: VolumeRef) -> np.ndarray | None:
        """The latest ground truth (Z, Y, X) class values, or ``None`` when there is none."""
        gt = self.ground_truth_record(volume)
        if gt is None:
            return None
        return self._read_committed(gt.path, gt.sha256, self.volume(gt.volume_id))

    def has_ground_truth(self, volume: VolumeRef) -> bool:
        return self.ground_truth_record(volume) is not None

    def _gt_record(self, row) -> GroundTruthRecord:
        return GroundTruthRecord(id=row["id"], volume_id=row["volume_id"],
                                 volume_name=row["volume_name"], version=row["version"],
                                 path=self.root / row["path"], sha256=row["sha256"],
                                 source=row["source"], created_at=row["created_at"])

    # -- runs and models ----------------------------------------------------------------
    def create_run(self, method: str, config: Mapping[str, Any] | None = None, *,
                   device: str | None = None, out_dir: str | os.PathLike | None = None,
                   log_path: str | os.PathLike | None = None) -> RunRecord:
        """Record a new training run (status ``created``)."""
        stamp = manifest.now()
        with self._write() as conn:
            run_id = conn.execute(
                "INSERT INTO runs (method, config, device, out_dir, log_path, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (method, dumps(dict(config or {})), device,
                 None if out_dir is None else str(out_dir),
                 None if log_path is None else str(log_path), stamp, stamp)).lastrowid
        return self.run(run_id)

    def update_run(self, run_id: int, *, status: str | None = None,
                   metrics: Mapping[str, Any] | None = None, device: str | None = None,
                   error: str | None = None, out_dir: str | os.PathLike | None = None,
                   log_path: str | os.PathLike | None = None) -> RunRecord:
        """Update a run; ``metrics`` are merged into the stored ones. Setting status
        ``running`` stamps ``started_at`` (first time), a final status ``finished_at``."""
        if status is not None and status not in RUN_STATUSES:
            raise StoreError(f"run status must be one of {', '.join(RUN_STATUSES)}")
        stamp = manifest.now()
        with self._write() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"{self.root}: no run {run_id}")
            merged = json.loads(row["metrics"])
            merged.update(metrics or {})
            sets = {"updated_at": stamp, "metrics": dumps(merged)}
            if status is not None:
                sets["status"] = status
                if status == RunStatus.RUNNING and row["started_at"] is None:
                    sets["started_at"] = stamp
                if status in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED):
                    sets["finished_at"] = stamp
            for key, value in (("device", device), ("error", error), ("out_dir", out_dir),
                               ("log_path", log_path)):
                if value is not None:
                    sets[key] = str(value)
            conn.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",
                         (*sets.values(), run_id))
        return self.run(run_id)

    def run(self, run_id: int) -> RunRecord:
        rows = self._query("SELECT * FROM runs WHERE id = ?", (int(run_id),))
        if not rows:
            raise NotFoundError(f"{self.root}: no run {run_id}")
        return _run_record(rows[0])

    def runs(self, *, method: str | None = None, status: str | None = None) -> list[RunRecord]:
        """Runs, oldest first, optionally filtered."""
        clauses, params = [], []
        for key, value in (("method", method), ("status", status)):
            if value is not None:
                clauses.append(f"{key} = ?")
                params.append(value)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        return [_run_record(r) for r in self._query(sql + " ORDER BY id", params)]

    def register_model(self, name: str, path: str | os.PathLike, *, method: str | None = None,
                       run_id: int | None = None, config: Mapping[str, Any] | None = None,
                       metrics: Mapping[str, Any] | None = None) -> ModelRecord:
        """Register a model folder (relative paths are taken relative to the project)."""
        path = Path(path)
        stored = path.as_posix() if not path.is_absolute() else str(path)
        with self._write() as conn:
            # checked under the write lock: no other process can register the name meanwhile
            if conn.execute("SELECT 1 FROM models WHERE name = ?", (name,)).fetchone():
                raise StoreError(f"{self.root}: a model named {name!r} exists")
            model_id = conn.execute(
                "INSERT INTO models (name, path, method, run_id, config, metrics, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, stored, method, run_id, dumps(dict(config or {})),
                 dumps(dict(metrics or {})), manifest.now())).lastrowid
        return self.model(model_id)

    def model(self, ref: int | str) -> ModelRecord:
        key = "id" if isinstance(ref, (int, np.integer)) else "name"
        rows = self._query(f"SELECT * FROM models WHERE {key} = ?", (ref,))
        if not rows:
            raise NotFoundError(f"{self.root}: no model {ref!r}")
        return self._model_record(rows[0])

    def models(self, *, method: str | None = None) -> list[ModelRecord]:
        sql, params = "SELECT * FROM models", []
        if method is not None:
            sql, params = sql + " WHERE method = ?", [method]
        return [self._model_record(r) for r in self._query(sql + " ORDER BY id", params)]

    def _model_record(self, row) -> ModelRecord:
        path = Path(row["path"])
        return ModelRecord(id=row["id"], name=row["name"],
                           path=path if path.is_absolute() else self.root / path,
                           method=row["method"], run_id=row["run_id"],
                           config=json.loads(row["config"]), metrics=json.loads(row["metrics"]),
                           created_at=row["created_at"])

    # -- maintenance --------------------------------------------------------------------
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
        report = VerifyReport()
        referenced: set[Path] = set()
        for record in self.volumes():
            if record.copied:
                referenced.add(record.image_path)
            if check_images:
                problem = self.image_problem(record)
                if problem:
                    report.image_problems.append(problem)
        rows = self._query("SELECT a.path, a.sha256 FROM annotations a UNION ALL "
                           "SELECT g.path, g.sha256 FROM ground_truth g")
        for row in rows:
            path = self.root / row["path"]
            referenced.add(path)
            report.checked_files += 1
            if not path.exists():
                report.file_problems.append(f"{path}: missing")
            elif sha256_file(path) != row["sha256"]:
                report.file_problems.append(f"{path}: checksum differs from the manifest")
        for sub in SUBFOLDERS:
            report.orphans += sorted(p for p in self._own_files(sub)
                                     if p not in referenced and _ours(p.name))
        return report

    def _own_files(self, sub: str) -> list[Path]:
        """Regular files under ``ROOT/sub`` whose real path is that path: symbolic links
        (to files or folders, ``sub`` itself included) are neither listed nor followed."""
        real_root = os.path.realpath(self.root)
        base = os.path.join(real_root, sub)
        if os.path.islink(base) or not os.path.isdir(base) \
                or os.path.realpath(base) != base:
            return []
        out = []
        for folder, _dirs, names in os.walk(base, followlinks=False):
            for name in names:
                path = os.path.join(folder, name)
                if _is_own_regular_file(path, real_root):
                    out.append(self.root / os.path.relpath(path, real_root))
        return out

    def remove_orphans(self, *, min_age_s: float = ORPHAN_MIN_AGE_S) -> list[Path]:
        """Delete orphan files older than ``min_age_s`` seconds (younger ones may belong to
        a write in progress in another process). Returns the deleted paths.

        Only what :meth:`verify` lists: regular files of this package's naming, not
        referenced by the manifest, whose real path lies in the project's own
        ``images/``, ``annotations/`` or ``ground_truth/`` folder; symbolic links are never
        followed or removed, so files elsewhere can never be deleted."""
        self.check_writable()
        removed = []
        limit = time.time() - min_age_s
        real_root = os.path.realpath(self.root)
        for path in self.verify(check_images=False).orphans:
            try:
                # checked again right before deleting: never a link, never outside
                if not _is_own_regular_file(str(path), real_root):
                    continue
                if os.lstat(path).st_mtime <= limit:
                    with _disk_errors(self.root):
                        os.unlink(path)
                    removed.append(path)
            except FileNotFoundError:
                pass
        return removed


_ANNOTATION_SELECT = ("SELECT a.*, v.name AS volume_name FROM annotations a "
                      "JOIN volumes v ON v.id = a.volume_id")
_GT_SELECT = ("SELECT g.*, v.name AS volume_name FROM ground_truth g "
              "JOIN volumes v ON v.id = g.volume_id")


def _run_record(row) -> RunRecord:
    return RunRecord(id=row["id"], method=row["method"], config=json.loads(row["config"]),
                     device=row["device"], status=row["status"],
                     metrics=json.loads(row["metrics"]), out_dir=row["out_dir"],
                     log_path=row["log_path"], error=row["error"],
                     created_at=row["created_at"], updated_at=row["updated_at"],
                     started_at=row["started_at"], finished_at=row["finished_at"])


def _check_strategy(strategy: str) -> str:
    if not isinstance(strategy, str) or not _STRATEGY.match(strategy):
        raise StoreError(f"invalid strategy name {strategy!r} (1–64 letters, digits, _ or -)")
    return strategy


def _atomic_copy(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` atomically (temporary file, fsync, rename); return the
    SHA-256 of the bytes copied."""
    digest = hashlib.sha256()
    with atomic_path(target) as tmp, open(tmp, "wb") as out, open(source, "rb") as src:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _ours(name: str) -> bool:
    """A file name this package gives (a copy or version, or an atomic write's temporary)."""
    return bool(_OUR_FILE.search(name) or _OUR_TEMP.match(name))


def _is_own_regular_file(path: str, real_root: str) -> bool:
    """``path`` is a regular file (not a link) inside a subfolder of the project's real
    folder, reached through no symbolic link."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    real = os.path.realpath(path)
    if real != os.path.abspath(path):
        return False
    inside = [os.path.join(real_root, sub) + os.sep for sub in SUBFOLDERS]
    return any(real.startswith(prefix) for prefix in inside)


_DISK_PROBLEMS = {
    errno.ENOSPC: (ProjectDiskError, "the disk is full; free some space and try again"),
    errno.EDQUOT: (ProjectDiskError, "the disk quota is exceeded; free some space"),
    errno.EIO: (ProjectDiskError, "disk I/O error; check the disk or network share"),
    errno.EROFS: (ReadOnlyProjectError, "project is read-only (read-only file system)"),
    errno.EACCES: (ReadOnlyProjectError, "project is read-only (permission denied)"),
    errno.EPERM: (ReadOnlyProjectError, "project is read-only (operation not permitted)"),
}


@contextlib.contextmanager
def _disk_errors(root: Path):
    """Turn the disk's refusals (full, read-only, I/O error) during a project write into
    one-line errors naming the project (and the file)."""
    try:
        yield
    except WeakSegError:
        raise
    except OSError as exc:
        kind, problem = _DISK_PROBLEMS.get(exc.errno, (None, None))
        if kind is None:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        error = kind(f"{root}: {problem}{where}; nothing was committed")
        if isinstance(error, OSError):
            error.errno = exc.errno
        raise error from exc


def _link_no_replace(tmp: Path, target: Path, root: Path) -> None:
    """Make ``tmp`` appear as ``target`` unless ``target`` exists (a concurrent init)."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise ProjectExistsError(f"{root}: a project already exists here; left "
                                 "untouched") from None
    except OSError:  # no hard links on this file system
        if target.exists():
            raise ProjectExistsError(f"{root}: a project already exists here; left "
                                     "untouched") from None
        os.replace(tmp, target)


def _unlink_quietly(path: Path | None) -> None:
    if path is None:
        return
    try:
        path.unlink()
    except FileNotFoundError:
        pass


__all__ = ["CorruptFileError", "ImageChangedError", "ImageMissingError", "Project",
           "VerifyReport", "sha256_file"]
