"""Project panel: open a project, list volumes with their status, open a volume, add
volumes (file list and drag-and-drop)."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QMimeData, QPointF, Qt, QUrl
from qtpy.QtGui import QDropEvent

from napari_weakseg.io import write_volume
from napari_weakseg.store import Project
from napari_weakseg.widgets.main import WeakSegWidget
from napari_weakseg.widgets.workers import SynchronousExecutor

from .helpers import save_screenshot


def _widget(make_napari_viewer, show=False):
    viewer = make_napari_viewer(show=show)
    widget = WeakSegWidget(viewer, executor=SynchronousExecutor(), autosave_ms=10)
    return viewer, widget


def test_open_project_lists_volumes_and_opens_one(make_napari_viewer, tiny_project,
                                                   screenshot_dir, qtbot):
    viewer, widget = _widget(make_napari_viewer, show=True)
    viewer.window.add_dock_widget(widget, name="WeakSeg", area="right")
    viewer.window.resize(1500, 900)
    qtbot.waitUntil(widget.isVisible, timeout=60000)
    panel = widget.project_panel
    panel.open_project(tiny_project)
    assert panel.volume_names() == ["synth000_frame01", "synth000_frame10",
                                    "synth001_frame01", "synth001_frame10"]
    assert panel.table.item(0, 3).text() == "scribble"
    assert panel.table.item(3, 1).text() == "val" and panel.table.item(0, 2).text() == "✓"

    panel.open_volume("synth000_frame10")
    image = widget.session.image_layer
    with Project.open(tiny_project) as project:
        record = project.volume("synth000_frame10")
        scribble = project.annotation(record, "scribble").data
    assert image.name == "synth000_frame10" and image.data.shape == record.shape
    np.testing.assert_allclose(image.scale, record.spacing)        # (z, y, x) mm
    np.testing.assert_allclose(image.metadata["affine"], record.affine)
    assert viewer.dims.axis_labels[-3:] == ("z", "y", "x")
    layer = viewer.layers["synth000_frame10 [scribble]"]
    np.testing.assert_array_equal(layer.data, scribble)
    np.testing.assert_allclose(layer.scale, image.scale)
    assert widget.session.volume.name == "synth000_frame10"

    widget.show_panel("Project")
    qtbot.wait(50)
    shot = save_screenshot(viewer, screenshot_dir / "project_panel.png")
    assert shot[..., :3].std() > 20

    panel.open_volume("synth001_frame01")  # switching removes the previous volume's layers
    assert "synth000_frame10" not in viewer.layers
    assert [layer.name for layer in viewer.layers] == ["synth001_frame01",
                                                       "synth001_frame01 [scribble]"]


def test_add_volumes_by_list_and_drop_reports_bad_files(make_napari_viewer, tmp_path,
                                                        tiny_project, notifications):
    viewer, widget = _widget(make_napari_viewer)
    panel = widget.project_panel
    panel.create_project(tmp_path / "new")
    assert panel.volume_names() == []
    image_path = tmp_path / "case_a.nii.gz"
    with Project.open(tiny_project) as project:
        record = project.volume("synth000_frame01")
        volume = project.read_image(record)
    write_volume(image_path, volume.data, volume.geometry)
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti file")
    panel.add_volumes([image_path, bad])
    assert panel.volume_names() == ["case_a"]
    assert any("broken.nii.gz" in m for m in notifications.messages("warning"))
    with Project.open(tmp_path / "new") as project:
        assert project.volume("case_a").shape == volume.data.shape

    dropped = tmp_path / "case_b.nii.gz"
    write_volume(dropped, volume.data, volume.geometry)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(dropped))])
    event = QDropEvent(QPointF(5, 5), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    panel.dropEvent(event)
    assert panel.volume_names() == ["case_a", "case_b"]


def test_opening_a_folder_that_is_no_project_is_reported(make_napari_viewer, tmp_path,
                                                         notifications):
    viewer, widget = _widget(make_napari_viewer)
    assert widget.project_panel.open_project(tmp_path) is None
    assert any("not a napari-weakseg project" in m for m in notifications.messages("error"))
    assert widget.session.project is None
    assert not widget.project_panel.add_button.isEnabled()
