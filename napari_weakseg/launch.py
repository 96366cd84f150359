"""Open napari with the WeakSeg dock widget (Project, Annotate, Train, Review tabs).

``python -m napari_weakseg.launch [PROJECT_FOLDER | NIFTI ...]`` (README command 1): a
project folder is opened in the Project tab; NIfTI files are opened as layers; with no
project the synthetic sample is loaded. Without a display it says so and points to the
headless demo (``weakseg demo``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def has_display() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not has_display():
        print("No display found (DISPLAY is unset): napari needs a screen.\n"
              "Run the headless demo instead:  .venv/bin/weakseg demo\n"
              "or use a virtual screen:        xvfb-run -a .venv/bin/python -m "
              "napari_weakseg.launch")
        return 2
    import napari

    from .store.manifest import MANIFEST_NAME

    projects = [p for p in argv if (Path(p) / MANIFEST_NAME).exists()]
    files = [p for p in argv if p not in projects]
    viewer = napari.Viewer(title="napari-weakseg")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-weakseg", "WeakSeg")
    if projects:
        widget.project_panel.open_project(projects[0])
    else:
        viewer.open_sample("napari-weakseg", "cardiac")
    for path in files:
        viewer.open(path, plugin="napari-weakseg")
    if os.environ.get("WEAKSEG_SCREENSHOT"):
        from qtpy.QtWidgets import QApplication

        viewer.window.resize(1400, 800)
        for _ in range(5):
            QApplication.processEvents()
        viewer.screenshot(os.environ["WEAKSEG_SCREENSHOT"], canvas_only=False)
        viewer.close()
        return 0
    napari.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
