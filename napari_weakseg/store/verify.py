"""Checking a project: every committed file exists and matches its checksum; orphan files
(of an interrupted write) are listed, and removed only when old enough, only when they are
regular files of this package's naming in the project's own folders (never through a link).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..io.atomic import sha256_file
from .connection import ManifestConnection
from .files import SUBFOLDERS, disk_errors, is_ours, is_own_regular_file
from .volumes import VolumeRepository

ORPHAN_MIN_AGE_S = 3600.0


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


def verify(db: ManifestConnection, volumes: VolumeRepository, *,
           check_images: bool = True) -> VerifyReport:
    """:meth:`Project.verify <napari_weakseg.store.project.Project.verify>`."""
    report = VerifyReport()
    referenced: set[Path] = set()
    for record in volumes.matching():
        if record.copied:
            referenced.add(record.image_path)
        if check_images:
            problem = volumes.image_problem(record)
            if problem:
                report.image_problems.append(problem)
    rows = db.query("SELECT a.path, a.sha256 FROM annotations a UNION ALL "
                    "SELECT g.path, g.sha256 FROM ground_truth g")
    for row in rows:
        path = db.root / row["path"]
        referenced.add(path)
        report.checked_files += 1
        if not path.exists():
            report.file_problems.append(f"{path}: missing")
        elif sha256_file(path) != row["sha256"]:
            report.file_problems.append(f"{path}: checksum differs from the manifest")
    for sub in SUBFOLDERS:
        report.orphans += sorted(p for p in own_files(db.root, sub)
                                 if p not in referenced and is_ours(p.name))
    return report


def own_files(root: Path, sub: str) -> list[Path]:
    """Regular files under ``ROOT/sub`` whose real path is that path: symbolic links
    (to files or folders, ``sub`` itself included) are neither listed nor followed."""
    real_root = os.path.realpath(root)
    base = os.path.join(real_root, sub)
    if os.path.islink(base) or not os.path.isdir(base) \
            or os.path.realpath(base) != base:
        return []
    out = []
    for folder, _dirs, names in os.walk(base, followlinks=False):
        for name in names:
            path = os.path.join(folder, name)
            if is_own_regular_file(path, real_root):
                out.append(root / os.path.relpath(path, real_root))
    return out


def remove_orphans(db: ManifestConnection, volumes: VolumeRepository, *,
                   min_age_s: float = ORPHAN_MIN_AGE_S) -> list[Path]:
    """:meth:`Project.remove_orphans <napari_weakseg.store.project.Project.remove_orphans>`."""
    db.check_writable()
    removed = []
    limit = time.time() - min_age_s
    real_root = os.path.realpath(db.root)
    for path in verify(db, volumes, check_images=False).orphans:
        try:
            # checked again right before deleting: never a link, never outside
            if not is_own_regular_file(str(path), real_root):
                continue
            if os.lstat(path).st_mtime <= limit:
                with disk_errors(db.root):
                    os.unlink(path)
                removed.append(path)
        except FileNotFoundError:
            pass
    return removed
