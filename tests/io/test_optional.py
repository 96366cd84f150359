"""Optional dependencies fail with one line naming the pip extra."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from napari_weakseg.errors import WeakSegError
from napari_weakseg.io.optional import MissingDependencyError, require


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py → ImportError
    with pytest.raises(MissingDependencyError) as info:
        require("h5py", "wsl4mis", "reading WSL4MIS .h5 files")
    message = str(info.value)
    assert "pip install 'napari-weakseg[wsl4mis]'" in message and "\n" not in message
    assert isinstance(info.value, WeakSegError) and isinstance(info.value, ImportError)


def test_wsl4mis_without_h5py(monkeypatch, tmp_path):
    from napari_weakseg.io.wsl4mis import read_wsl4mis_h5, write_wsl4mis_h5

    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(MissingDependencyError, match=r"napari-weakseg\[wsl4mis\]"):
        write_wsl4mis_h5(tmp_path / "a.h5", np.zeros((2, 3, 4), np.float32))
    with pytest.raises(MissingDependencyError, match="WSL4MIS"):
        read_wsl4mis_h5(tmp_path / "a.h5")
    assert not list(tmp_path.iterdir())


def test_weakseg_import_of_h5_without_h5py_is_one_line(monkeypatch, tmp_path, capsys):
    from napari_weakseg.cli import main

    (tmp_path / "vols").mkdir()
    (tmp_path / "vols" / "patient001_frame01.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    monkeypatch.setitem(sys.modules, "h5py", None)
    code = main(["import", str(tmp_path / "project"), str(tmp_path / "vols")])
    captured = capsys.readouterr()
    assert code != 0
    assert "napari-weakseg[wsl4mis]" in captured.out + captured.err
    assert "Traceback" not in captured.out + captured.err
