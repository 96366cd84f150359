"""The Annotate panel on a project volume: autosave after edits settle, on volume switch
and on close; partial/sparse declarations (Shift-K); undo; restoring a version."""

from __future__ import annotations

import numpy as np
import pytest

from napari_weakseg.store import Project
from napari_weakseg.widgets.main import WeakSegWidget
from napari_weakseg.widgets.workers import SynchronousExecutor

from .helpers import save_screenshot


VOLUME = "synth000_frame01"


@pytest.fixture
def project_widget(make_napari_viewer, tiny_project):
    viewer = make_napari_viewer(show=True)
    widget = WeakSegWidget(viewer, executor=SynchronousExecutor(), autosave_ms=20)
    widget.project_panel.open_project(tiny_project)
    widget.project_panel.open_volume(VOLUME)
    return viewer, widget, widget.annotate_panel


def _versions(project_root, kind, volume=VOLUME):
    with Project.open(project_root) as project:
        return project.annotation_versions(volume, kind)


def _paint(viewer, layer, z, yx, value):
    viewer.dims.set_current_step(0, z)
    layer.brush_size = 5
    layer.paint((z, *yx), value)


def test_edits_are_autosaved_once_they_settle(project_widget, tiny_project, qtbot,
                                              screenshot_dir):
    viewer, widget, panel = project_widget
    panel.set_kind("partial")
    panel.set_class(3)
    panel.declare_classes([3])
    layer = panel.start_annotating()
    assert layer.metadata["weakseg_volume"] == VOLUME
    _paint(viewer, layer, 1, (16, 16), layer.selected_label)
    qtbot.waitUntil(lambda: len(_versions(tiny_project, "partial")) == 1, timeout=60000)
    (record,) = _versions(tiny_project, "partial")
    assert record.declared_classes == (3,) and set(record.counts) == {4}
    with Project.open(tiny_project) as project:
        np.testing.assert_array_equal(project.annotation(VOLUME, "partial").data, layer.data)
    assert "v1" in panel.save_label.text()

    widget.show_panel("Annotate")
    viewer.window.add_dock_widget(widget, name="WeakSeg", area="right")
    viewer.window.resize(1500, 900)
    qtbot.waitUntil(widget.isVisible, timeout=60000)
    save_screenshot(viewer, screenshot_dir / "annotate_panel.png")

    layer.undo()  # napari's undo: the empty state is saved as a new version
    qtbot.waitUntil(lambda: len(_versions(tiny_project, "partial")) == 2, timeout=60000)
    assert not _versions(tiny_project, "partial")[-1].counts


def test_sparse_slices_marked_with_the_shortcut_are_declared(project_widget, tiny_project,
                                                              qtbot):
    viewer, widget, panel = project_widget
    panel.set_kind("sparse")
    layer = panel.start_annotating()
    viewer.dims.set_current_step(0, 2)
    binding = next(func for key, func in viewer.keymap.items() if str(key) == "Shift+K")
    binding(viewer)  # what pressing Shift-K does
    assert panel.complete_slices == {2: None}
    assert "2" in panel.slices_label.text()
    _paint(viewer, layer, 2, (10, 10), layer.selected_label)
    panel.flush()
    (record,) = _versions(tiny_project, "sparse")
    assert record.declared_slices == {2: (0, 1, 2, 3)}
    panel.toggle_slice_complete(2)  # unmark
    assert panel.complete_slices == {}


def test_pending_edits_are_saved_on_volume_switch_and_close(project_widget, tiny_project,
                                                            qtbot):
    viewer, widget, panel = project_widget
    panel.autosave_ms = 60_000  # edits never "settle" during this test
    panel.set_kind("scribble")
    panel.set_class(2)
    layer = panel.start_annotating()
    _paint(viewer, layer, 0, (5, 5), layer.selected_label)
    qtbot.wait(100)  # drawn with the brush active
    assert len(_versions(tiny_project, "scribble")) == 1  # the imported version only
    widget.project_panel.open_volume("synth000_frame10")   # switching saves
    qtbot.wait(100)  # and drawn again (removing a painting layer once crashed napari here)
    versions = _versions(tiny_project, "scribble")
    assert len(versions) == 2 and versions[-1].note is None

    panel.set_kind("scribble")
    other = panel.start_annotating()
    _paint(viewer, other, 1, (8, 8), other.selected_label)
    viewer.close()  # closing the window saves too
    assert len(_versions(tiny_project, "scribble", "synth000_frame10")) == 2


def test_restore_an_earlier_version_is_undoable(project_widget, tiny_project):
    viewer, widget, panel = project_widget
    panel.set_kind("scribble")
    layer = panel.start_annotating()
    imported = layer.data.copy()
    _paint(viewer, layer, 0, (20, 20), 2)
    panel.flush()
    assert [v.version for v in panel.versions("scribble")] == [1, 2]
    record = panel.restore_version(1, "scribble")
    assert record.version == 3 and record.restored_from == 1
    np.testing.assert_array_equal(layer.data, imported)
    assert panel.version_combo.count() == 3
    layer.undo()  # the restore is one undo step
    assert layer.data[0, 20, 20] == 2
