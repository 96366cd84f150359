"""The WeakSeg dock widget holds every panel, and the Export tab follows the session."""

from __future__ import annotations

from pathlib import Path

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
