"""Never destroy a user's files: orphans behind symlinks, read-only projects, network file
systems, disk and manifest failures as one-line errors, interrupted ``init``, empty images."""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import time

import nibabel as nib
import numpy as np
import pytest

from napari_weakseg.errors import DiskError, ProjectError
from napari_weakseg.io import VolumeError
from napari_weakseg.io.nifti import Volume
from napari_weakseg.store import (CorruptManifestError, ManifestError, Project,
                                  ProjectDiskError, ProjectExistsError, ReadOnlyProjectError,
                                  StoreError, manifest)
from napari_weakseg.store import annotations as annotations_module
from napari_weakseg.store import project as project_module
from napari_weakseg.store import volumes as volumes_module
from tests.store.helpers import files_under, tiny_case, write_case

TOKEN = "20250101T000000-0123456789ab"
OLD = time.time() - 7200  # older than any orphan age limit


@pytest.fixture
def case():
    return tiny_case(0)


@pytest.fixture
def filled(tmp_path, case):
    """A closed project with one copied volume, an annotation and ground truth."""
    paths = write_case(tmp_path / "src", case)
    with Project.create(tmp_path / "proj") as project:
        volume = project.add_volume(paths["image"], tags={"split": "train"})
        project.save_annotation(volume, "scribble", case.scribble, author="me")
        project.set_ground_truth(volume, case.ground_truth)
    return tmp_path / "proj"


def _snapshot(folder):
    return {p: p.read_bytes() for p in files_under(folder)}


def _age(*paths):
    for path in paths:
        os.utime(path, (OLD, OLD), follow_symlinks=False)


# -- 1. orphans: never through a symlink, never outside the project ------------------------------
def test_remove_orphans_never_touches_files_behind_symlinks(tmp_path, case):
    shared = tmp_path / "shared-images"  # e.g. another study's folder, linked as images/
    shared.mkdir()
    outside = {
        shared / "README": b"do not delete",
        shared / "patient001.nii.gz": b"another study's image",
        shared / f"other.{TOKEN}.nii.gz": b"another project's copied image",
        shared / f".other.{TOKEN}.nii.gz.abcd1234.tmp": b"another project's temporary",
    }
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside[elsewhere / f"scribble.default.{TOKEN}.nii.gz"] = b"linked file's target"
    outside[elsewhere / f"gt.{TOKEN}.nii.gz"] = b"in a linked sub-folder"
    for path, data in outside.items():
        path.write_bytes(data)
    _age(*outside)

    paths = write_case(tmp_path / "src", case)
    project = Project.create(tmp_path / "proj")
    (project.root / "images").rmdir()
    (project.root / "images").symlink_to(shared, target_is_directory=True)
    volume = project.add_volume(paths["image"], copy=False)
    project.save_annotation(volume, "scribble", case.scribble)
    folder = next((project.root / "annotations").iterdir())
    links = [folder / f"scribble.default.{TOKEN[:-1]}f.nii.gz",
             project.root / "ground_truth" / "00009-linked"]
    links[0].symlink_to(elsewhere / f"scribble.default.{TOKEN}.nii.gz")
    links[1].symlink_to(elsewhere, target_is_directory=True)
    real_orphan = folder / f".scribble.default.{TOKEN}.nii.gz.k3j_x9q1.tmp.nii.gz"
    real_orphan.write_bytes(b"half a file")
    user_note = folder / "notes.txt"  # not a name this package gives: not an orphan
    user_note.write_bytes(b"mine")
    _age(real_orphan, user_note, *links)

    assert project.verify().orphans == [real_orphan]
    assert project.remove_orphans(min_age_s=0) == [real_orphan]
    for path, data in outside.items():
        assert path.read_bytes() == data, path
    assert all(link.is_symlink() for link in links)
    assert user_note.read_bytes() == b"mine"
    assert project.annotation(volume, "scribble").data.shape == case.scribble.shape
    project.close()


# -- 2. read-only projects ---------------------------------------------------------------------
def _set_writable(root, writable: bool):
    for folder, dirs, names in os.walk(root):
        for name in names + dirs + [""]:
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                continue
            bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
            os.chmod(path, (mode | stat.S_IWUSR) if writable else (mode & ~bits))


def _check_reads_and_refused_writes(project, case):
    assert project.read_only
    volume = project.volume("tiny000")
    assert np.allclose(project.read_image(volume).data, case.image)
    assert np.array_equal(project.annotation(volume, "scribble").data, case.scribble)
    assert np.array_equal(project.ground_truth(volume), case.ground_truth)
    assert project.verify().ok
    writes = [lambda: project.save_annotation(volume, "scribble", case.scribble),
              lambda: project.set_ground_truth(volume, case.ground_truth),
              lambda: project.set_tags(volume, split="val"),
              lambda: project.add_volume(volume.image_path, name="again"),
              lambda: project.create_run("pce"),
              lambda: project.register_model("m", "models/m"),
              lambda: project.restore_annotation(volume, "scribble", 1),
              lambda: project.remove_orphans(min_age_s=0)]
    for write in writes:
        with pytest.raises(ReadOnlyProjectError) as info:
            write()
        message = str(info.value)
        assert message.startswith(f"{project.root}: project is read-only") and "\n" not in message
        assert isinstance(info.value, ProjectError)


def test_a_read_only_folder_can_be_read_and_listed(filled, case, capsys):
    from napari_weakseg.cli import main

    before = _snapshot(filled)
    _set_writable(filled, False)
    try:
        if os.access(filled, os.W_OK) or os.access(filled / "project.sqlite", os.W_OK):
            pytest.skip("running as a user who can write despite chmod -w (root)")
        with Project.open(filled) as project:
            _check_reads_and_refused_writes(project, case)
        assert main(["list", str(filled), "--verify"]) == 0
        out = capsys.readouterr().out
        assert "tiny000" in out and "scribble v1" in out and "image ok" in out
        assert main(["add", str(filled), str(filled / "src.nii.gz")]) == 1
        err = capsys.readouterr().err
        assert "project is read-only" in err and len(err.strip().splitlines()) == 1
    finally:
        _set_writable(filled, True)
    assert _snapshot(filled) == before


def test_a_project_opened_read_only_is_never_changed(filled, case):
    before = _snapshot(filled)
    with Project.open(filled, read_only=True) as project:
        _check_reads_and_refused_writes(project, case)
    after = _snapshot(filled)
    # SQLite may leave its (empty) WAL index files beside the manifest; nothing else changes
    assert {p: b for p, b in after.items() if not p.name.endswith(("-wal", "-shm"))} == before


def test_an_unwritable_folder_is_opened_read_only(filled, case, capsys, monkeypatch):
    from napari_weakseg.cli import main

    real_access = os.access
    monkeypatch.setattr(project_module.os, "access",
                        lambda path, mode, **kw: False if mode & os.W_OK
                        else real_access(path, mode, **kw))
    with Project.open(filled) as project:
        _check_reads_and_refused_writes(project, case)
    assert main(["list", str(filled)]) == 0
    assert "tiny000" in capsys.readouterr().out
    assert main(["annotations", str(filled), "tiny000", "--kind", "scribble",
                 "--restore", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert f"{filled}: project is read-only" in err and len(err.splitlines()) == 1
    assert main(["import", str(filled), str(filled.parent / "src")]) == 1
    captured = capsys.readouterr()
    assert f"{filled}: project is read-only" in captured.err
    assert len((captured.out + captured.err).strip().splitlines()) == 1


def _refuse_mode_ro(monkeypatch):
    """SQLite cannot create the WAL index (-shm) in a read-only folder: 'unable to open'."""
    real_connect = sqlite3.connect

    def connect(database, *args, **kwargs):
        if str(database).endswith("?mode=ro"):
            raise sqlite3.OperationalError("unable to open database file")
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(manifest.sqlite3, "connect", connect)


def test_read_only_without_a_wal_index_reads_the_file_immutable(filled, case, monkeypatch):
    _refuse_mode_ro(monkeypatch)
    with Project.open(filled, read_only=True) as project:
        _check_reads_and_refused_writes(project, case)


def test_read_only_without_a_wal_index_still_sees_commits_in_the_wal(filled, case,
                                                                     monkeypatch):
    writer = sqlite3.connect(filled / "project.sqlite")  # another process, not checkpointed
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("UPDATE volume_tags SET value = 'test' WHERE key = 'split'")
    writer.commit()
    assert os.path.getsize(f"{filled / 'project.sqlite'}-wal") > 0
    _refuse_mode_ro(monkeypatch)
    with Project.open(filled, read_only=True) as project:
        assert project.volume("tiny000").split == "test"  # immutable=1 would say 'train'
        _check_reads_and_refused_writes(project, case)
    writer.close()


# -- 3. WAL does not work on network file systems ----------------------------------------------
def _journal_mode(root):
    conn = sqlite3.connect(root / "project.sqlite")
    try:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()


def _use_the_project(root, case, tmp_path):
    paths = write_case(tmp_path / "src", case)
    with Project.open(root) as project:
        volume = project.add_volume(paths["image"])
        project.save_annotation(volume, "scribble", case.scribble)
    with Project.open(root) as project:
        assert project.annotation(volume.name, "scribble").version == 1


def test_a_manifest_whose_wal_cannot_be_enabled_uses_a_rollback_journal(tmp_path, case,
                                                                        monkeypatch):
    class NoWal(sqlite3.Connection):
        def execute(self, sql, *args):
            if "journal_mode = wal" in sql.lower():
                raise sqlite3.OperationalError("disk I/O error")  # as on many NFS mounts
            return super().execute(sql, *args)

    real_connect = sqlite3.connect
    monkeypatch.setattr(manifest.sqlite3, "connect",
                        lambda *a, **kw: real_connect(*a, factory=NoWal, **kw))
    Project.create(tmp_path / "p").close()
    _use_the_project(tmp_path / "p", case, tmp_path)
    monkeypatch.undo()
    assert _journal_mode(tmp_path / "p") == "delete"


def test_projects_on_a_network_file_system_use_a_rollback_journal(tmp_path, case, filled,
                                                                  monkeypatch):
    assert _journal_mode(filled) == "wal"
    monkeypatch.setattr(manifest, "filesystem_type", lambda path: "nfs4")
    Project.create(tmp_path / "p").close()
    assert _journal_mode(tmp_path / "p") == "delete"
    _use_the_project(tmp_path / "p", case, tmp_path)
    Project.open(filled).close()  # a WAL project copied onto a share is switched
    assert _journal_mode(filled) == "delete"


def test_the_mount_table_gives_the_file_system_type(tmp_path):
    assert manifest.filesystem_type(tmp_path) not in (None, "")
    assert not manifest.on_network_filesystem(tmp_path) or \
        manifest.filesystem_type(tmp_path) in manifest.NETWORK_FILESYSTEMS


# -- 4. disk and manifest failures: one line naming the project --------------------------------
@pytest.mark.parametrize("where", ["whole-file", "after-header", "table-pages"])
def test_a_corrupt_manifest_is_one_line_naming_it(filled, capsys, where):
    from napari_weakseg.cli import main

    path = filled / "project.sqlite"
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    roots = [r[0] for r in conn.execute("SELECT rootpage FROM sqlite_master WHERE name IN "
                                        "('volumes', 'annotations')")]
    conn.close()
    size = path.stat().st_size
    rng = np.random.default_rng(7)
    # whole file: "file is not a database"; after the 100-byte header or only the volumes
    # and annotations pages: the project opens, then "database disk image is malformed"
    spans = {"whole-file": [(0, size)], "after-header": [(100, size - 100)],
             "table-pages": [((root - 1) * page_size, page_size) for root in roots]}[where]
    with open(path, "r+b") as handle:
        for start, length in spans:
            handle.seek(start)
            handle.write(rng.bytes(length))
    before = path.read_bytes()
    with pytest.raises(ManifestError) as info:
        with Project.open(filled) as project:
            project.volumes()
            project.annotations()
            project.verify()
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, CorruptManifestError)
    assert main(["list", str(filled), "--verify"]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and str(path) in err
    assert path.read_bytes() == before  # left untouched


class _FailingConnection(sqlite3.Connection):
    """Raises ``FAIL`` on the first INSERT (``sqlite3`` errors made by Python carry no
    result code: the translation must work from the message too)."""

    FAIL: Exception | None = None

    def execute(self, sql, *args):
        if sql.lstrip().upper().startswith("INSERT") and type(self).FAIL is not None:
            raise type(self).FAIL
        return super().execute(sql, *args)


@pytest.mark.parametrize("failure, kind, text", [
    (sqlite3.OperationalError("database or disk is full"), ProjectDiskError, "disk is full"),
    (sqlite3.OperationalError("disk I/O error"), ProjectDiskError, "I/O error"),
    (sqlite3.OperationalError("attempt to write a readonly database"), ReadOnlyProjectError,
     "project is read-only"),
    (sqlite3.DatabaseError("database disk image is malformed"), CorruptManifestError,
     "damaged"),
])
def test_manifest_write_failures_are_one_line_errors(tmp_path, case, monkeypatch, failure,
                                                     kind, text):
    paths = write_case(tmp_path / "src", case)
    real_connect = sqlite3.connect
    monkeypatch.setattr(manifest.sqlite3, "connect",
                        lambda *a, **kw: real_connect(*a, factory=_FailingConnection, **kw))
    monkeypatch.setattr(_FailingConnection, "FAIL", None)
    with Project.create(tmp_path / "p") as project:
        volume = project.add_volume(paths["image"])
        monkeypatch.setattr(_FailingConnection, "FAIL", failure)
        with pytest.raises(kind) as info:
            project.save_annotation(volume, "scribble", case.scribble)
        message = str(info.value)
        assert text in message and "\n" not in message
        assert str(project.root) in message or str(project.manifest_path) in message
        assert isinstance(info.value, (ProjectError, DiskError))
        monkeypatch.setattr(_FailingConnection, "FAIL", None)
        assert project.annotations() == []  # nothing committed, the project still works
        assert project.save_annotation(volume, "scribble", case.scribble).version == 1


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EIO])
def test_a_disk_refusing_a_file_is_a_one_line_error(project_with_volume, case, monkeypatch,
                                                    code):
    project, volume = project_with_volume

    def full(path, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(annotations_module, "write_labels", full)
    with pytest.raises((ProjectDiskError, ReadOnlyProjectError)) as info:
        project.save_annotation(volume, "scribble", case.scribble)
    message = str(info.value)
    assert message.startswith(str(project.root)) and "\n" not in message
    assert isinstance(info.value, ProjectDiskError) == (code != errno.EROFS)
    assert project.annotations() == []


@pytest.fixture
def project_with_volume(tmp_path, case):
    paths = write_case(tmp_path / "src", case)
    with Project.create(tmp_path / "proj") as project:
        yield project, project.add_volume(paths["image"])


def _old_sqlite_messages(monkeypatch):
    """SQLite before 3.8.2 words a clash 'column name is not unique', not 'UNIQUE
    constraint failed: volumes.name': clash detection must not depend on the text."""
    class OldWording(sqlite3.Connection):
        def execute(self, sql, *args):
            try:
                return super().execute(sql, *args)
            except sqlite3.IntegrityError:
                raise sqlite3.IntegrityError("column name is not unique") from None

    real_connect = sqlite3.connect
    monkeypatch.setattr(manifest.sqlite3, "connect",
                        lambda *a, **kw: real_connect(*a, factory=OldWording, **kw))


def test_name_clashes_are_detected_without_reading_sqlite_messages(tmp_path, case,
                                                                   monkeypatch):
    paths = write_case(tmp_path / "src", case)
    _old_sqlite_messages(monkeypatch)
    project = Project.create(tmp_path / "p")
    other = Project.open(tmp_path / "p")  # e.g. the CLI while the GUI adds the same image
    real_read = volumes_module.read_volume
    raced = []

    def read_volume(path, **kwargs):  # the other process adds the name meanwhile
        if not raced:
            raced.append(path)
            other.add_volume(paths["image"], copy=False)
        return real_read(path, **kwargs)

    monkeypatch.setattr(volumes_module, "read_volume", read_volume)
    with pytest.raises(StoreError, match="a volume named 'tiny000' already exists"):
        project.add_volume(paths["image"])
    assert files_under(project.root / "images") == set()  # the copy was removed
    project.register_model("pce", "models/pce")
    with pytest.raises(StoreError, match="a model named 'pce' exists"):
        other.register_model("pce", "elsewhere")
    assert [m.path.name for m in project.models()] == ["pce"]
    project.close()
    other.close()


# -- 5. init: atomic, finishes an interrupted creation, never replaces a project ----------------
def _init(capsys, path):
    from napari_weakseg.cli import main

    code = main(["init", str(path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("state", ["empty-file", "tables-only", "subfolders-only",
                                   "leftover-temporary"])
def test_init_finishes_an_interrupted_creation(tmp_path, capsys, state):
    root = tmp_path / "p"
    root.mkdir()
    for sub in ("images", "annotations"):
        (root / sub).mkdir()
    if state == "empty-file":
        (root / "project.sqlite").write_bytes(b"")
    elif state == "tables-only":  # killed after the schema migration, before the meta rows
        manifest.connect(root / "project.sqlite", create=True).close()
    elif state == "leftover-temporary":  # killed while building the manifest atomically
        (root / ".project.sqlite.0123456789ab.tmp").write_bytes(b"SQLite format 3\0partial")
    with pytest.raises(ManifestError, match="weakseg init") if state in (
            "empty-file", "tables-only") else pytest.raises(ProjectError):
        Project.open(root)
    code, out = _init(capsys, root)
    assert code == 0, out
    assert ("finished the interrupted project" if state in ("empty-file", "tables-only")
            else "created project") in out
    with Project.open(root) as project:
        assert project.schema.names == ["background", "RV", "MYO", "LV"]
        assert project.volumes() == []
    assert {p.name for p in root.iterdir() if not p.name.startswith(".")} >= {
        "project.sqlite", "images", "annotations", "ground_truth"}


def test_init_never_replaces_a_project_or_another_database(tmp_path, capsys, filled):
    code, out = _init(capsys, filled)
    assert code == 1 and "already exists" in out
    # a real project whose schema row went missing still holds volumes: refused, untouched
    conn = sqlite3.connect(filled / "project.sqlite")
    conn.execute("DELETE FROM meta WHERE key = 'schema'")
    conn.commit()
    conn.close()
    before = _snapshot(filled)
    code, out = _init(capsys, filled)
    assert code == 1 and "already exists" in out and len(out.strip().splitlines()) == 1
    with pytest.raises(ProjectExistsError):
        Project.create(filled)
    assert _snapshot(filled) == before
    # someone else's database, and a damaged file, under the manifest's name
    other = tmp_path / "other"
    other.mkdir()
    conn = sqlite3.connect(other / "project.sqlite")
    conn.execute("CREATE TABLE patients (name TEXT)")
    conn.commit()
    conn.close()
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "project.sqlite").write_bytes(np.random.default_rng(1).bytes(8192))
    for root in (other, damaged):
        before = _snapshot(root)
        code, out = _init(capsys, root)
        assert code == 1 and str(root) in out and len(out.strip().splitlines()) == 1
        assert "Traceback" not in out
        assert _snapshot(root) == before


def test_an_interrupted_init_leaves_no_manifest(tmp_path, monkeypatch):
    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # stands for a kill between building and linking

    monkeypatch.setattr(project_module, "_link_no_replace", killed)
    with pytest.raises(KeyboardInterrupt):
        Project.create(tmp_path / "p")
    assert not (tmp_path / "p" / "project.sqlite").exists()
    monkeypatch.undo()
    Project.create(tmp_path / "p").close()
    Project.open(tmp_path / "p").close()


# -- 7. zero-size volumes ----------------------------------------------------------------------
def test_a_zero_size_image_is_refused_naming_the_file(project_with_volume, tmp_path):
    project, _ = project_with_volume
    path = tmp_path / "empty.nii.gz"
    nib.Nifti1Image(np.zeros((40, 40, 0), np.float32), np.diag([4.0, 4.0, 10.0, 1.0])
                    ).to_filename(path)
    before = files_under(project.root)
    with pytest.raises(VolumeError, match="empty.nii.gz"):
        project.add_volume(path)
    assert [v.name for v in project.volumes()] == ["tiny000"]
    assert files_under(project.root) - before <= {project.root / "project.sqlite-wal",
                                                  project.root / "project.sqlite-shm"}


@pytest.mark.parametrize("copy", [True, False])
def test_the_store_refuses_a_zero_size_array_even_if_a_reader_returns_one(
        project_with_volume, tmp_path, monkeypatch, copy):
    project, volume = project_with_volume
    real_read = volumes_module.read_volume

    def lenient_read(path, **kwargs):  # a reader that lets an empty image through
        image = real_read(path, **kwargs)
        geometry = image.geometry
        from dataclasses import replace
        return Volume(np.zeros((0, 40, 40), np.float32), replace(geometry, shape=(0, 40, 40)))

    monkeypatch.setattr(volumes_module, "read_volume", lenient_read)
    source = tmp_path / "src" / "tiny000.nii.gz"
    with pytest.raises(VolumeError, match=r"tiny000.nii.gz: has a zero-size dimension"):
        project.add_volume(source, name="empty", copy=copy)
    assert [v.name for v in project.volumes()] == [volume.name]
    assert len(files_under(project.root / "images")) == 1
