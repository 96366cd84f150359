"""Atomic writes: portable fsyncs, permissions from the umask without touching it, JSON/CSV
written whole or not at all."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from napari_weakseg.io import atomic
from napari_weakseg.io.atomic import (atomic_path, fsync_dir, fsync_file, write_bytes_atomic,
                                      write_json_atomic, write_text_atomic)

REPO = Path(__file__).resolve().parents[2]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_import_and_writes_never_touch_the_umask(tmp_path):
    """os.umask is process-wide (a race with other threads): neither the import nor a write
    may call it; the finished file still gets 0o666 & ~umask."""
    code = f"""
import os, stat
os.umask(0o027)
real = os.umask
def refuse(*args):
    raise AssertionError("os.umask called")
os.umask = refuse
from napari_weakseg.io.atomic import write_bytes_atomic, write_json_atomic
write_bytes_atomic({str(tmp_path / 'a.bin')!r}, b"x")
write_json_atomic({str(tmp_path / 'b.json')!r}, {{"k": 1}})
os.umask = real
print(oct(stat.S_IMODE(os.stat({str(tmp_path / 'a.bin')!r}).st_mode)),
      oct(stat.S_IMODE(os.stat({str(tmp_path / 'b.json')!r}).st_mode)), oct(os.umask(0o022)))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0o640", "0o640", "0o27"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_file_mode_follows_the_current_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        path = write_bytes_atomic(tmp_path / "a.bin", b"1")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.umask(0o077)
        path = write_text_atomic(tmp_path / "b.txt", "2")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(previous)


def test_fsync_goes_through_a_handle_open_for_writing(tmp_path, monkeypatch):
    """Windows refuses fsync on a read-only handle (EBADF): the file is flushed through a
    read-write one."""
    fcntl = pytest.importorskip("fcntl")
    modes = []
    real_fsync = os.fsync

    def spy(fd):
        modes.append(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE)
        return real_fsync(fd)

    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    monkeypatch.setattr(os, "fsync", spy)
    fsync_file(path)
    assert modes == [os.O_RDWR]


def test_directory_fsync_skipped_on_windows(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(atomic.os, "name", "nt")
    monkeypatch.setattr(atomic.os, "open", lambda *a, **k: calls.append(a) or 1 / 0)
    fsync_dir(tmp_path)
    assert calls == []


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOTSUP, errno.EBADF])
def test_directory_fsync_unsupported_is_not_an_error(tmp_path, monkeypatch, code):
    def refuse(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic.os, "fsync", refuse)
    fsync_dir(tmp_path)  # no exception


def test_directory_fsync_unsupported_on_open_is_not_an_error(tmp_path, monkeypatch):
    def refuse(path, flags, *args):
        raise PermissionError(errno.EACCES, "directories cannot be opened here")

    monkeypatch.setattr(atomic.os, "open", refuse)
    fsync_dir(tmp_path)


def test_real_io_errors_still_raise(tmp_path, monkeypatch):
    def broken(fd):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(atomic.os, "fsync", broken)
    with pytest.raises(OSError) as info:
        fsync_dir(tmp_path)
    assert info.value.errno == errno.EIO
    with pytest.raises(OSError):
        write_bytes_atomic(tmp_path / "y.bin", b"data")
    assert not (tmp_path / "y.bin").exists() and _leftovers(tmp_path) == []


def test_json_and_text_round_trip_and_replace_whole(tmp_path):
    target = write_json_atomic(tmp_path / "run.json", {"a": [1, 2], "b": "é"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": [1, 2], "b": "é"}
    assert target.read_text(encoding="utf-8").endswith("\n")
    write_text_atomic(target, "replaced\n")
    assert target.read_text() == "replaced\n"
    assert _leftovers(tmp_path) == []


def test_failure_leaves_target_and_folder_untouched(tmp_path):
    target = write_text_atomic(tmp_path / "metrics.json", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and _leftovers(tmp_path) == []
    with pytest.raises(TypeError):
        write_json_atomic(target, {"x": object()})
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


def test_temporary_names_are_hidden_unique_and_keep_the_suffix(tmp_path):
    seen = set()
    for _ in range(20):
        with atomic_path(tmp_path / "a.nii.gz", suffix=".tmp.nii.gz") as tmp:
            assert tmp.name.startswith(".a.nii.gz.") and tmp.name.endswith(".tmp.nii.gz")
            assert tmp.exists() and tmp.stat().st_size == 0
            seen.add(tmp.name)
            tmp.write_bytes(b"1")
    assert len(seen) == 20


def test_metrics_json_and_csv_are_written_atomically(tmp_path, monkeypatch):
    from napari_weakseg.evaluation import metrics

    results = {"case": metrics.evaluate_volume([[0, 1], [1, 1]], [[0, 1], [0, 1]])}
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(atomic.os, "replace",
                        lambda a, b: replaced.append(Path(b).name) or real_replace(a, b))
    metrics.write_json(tmp_path / "metrics.json", results)
    metrics.write_csv(tmp_path / "metrics.csv", results)
    assert replaced == ["metrics.json", "metrics.csv"]
    assert json.loads((tmp_path / "metrics.json").read_text())["volumes"]["case"]["1"]
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0].startswith("volume,class")


def test_run_json_is_written_atomically(tmp_path, monkeypatch):
    from napari_weakseg.training.config import TrainConfig
    from napari_weakseg.training.runner import TrainingRun

    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(atomic.os, "replace",
                        lambda a, b: replaced.append(Path(b).name) or real_replace(a, b))
    TrainingRun(tmp_path / "run", TrainConfig(), {"kind": "synthetic"})
    assert replaced == ["run.json"]
    spec = json.loads((tmp_path / "run" / "run.json").read_text())
    assert spec["data"] == {"kind": "synthetic"} and "config" in spec
