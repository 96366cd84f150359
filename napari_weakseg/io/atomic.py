"""Atomic file writes: a file appears complete under its final name or not at all.

Every writer of the project goes through :func:`atomic_path`: write into a temporary file
in the target's folder, fsync it, rename it over the target, fsync the folder.

Portable (POSIX and Windows): the data is flushed through a handle opened for writing
(Windows' ``_commit`` refuses a read-only one); the folder is fsynced only where the
platform can (POSIX opens directories; Windows cannot, and NTFS journals the rename); the
temporary file is created with mode ``0o666`` so the process umask gives the finished file
its usual permissions, without reading (that is, changing) the process-wide umask.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_CREATE_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
                 | getattr(os, "O_CLOEXEC", 0))
# directory fsync is unsupported on some file systems / platforms: not an error there
_DIR_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES, errno.EPERM,
                          getattr(errno, "EOPNOTSUPP", errno.ENOTSUP), errno.EISDIR}


def _create_temporary(folder: Path, name: str, suffix: str) -> Path:
    """Create a new empty file ``.NAME.RANDOM<suffix>`` in ``folder`` (mode 0o666 & ~umask,
    like any file the process creates) and return its path."""
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(tmp, _CREATE_FLAGS, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no unused temporary name", str(folder))


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success make it ``target``.

    ``suffix`` ends the temporary name (writers that pick the format from the name, such as
    nibabel's ``.nii.gz``, need it). On an exception the temporary file is removed and the
    target is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(target.parent, target.name, suffix)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically; returns the path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def json_default(value):
    """``json.dumps(default=...)`` for what the project writes: numpy scalars and arrays
    become plain numbers and lists, paths strings."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    import hashlib

    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_text_atomic(target: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``target`` atomically (``\\n`` line ends on every platform)."""
    return write_bytes_atomic(target, text.encode(encoding))


def write_json_atomic(target: str | os.PathLike, data: Any, *, indent: int | None = 2,
                      **dumps_options: Any) -> Path:
    """``json.dumps(data)`` (plus a final newline) written to ``target`` atomically."""
    return write_text_atomic(target, json.dumps(data, indent=indent, **dumps_options) + "\n")


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a file's data to disk through a handle opened for writing (required on
    Windows, where fsync on a read-only handle fails)."""
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename into it) where the platform supports it: a no-op
    on Windows (directories cannot be opened; NTFS journals metadata) and on file systems
    that refuse to fsync a directory."""
    if os.name == "nt":
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if exc.errno in _DIR_FSYNC_UNSUPPORTED:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


__all__ = ["atomic_path", "fsync_dir", "fsync_file", "json_default", "sha256_file",
           "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]
