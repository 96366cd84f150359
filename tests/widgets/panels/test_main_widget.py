"""The WeakSeg dock widget holds every panel, the Export tab follows the session, and closing
napari with the widget docked (and work going on) ends the process cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from napari_weakseg.store import Project
from napari_weakseg.widgets.main import WeakSegWidget
from napari_weakseg.widgets.workers import SynchronousExecutor


def test_tabs_and_export_prefill(make_napari_viewer, tiny_project, tiny_model):
    viewer = make_napari_viewer()
    widget = WeakSegWidget(viewer, executor=SynchronousExecutor())
    titles = [widget.tabs.tabText(i) for i in range(widget.tabs.count())]
    assert titles == ["Project", "Annotate", "Train", "Review", "Export"]
    widget.project_panel.open_project(tiny_project)
    assert Path(widget.export_panel.input_edit.text()) == Path(tiny_project)
    widget.session.model_changed.emit(tiny_model)
    assert Path(widget.export_panel.model_edit.text()) == Path(tiny_model)
    widget.export_panel.input_edit.setText("/elsewhere")  # a user's choice is kept
    widget.session.project_changed.emit(widget.session.project)
    assert widget.export_panel.input_edit.text() == "/elsewhere"
    widget.close_session()


# -- closing napari while background work runs never aborts the process ------------------
CLOSE_SCRIPT = r"""
import sys, time
import napari
from qtpy.QtWidgets import QApplication

viewer = napari.Viewer()
_dock, widget = viewer.window.add_plugin_dock_widget("napari-weakseg", "WeakSeg")
if len(sys.argv) > 1:  # a training run and another task are going on when napari closes
    app = QApplication.instance()

    def until(condition, what, timeout=120.0):
        deadline = time.time() + timeout
        while not condition():
            if time.time() > deadline:
                sys.exit(f"timed out waiting for {what}")
            app.processEvents()
            time.sleep(0.02)

    widget.project_panel.open_project(sys.argv[1])
    train = widget.train_panel
    until(lambda: train.methods, "the methods")
    train.set_method("pce")
    train.set_hyperparameters(iterations=100000, batch_size=2, size=32, base_width=4,
                              val_every=100000, threads=1, device="cpu")
    handle = train.start_training()
    until(lambda: train.loss_plot.series.get("total"), "training progress")
    widget.session.executor.run(time.sleep, 1.5)
    print("RUN", handle.run_id, flush=True)
viewer.close()
print("closed", flush=True)
"""


def _close_script(*args: str) -> subprocess.CompletedProcess:
    """The script in a fresh process, on the test's (virtual) display."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", CLOSE_SCRIPT, *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


def test_closing_napari_right_after_docking_exits_cleanly(qapp):
    result = _close_script()
    assert "has been deleted" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 0, result.stderr[-3000:]  # old code: -6 (SIGABRT)
    assert "closed" in result.stdout


def test_closing_napari_during_training_exits_cleanly_and_keeps_the_run(qapp, tiny_project):
    result = _close_script(tiny_project)
    assert "has been deleted" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    run_id = int(result.stdout.split("RUN ")[1].split()[0])
    with Project.open(tiny_project) as project:  # stopped with a checkpoint, recorded
        record = project.run(run_id)
        assert record.status == "cancelled", record
        assert (Path(record.out_dir) / "checkpoints" / "last.pt").exists()
