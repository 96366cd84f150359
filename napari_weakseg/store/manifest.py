"""The project manifest: an SQLite database (stdlib ``sqlite3``) in WAL mode (a rollback
journal on network file systems, where WAL does not work).

Schema versioning: ``PRAGMA user_version`` holds the number of migrations applied;
:data:`MIGRATIONS` ``[i]`` upgrades a database from version ``i`` to ``i + 1``. Opening a
project applies the missing migrations in one transaction; a database newer than this code
is refused (never touched). The tables are described in ``docs/store.md``.

Connections use a busy timeout so that several processes (the napari GUI, the CLI, a
training runner) can share one project: readers never block in WAL mode, writers take the
write lock with ``BEGIN IMMEDIATE`` and wait for each other. A read-only project (a
colleague's share) is opened with ``mode=ro`` and never changed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import tempfile
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


class CorruptManifestError(ManifestError):
    """The manifest file is damaged ("file is not a database", "disk image is malformed")."""


#: File system types on which SQLite's WAL mode is unsafe or does not work (its shared
#: memory index needs one host's memory): the manifest uses a rollback journal there.
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "drvfs", "ceph",
    "glusterfs", "lustre", "gpfs", "beegfs", "davfs", "fuse.sshfs", "fuse.glusterfs",
    "fuse.cephfs", "fuse.s3fs", "fuse.rclone", "fuse.gcsfuse", "fuse.davfs2",
})

# primary SQLite result codes (``sqlite3.Error.sqlite_errorcode & 0xFF``)
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 3, 5, 6, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN = 10, 11, 13, 14
_SQLITE_NOTADB = 26


def now() -> str:
    """UTC timestamp, ISO 8601 with microseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def database_error(exc: sqlite3.Error, path: str | Path,
                   project: str | Path | None = None) -> StoreError | None:
    """The user-facing error for an SQLite failure that is the user's situation (damaged
    manifest, disk full, read-only, I/O error, another process holding the lock), one line
    naming ``path`` (the manifest) or ``project``; ``None`` for anything else (a bug)."""
    from .records import ProjectDiskError, ReadOnlyProjectError

    code, text = _primary_code(exc), str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    lowered = text.lower()
    project = path if project is None else project
    if code in (_SQLITE_NOTADB, _SQLITE_CORRUPT) or "not a database" in lowered \
            or "malformed" in lowered:
        return CorruptManifestError(f"{path}: the project manifest is damaged ({text}); it was "
                                    "left untouched; restore it from a backup")
    if code == _SQLITE_FULL or "disk is full" in lowered:
        return ProjectDiskError(f"{project}: the disk is full ({text}); free some space and "
                                "run the command again (nothing was committed)")
    if code in (_SQLITE_READONLY, _SQLITE_PERM) or "readonly" in lowered \
            or "read-only" in lowered:
        return ReadOnlyProjectError(f"{project}: project is read-only ({text}); open a copy "
                                    "you can write to, or ask its owner for write access")
    if code == _SQLITE_IOERR or "disk i/o error" in lowered:
        return ProjectDiskError(f"{path}: disk I/O error on the project manifest ({text}); "
                                "check the disk or network share")
    if code == _SQLITE_CANTOPEN or "unable to open" in lowered:
        return ManifestError(f"{path}: cannot open the project manifest ({text}); check that "
                             "the folder exists and can be read")
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in lowered:
        return StoreError(f"{project}: the project stayed locked by another process for "
                          f"{BUSY_TIMEOUT_S:.0f} s ({text}); try again when it is done")
    return None


def filesystem_type(path: str | Path) -> str | None:
    """The type of the file system holding ``path`` (Linux ``/proc/self/mounts``), or
    ``None`` when unknown."""
    try:
        real = os.path.realpath(path)
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    best, fstype = "", None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[1])
        prefix = mount.rstrip("/") + "/"
        if (real == mount or real.startswith(prefix)) and len(mount) >= len(best):
            best, fstype = mount, parts[2]
    return fstype


def on_network_filesystem(path: str | Path) -> bool:
    return (filesystem_type(path) or "").lower() in NETWORK_FILESYSTEMS


def connect(path: str | Path, *, create: bool = False, read_only: bool = False,
            journal: str | None = None) -> sqlite3.Connection:
    """Open (or with ``create`` make) a manifest, migrated to the current schema.

    Journal: WAL, or a rollback journal (``DELETE``) on a network file system or when WAL
    cannot be enabled (``journal`` forces one). ``read_only``: opened with ``mode=ro``
    (``PRAGMA query_only``), never migrated or changed; when SQLite cannot open the WAL
    index (a folder that cannot be written) the file is read as ``immutable``, or — when an
    uncheckpointed ``-wal`` holds commits — from a private in-memory snapshot.

    The connection is in autocommit mode; use :func:`write_transaction` for writes.
    SQLite failures that are the user's situation raise :class:`StoreError` subclasses
    (:func:`database_error`).
    """
    path = Path(path)
    if not create and not path.exists():
        raise ManifestError(f"{path}: no project manifest here")
    conn = None
    try:
        if read_only:
            conn = _connect_read_only(path)
            _check_version(conn, path, read_only=True)
            return conn
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        _set_journal(conn, path, journal)
        # FULL: a committed transaction survives power loss too, not only a killed process.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, path)
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        error = database_error(exc, path) or ManifestError(
            f"{path}: not a usable project manifest ({exc})")
        raise error from exc
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    return conn


def _set_journal(conn: sqlite3.Connection, path: Path, journal: str | None) -> None:
    """WAL where it works; a rollback journal on network file systems or when WAL fails."""
    current = conn.execute("PRAGMA journal_mode").fetchone()[0].lower()
    if journal is not None:
        if current != journal.lower():
            conn.execute(f"PRAGMA journal_mode = {journal}")
        return
    if on_network_filesystem(path.parent):
        if current == "wal":  # e.g. a project copied onto a share (kept while others use it)
            conn.execute("PRAGMA busy_timeout = 1000")
            with contextlib.suppress(sqlite3.OperationalError):
                conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        return
    if current == "wal":
        return
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower()
    except sqlite3.OperationalError as exc:
        if _primary_code(exc) in (_SQLITE_BUSY, _SQLITE_LOCKED):
            raise
        mode = None
    if mode != "wal":  # WAL unsupported here (no shared memory, a network FS, …)
        conn.execute("PRAGMA journal_mode = DELETE")


def _connect_read_only(path: Path) -> sqlite3.Connection:
    uri = path.resolve().as_uri()

    def open_uri(query: str) -> sqlite3.Connection:
        conn = sqlite3.connect(uri + query, uri=True, timeout=BUSY_TIMEOUT_S,
                               isolation_level=None, check_same_thread=False)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # really open it
            conn.execute("PRAGMA query_only = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    try:
        return open_uri("?mode=ro")
    except sqlite3.OperationalError as exc:
        text = str(exc).lower()
        if _primary_code(exc) not in (_SQLITE_CANTOPEN, _SQLITE_READONLY) \
                and "unable to open" not in text and "readonly" not in text:
            raise
    # The WAL index (-shm) cannot be created: a folder we may not write to.
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return _snapshot(path, wal)  # immutable would ignore the commits in the -wal
    return open_uri("?mode=ro&immutable=1")


def _snapshot(path: Path, wal: Path) -> sqlite3.Connection:
    """An in-memory copy of the manifest with its ``-wal`` applied (read-only folders)."""
    with tempfile.TemporaryDirectory(prefix="weakseg-manifest-") as tmp:
        copy = Path(tmp) / MANIFEST_NAME
        shutil.copyfile(path, copy)
        shutil.copyfile(wal, f"{copy}-wal")
        source = sqlite3.connect(str(copy))
        memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        try:
            source.backup(memory)
        finally:
            source.close()
    memory.row_factory = sqlite3.Row
    memory.execute("PRAGMA query_only = ON")
    return memory


def _check_version(conn: sqlite3.Connection, path: Path, *, read_only: bool) -> int:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise ManifestError(f"{path}: manifest schema version {version} is newer than this "
                            f"napari-weakseg understands ({SCHEMA_VERSION}); upgrade the "
                            "package")
    if version < SCHEMA_VERSION and read_only:
        if version == 0:
            raise ManifestError(f"{path}: unfinished project (empty manifest); run "
                                "'weakseg init' on it with write access to finish it")
        raise ManifestError(f"{path}: manifest schema version {version} needs an upgrade to "
                            f"{SCHEMA_VERSION}; open the project once with write access")
    return version


def unfinished(path: str | Path) -> bool:
    """Whether the manifest at ``path`` is an unfinished creation (``weakseg init`` killed
    half-way): an empty file, or an SQLite database holding only (part of) our tables with no
    label schema and no row in any data table. Raises :class:`CorruptManifestError` for a
    file that is not a readable database (it must be left alone)."""
    path = Path(path)
    if path.stat().st_size == 0 and not Path(f"{path}-wal").exists():
        return True
    conn = None
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)  # replays a leftover -wal
        tables = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables - _TABLES:
            return False  # not (only) ours: someone else's database
        if "meta" in tables and conn.execute(
                "SELECT 1 FROM meta WHERE key = 'schema'").fetchone():
            return False
        for table in sorted(tables & _DATA_TABLES):
            if conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():
                return False
        return True
    except sqlite3.Error as exc:
        error = database_error(exc, path) or CorruptManifestError(
            f"{path}: not a readable project manifest ({exc}); it was left untouched")
        raise error from exc
    finally:
        if conn is not None:
            conn.close()


_DATA_TABLES = frozenset({"volumes", "volume_tags", "annotations", "ground_truth", "runs",
                          "models"})
_TABLES = _DATA_TABLES | {"meta"}


def migrate(conn: sqlite3.Connection, path: str | Path = "manifest") -> int:
    """Apply missing migrations in one transaction; return the schema version."""
    version = _check_version(conn, Path(path), read_only=False)
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
    (busy timeout) for other processes' writes instead of failing. A failed ``COMMIT`` (disk
    full, I/O error) is rolled back too; the original error is raised, never a rollback's."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
