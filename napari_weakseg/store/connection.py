"""The open manifest of one project: one SQLite connection that threads share under a lock,
queries, ``BEGIN IMMEDIATE`` writes, the read-only guard, and SQLite failures that are the
user's situation turned into one-line errors (the schema, migrations and journal mode are
:mod:`.manifest`'s)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import manifest
from .records import ReadOnlyProjectError, StoreError


class ManifestConnection:
    """The connection of an open project (``conn`` from :func:`manifest.connect`)."""

    def __init__(self, root: Path, conn, *, read_only: bool = False):
        self.root = root
        self.conn = conn
        self.lock = threading.RLock()
        #: opened read-only: every write raises :class:`ReadOnlyProjectError`
        self.read_only = read_only

    @property
    def manifest_path(self) -> Path:
        return self.root / manifest.MANIFEST_NAME

    def close(self) -> None:
        with self.lock:
            if self.conn is not None:
                self.conn.close()
                self.conn = None

    def meta(self, key: str) -> str | None:
        row = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0][0] if row else None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list:
        with self.lock:
            if self.conn is None:
                raise StoreError(f"{self.root}: project is closed")
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                error = self.database_error(exc)
                if error is None:
                    raise
                raise error from exc

    @contextlib.contextmanager
    def write(self):
        """One ``BEGIN IMMEDIATE`` transaction, holding the thread lock."""
        with self.lock:
            if self.conn is None:
                raise StoreError(f"{self.root}: project is closed")
            self.check_writable()
            try:
                with manifest.write_transaction(self.conn) as conn:
                    yield conn
            except sqlite3.Error as exc:
                error = self.database_error(exc)
                if error is None:
                    raise
                raise error from exc

    def database_error(self, exc: sqlite3.Error) -> StoreError | None:
        """The one-line error for an SQLite failure that is the user's situation (damaged
        manifest, disk full, read-only, I/O error); ``None`` for a bug."""
        return manifest.database_error(exc, self.manifest_path, self.root)

    def check_writable(self) -> None:
        """Raise :class:`ReadOnlyProjectError` when the project was opened read-only."""
        if self.read_only:
            raise ReadOnlyProjectError(f"{self.root}: project is read-only (opened read-only, "
                                       "or its folder or manifest cannot be written); nothing "
                                       "was written")
