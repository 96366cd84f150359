"""Screenshots of what a user sees, for the docs and for reviewing the GUI (issue 17).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/gui_screenshots.py \
        --out docs/img

Writes, from a real napari window (a virtual screen is enough; OpenGL through Mesa):

- ``gui_live_preview.png`` — the Review tab while the default zoo model is fine-tuned on
  the synthetic sample project: the ``[preview]`` layer from the run's latest weights and
  the "LIVE PREVIEW · iteration N" banner;
- ``gui_split_editor.png`` — the Project tab's table with its context menu (the split
  editor) open over two selected volumes (the whole screen is grabbed: the menu is its own
  window);
- ``gui_cine_4d.png`` — the 4D cine sample (time slider) predicted frame by frame in the
  Review tab.

The projects live in a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from gui_latency import make_synthetic_project, open_viewer, open_volume, spin  # noqa: E402


def grab_screen(path: Path) -> None:
    """The whole (virtual) screen, popups included."""
    from qtpy.QtWidgets import QApplication

    for _ in range(5):
        QApplication.processEvents()
    QApplication.primaryScreen().grabWindow(0).save(str(path))


def live_preview(viewer, widget, project: Path, out: Path) -> str:
    from napari_weakseg.zoo import default_model

    open_volume(widget, project, "synth000_frame01")
    train, review = widget.train_panel, widget.review_panel
    train.set_start_model(default_model())
    train.set_hyperparameters(minutes=1.0, preview=5, device="cpu")
    review.preview_check.setChecked(True)
    widget.show_panel("Review")
    train.start_training()
    assert spin(lambda: review.preview_layer is not None, 240), "no preview appeared"
    spin(lambda: False, 1.0)
    viewer.screenshot(str(out / "gui_live_preview.png"), canvas_only=False)
    note = review.status.text()
    train.cancel_training()
    spin(lambda: not train.is_running, 120)
    return note


def split_editor(viewer, widget, out: Path) -> str:
    from qtpy.QtCore import QTimer

    panel = widget.project_panel
    widget.show_panel("Project")
    from qtpy.QtCore import QItemSelectionModel

    model = panel.table.selectionModel()
    for row in (0, 1):
        model.select(panel.table.model().index(row, 0),
                     QItemSelectionModel.Select | QItemSelectionModel.Rows)
    menu = panel.split_menu()
    shot = out / "gui_split_editor.png"
    QTimer.singleShot(800, lambda: (grab_screen(shot), menu.close()))
    rect = panel.table.visualRect(panel.table.model().index(1, 0))
    menu.exec_(panel.table.viewport().mapToGlobal(rect.center()))
    return ", ".join(action.text() for action in menu.actions() if action.text())


def cine(viewer, widget, out: Path) -> str:
    from napari_weakseg.zoo import default_model

    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    viewer.open_sample("napari-weakseg", "cardiac_cine")
    review = widget.review_panel
    widget.show_panel("Review")
    review.set_model(default_model())
    viewer.dims.set_current_step(0, 4)
    review.predict()
    assert spin(lambda: review.prediction_layer is not None and not review._predicting,
                120), "no prediction"
    spin(lambda: False, 1.0)
    viewer.screenshot(str(out / "gui_cine_4d.png"), canvas_only=False)
    return review.status.text()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args(argv)
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        print("needs a screen: xvfb-run -a -s '-screen 0 1600x1000x24' .venv/bin/python "
              "scripts/gui_screenshots.py")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="weakseg-shots-"))
    try:
        project = make_synthetic_project(tmp, (10, 128, 128))
        viewer, widget = open_viewer()
        spin(lambda: False, 2.0)
        started = time.perf_counter()
        print("live preview:", live_preview(viewer, widget, project, args.out))
        print("split editor:", split_editor(viewer, widget, args.out))
        print("4D cine:", cine(viewer, widget, args.out))
        print(f"written to {args.out} in {time.perf_counter() - started:.0f} s")
        widget.train_panel.shutdown()
        viewer.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
