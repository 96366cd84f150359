"""The project manifest: an SQLite database (stdlib ``sqlite3``) in WAL mode.

Schema versioning: ``PRAGMA user_version`` holds the number of migrations applied;
:data:`MIGRATIONS` ``[i]`` upgrades a database from version ``i`` to ``i + 1``. Opening a
project applies the missing migrations in one transaction; a database newer than this code
is refused (never touched). The tables are described in ``docs/store.md``.

Connections use a busy timeout so that several processes (the napari GUI, the CLI, a
training runner) can share one project: readers never block in WAL mode, writers take the
write lock with ``BEGIN IMMEDIATE`` and wait for each other.
"""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from .records import StoreError

MANIFEST_NAME = "project.sqlite"
BUSY_TIMEOUT_S = 60.0

_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE volumes (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    image_path  TEXT NOT NULL,          -- relative to the project when copied, else absolute
    copied      INTEGER NOT NULL CHECK (copied IN (0, 1)),
    sha256      TEXT NOT NULL,          -- of the image file's bytes
    size_bytes  INTEGER NOT NULL,
    shape       TEXT NOT NULL,          -- JSON [Z, Y, X]
    affine      TEXT NOT NULL,          -- JSON 4x4, voxel (i, j, k) -> world mm (RAS+)
    spacing     TEXT NOT NULL,          -- JSON [sz, sy, sx] in mm
    header      BLOB,                   -- the image's NIfTI header (binary block)
    header_kind TEXT,                   -- 'nifti1' | 'nifti2'
    dtype       TEXT NOT NULL,
    added_at    TEXT NOT NULL
);
CREATE TABLE volume_tags (
    volume_id INTEGER NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (volume_id, key)
);
CREATE INDEX volume_tags_key_value ON volume_tags (key, value);
CREATE TABLE annotations (
    id               INTEGER PRIMARY KEY,
    volume_id        INTEGER NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
    kind             TEXT NOT NULL CHECK (kind IN
                       ('scribble', 'coarse_pos', 'coarse_neg', 'partial', 'sparse', 'dense')),
    strategy         TEXT NOT NULL DEFAULT 'default',
    version          INTEGER NOT NULL CHECK (version >= 1),
    path             TEXT NOT NULL UNIQUE,  -- relative to the project; never overwritten
    sha256           TEXT NOT NULL,
    author           TEXT,
    created_at       TEXT NOT NULL,
    declared_classes TEXT,              -- JSON [class, ...] or NULL (nothing declared)
    declared_slices  TEXT,              -- JSON {"z": [class, ...]} or NULL
    restored_from    INTEGER,           -- version this one copies, if restored
    note             TEXT,
    counts           TEXT NOT NULL,     -- JSON {stored value: voxel count}, 0 excluded
    UNIQUE (volume_id, kind, strategy, version)
);
CREATE TABLE ground_truth (
    id         INTEGER PRIMARY KEY,
    volume_id  INTEGER NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
    version    INTEGER NOT NULL CHECK (version >= 1),
    path       TEXT NOT NULL UNIQUE,
    sha256     TEXT NOT NULL,
    source     TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (volume_id, version)
);
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    method      TEXT NOT NULL,
    config      TEXT NOT NULL DEFAULT '{}',   -- JSON
    device      TEXT,
    status      TEXT NOT NULL DEFAULT 'created' CHECK (status IN
                  ('created', 'running', 'completed', 'failed', 'cancelled')),
    metrics     TEXT NOT NULL DEFAULT '{}',   -- JSON
    out_dir     TEXT,                         -- checkpoints, progress log
    log_path    TEXT,
    error       TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    started_at  TEXT,
    finished_at TEXT
);
CREATE TABLE models (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    path       TEXT NOT NULL,                 -- model folder (config + weights + card)
    method     TEXT,
    run_id     INTEGER REFERENCES runs(id) ON DELETE SET NULL,
    config     TEXT NOT NULL DEFAULT '{}',
    metrics    TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
"""

#: ``MIGRATIONS[i]`` upgrades a database at ``user_version == i`` to ``i + 1``.
MIGRATIONS: list[str] = [_V1]
SCHEMA_VERSION = len(MIGRATIONS)


class ManifestError(StoreError):
    """The manifest cannot be used (missing, newer than this code, corrupt)."""


def now() -> str:
    """UTC timestamp, ISO 8601 with microseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def connect(path: str | Path, *, create: bool = False) -> sqlite3.Connection:
    """Open (or with ``create`` make) a manifest, in WAL mode, migrated to the current schema.

    The connection is in autocommit mode; use :func:`write_transaction` for writes.
    """
    path = Path(path)
    if not create and not path.exists():
        raise ManifestError(f"{path}: no project manifest here")
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a committed transaction survives power loss too, not only a killed process.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        raise ManifestError(f"{path}: not a usable project manifest ({exc})") from exc
    return conn


def migrate(conn: sqlite3.Connection, path: str | Path = "manifest") -> int:
    """Apply missing migrations in one transaction; return the schema version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise ManifestError(f"{path}: manifest schema version {version} is newer than this "
                            f"napari-weakseg understands ({SCHEMA_VERSION}); upgrade the "
                            "package")
    if version == SCHEMA_VERSION:
        return version
    with write_transaction(conn):
        # re-read under the write lock: another process may have migrated meanwhile
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for index in range(version, SCHEMA_VERSION):
            for statement in _statements(MIGRATIONS[index]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {index + 1}")
    return SCHEMA_VERSION


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit)."""
    statements, current = [], []
    for line in script.splitlines():
        current.append(line.split("--", 1)[0])
        text = "\n".join(current).strip()
        if text.endswith(";") and sqlite3.complete_statement(text):
            statements.append(text)
            current = []
    rest = "\n".join(current).strip()
    if rest:
        statements.append(rest)
    return statements


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection):
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error): one atomic write that waits
    (busy timeout) for other processes' writes instead of failing."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
