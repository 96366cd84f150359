"""A project's volumes: their manifest rows and tags, and their image files (copied into
``images/`` or referenced where they are, guarded by the SHA-256 kept at adding)."""

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
from ..io.nifti import Volume, check_same_grid, is_nifti_path, read_volume, strip_nifti_suffix
from . import manifest
from .connection import ManifestConnection
from .files import atomic_copy, disk_errors, safe_name, token, unlink_quietly
from .records import SPLITS, NotFoundError, StoreError, VolumeRecord, dumps

VolumeRef = VolumeRecord | int | str
_TAG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class ImageMissingError(VolumeError):
    """A volume's image file is gone (moved or deleted)."""


class ImageChangedError(VolumeError):
    """A volume's image file differs from the one that was added (checksum mismatch)."""


class VolumeRepository:
    """The ``volumes`` and ``volume_tags`` rows of one project, and its image files."""

    def __init__(self, db: ManifestConnection):
        self.db = db
        self.root = db.root

    def add(self, image_path: str | os.PathLike, *, copy: bool = True,
            name: str | None = None, tags: Mapping[str, str] | None = None) -> VolumeRecord:
        """:meth:`Project.add_volume <napari_weakseg.store.project.Project.add_volume>`."""
        self.db.check_writable()
        source = Path(image_path)
        name = name or strip_nifti_suffix(source.name)
        tags = self.check_tags(tags or {})
        if self.db.query("SELECT 1 FROM volumes WHERE name = ?", (name,)):
            raise StoreError(f"{source}: a volume named {name!r} already exists in the project")
        if not is_nifti_path(source):
            raise VolumeError(source, "not a NIfTI file (expected a .nii or .nii.gz name)")
        if not source.exists():
            raise VolumeError(source, "file does not exist")
        copied_path = None
        if copy:
            suffix = ".nii.gz" if source.name.lower().endswith(".gz") else ".nii"
            copied_path = self.root / "images" / f"{safe_name(name)}.{token()}{suffix}"
            with disk_errors(self.root):
                digest = atomic_copy(source, copied_path)
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
            with self.db.write() as conn:
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
            unlink_quietly(copied_path)
            if copy and exc.path == str(copied_path):
                raise type(exc)(source, exc.problem) from None
            raise
        except BaseException:
            unlink_quietly(copied_path)
            raise
        return self.get(volume_id)

    def get(self, ref: VolumeRef) -> VolumeRecord:
        """The record of a volume given its record, id or name."""
        if isinstance(ref, VolumeRecord):
            ref = ref.id
        if isinstance(ref, (int, np.integer)):
            rows = self.db.query("SELECT * FROM volumes WHERE id = ?", (int(ref),))
        else:
            rows = self.db.query("SELECT * FROM volumes WHERE name = ?", (str(ref),))
        if not rows:
            raise NotFoundError(f"{self.root}: no volume {ref!r} in the project")
        return self.record(rows[0])

    def matching(self, **tag_filters: str | Iterable[str] | None) -> list[VolumeRecord]:
        """:meth:`Project.volumes <napari_weakseg.store.project.Project.volumes>`."""
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
        rows = self.db.query(sql + " ORDER BY v.name", params)
        tags = self.all_tags()
        return [self.record(row, tags.get(row["id"], {})) for row in rows]

    def set_tags(self, volume: VolumeRef, **tags: str | None) -> VolumeRecord:
        """Set (or with ``None`` remove) tags of a volume."""
        self.db.check_writable()
        record = self.get(volume)
        tags = self.check_tags(tags)
        with self.db.write() as conn:
            for key, value in tags.items():
                if value is None:
                    conn.execute("DELETE FROM volume_tags WHERE volume_id = ? AND key = ?",
                                 (record.id, key))
                else:
                    conn.execute("INSERT OR REPLACE INTO volume_tags (volume_id, key, value) "
                                 "VALUES (?, ?, ?)", (record.id, key, value))
        return self.get(record.id)

    def image_problem(self, volume: VolumeRef) -> str | None:
        """``None`` when the image file is present and unchanged, else the problem."""
        record = self.get(volume)
        try:
            self.check_image_file(record)
        except VolumeError as exc:
            return str(exc)
        return None

    def read_image(self, volume: VolumeRef, *, verify: bool = True) -> Volume:
        """:meth:`Project.read_image <napari_weakseg.store.project.Project.read_image>`."""
        record = self.get(volume)
        if verify:
            self.check_image_file(record)
        elif not record.image_path.exists():
            self.check_image_file(record)
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
        self.db.check_writable()
        record = self.get(volume)
        new_path = Path(new_path).resolve()
        if not new_path.exists():
            raise VolumeError(new_path, "file does not exist")
        digest = sha256_file(new_path)
        if digest != record.sha256:
            raise ImageChangedError(new_path, f"is not the image of volume {record.name!r} "
                                              "(checksum differs)")
        with self.db.write() as conn:
            conn.execute("UPDATE volumes SET image_path = ?, copied = 0 WHERE id = ?",
                         (str(new_path), record.id))
        return self.get(record.id)

    def check_image_file(self, record: VolumeRecord) -> None:
        path = record.image_path
        if not path.exists():
            raise ImageMissingError(path, f"image of volume {record.name!r} is missing (moved "
                                          "or deleted?); put it back or use "
                                          "Project.relocate_image")
        if sha256_file(path) != record.sha256:
            raise ImageChangedError(path, f"image of volume {record.name!r} changed since it "
                                          "was added (SHA-256 differs); annotations may no "
                                          "longer fit it")

    def record(self, row, tags: dict[str, str] | None = None) -> VolumeRecord:
        """The :class:`VolumeRecord` of a ``volumes`` row (its tags read unless given)."""
        if tags is None:
            tags = {r["key"]: r["value"] for r in self.db.query(
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

    def all_tags(self) -> dict[int, dict[str, str]]:
        out: dict[int, dict[str, str]] = {}
        for r in self.db.query("SELECT volume_id, key, value FROM volume_tags"):
            out.setdefault(r["volume_id"], {})[r["key"]] = r["value"]
        return out

    @staticmethod
    def check_tags(tags: Mapping[str, Any]) -> dict[str, str | None]:
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

    def folder(self, base: str, record: VolumeRecord) -> Path:
        """``ROOT/base/ID-NAME``: where the versions of one volume's files go."""
        return self.root / base / f"{record.id:05d}-{safe_name(record.name)}"
