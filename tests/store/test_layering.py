"""The store, weak-label and I/O modules import neither Qt, napari nor torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODULES = ["napari_weakseg.store", "napari_weakseg.store.importers",
           "napari_weakseg.store.autosave",
           "napari_weakseg.weak.encoding", "napari_weakseg.weak.targets",
           "napari_weakseg.weak.simulate", "napari_weakseg.io.wsl4mis",
           "napari_weakseg.io.nnunet", "napari_weakseg.cli.store"]


def test_core_modules_import_no_gui_or_torch():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in MODULES) +
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'napari', 'qtpy', 'PyQt5', 'magicgui', 'vispy'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout.strip()
    assert out == ""
