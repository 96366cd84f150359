"""The files of a project folder: the names this package gives them, atomic copies, the
disk's refusals as one-line errors, and which files are the project's own (the only ones
orphan removal may ever touch: regular files of our naming, reached through no link).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import time
import uuid
from pathlib import Path

from ..errors import WeakSegError
from ..io.atomic import atomic_path
from .records import ProjectDiskError, ProjectExistsError, ReadOnlyProjectError

#: the project's own subfolders (copied images, annotation and ground-truth versions)
SUBFOLDERS = ("images", "annotations", "ground_truth")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
# names this package gives files in the subfolders: NAME.TOKEN.nii[.gz] (copies, versions)
# and the temporary names of atomic writes (".NAME.RANDOM.tmp[.nii[.gz]]")
_OUR_FILE = re.compile(r"\.\d{8}T\d{6}-[0-9a-f]{12}\.nii(\.gz)?$")
_OUR_TEMP = re.compile(r"^\..+\.\d{8}T\d{6}-[0-9a-f]{12}\.nii(\.gz)?\.[A-Za-z0-9_]+"
                       r"\.tmp(\.nii(\.gz)?)?$")


def token() -> str:
    """Unique, roughly chronological file-name token."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:12]


def safe_name(name: str) -> str:
    """``name`` usable in a file name (other characters become ``_``)."""
    return _SAFE.sub("_", name).strip("._") or "volume"


def atomic_copy(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` atomically (temporary file, fsync, rename); return the
    SHA-256 of the bytes copied."""
    digest = hashlib.sha256()
    with atomic_path(target) as tmp, open(tmp, "wb") as out, open(source, "rb") as src:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def is_ours(name: str) -> bool:
    """A file name this package gives (a copy or version, or an atomic write's temporary)."""
    return bool(_OUR_FILE.search(name) or _OUR_TEMP.match(name))


def is_own_regular_file(path: str, real_root: str) -> bool:
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
def disk_errors(root: Path):
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


def link_no_replace(tmp: Path, target: Path, root: Path) -> None:
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


def unlink_quietly(path: Path | None) -> None:
    if path is None:
        return
    try:
        path.unlink()
    except FileNotFoundError:
        pass
