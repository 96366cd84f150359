"""Keyboard shortcuts of the annotate → review flow (issue 17): Ctrl+digit picks the class
of the active annotation or prediction layer without taking napari's digit keys, Shift+N
walks the suggested slices, Shift+Enter accepts the slice shown. Keys are sent to the
canvas as real Qt key events."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from napari_weakseg.store import Project
from napari_weakseg.widgets import shortcuts
from napari_weakseg.widgets.annotation import brush_value
from napari_weakseg.widgets.main import WeakSegWidget
from napari_weakseg.widgets.workers import SynchronousExecutor

VOLUME = "synth000_frame01"


@pytest.fixture
def flow(make_napari_viewer, tiny_project, qtbot):
    viewer = make_napari_viewer(show=True)
    widget = WeakSegWidget(viewer, executor=SynchronousExecutor(), autosave_ms=20)
    widget.project_panel.open_project(tiny_project)
    widget.project_panel.open_volume(VOLUME)
    return viewer, widget


#: the key of each modifier QTest holds down
MODIFIER_KEYS = {Qt.ShiftModifier: Qt.Key_Shift, Qt.ControlModifier: Qt.Key_Control}


def _press(viewer, qtbot, key, modifier=Qt.NoModifier):
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    QTest.keyClick(canvas, key, modifier)
    if modifier in MODIFIER_KEYS:  # Qt 5's QTest leaves the application's modifier state
        QTest.keyRelease(canvas, MODIFIER_KEYS[modifier], Qt.NoModifier)  # held otherwise
    qtbot.wait(20)


def test_ctrl_digit_picks_the_class_and_napari_keeps_its_digits(flow, qtbot):
    viewer, widget = flow
    panel = widget.annotate_panel
    panel.set_kind("scribble")
    layer = panel.start_annotating()
    assert layer.mode == "paint"
    _press(viewer, qtbot, Qt.Key_3, Qt.ControlModifier)
    assert panel.class_index == 3 and layer.selected_label == brush_value("scribble", 3)
    _press(viewer, qtbot, Qt.Key_0, Qt.ControlModifier)  # background
    assert panel.class_index == 0 and layer.selected_label == brush_value("scribble", 0)
    _press(viewer, qtbot, Qt.Key_4)  # napari's own: fill bucket
    assert layer.mode == "fill" and panel.class_index == 0
    _press(viewer, qtbot, Qt.Key_9, Qt.ControlModifier)  # the schema has 4 classes
    assert panel.class_index == 0 and "No class 9" in panel.status.text()
    # a coarse − layer paints bitmasks: the same key means the same class
    panel.set_kind("coarse_neg")
    negative = panel.start_annotating()
    _press(viewer, qtbot, Qt.Key_2, Qt.ControlModifier)
    assert negative.selected_label == brush_value("coarse_neg", 2) == 4
    # napari binds none of our keys; ours are bound on the viewer only
    from napari.utils.shortcuts import default_shortcuts

    napari_keys = {str(k) for keys in default_shortcuts.values() for k in keys}
    ours = {str(k) for k in viewer.keymap}
    assert {"Ctrl+1", "Ctrl+9", "Shift+K", "Shift+N", "Shift+Enter"} <= ours
    assert not ours & napari_keys


def test_help_text_and_tooltips_name_the_keys(flow):
    viewer, widget = flow
    panel, review = widget.annotate_panel, widget.review_panel
    assert "Ctrl+0…3" in panel.class_combo.toolTip()
    assert "Ctrl+0…3" in panel.keys_label.text() and "Shift+K" in panel.keys_label.text()
    assert panel.class_combo.itemData(2, Qt.ToolTipRole) == "Ctrl+2"
    assert "Shift+K" in panel.slice_button.text() + panel.slice_button.toolTip()
    assert "Shift+Enter" in review.accept_button.toolTip()
    assert "Shift+N" in review.next_button.text()
    assert "Shift+Enter" in review.keys_label.text()
    assert shortcuts.help_text(4).startswith("Keys (image canvas): Ctrl+0…3 class")


def test_review_keys_walk_the_suggestions_correct_and_accept(flow, qtbot, tiny_model,
                                                            tiny_project):
    viewer, widget = flow
    review = widget.review_panel
    assert review.predict(tiny_model)
    prediction = review.prediction_layer
    assert viewer.layers.selection.active is prediction
    ranking = [z for z, _ in review.suggested_slices]
    assert len(ranking) == 4
    _press(viewer, qtbot, Qt.Key_N, Qt.ShiftModifier)
    assert viewer.dims.current_step[0] == ranking[0]
    _press(viewer, qtbot, Qt.Key_N, Qt.ShiftModifier)
    assert viewer.dims.current_step[0] == ranking[1]
    assert "suggestion 2 of 4" in review.status.text()
    # correct with the class picked by Ctrl+digit, then accept the slice shown
    _press(viewer, qtbot, Qt.Key_3, Qt.ControlModifier)
    assert prediction.selected_label == 3
    z = ranking[1]
    prediction.brush_size = 4
    prediction.paint((z, 16, 16), prediction.selected_label)
    mode = review.mode_combo.currentData()
    _press(viewer, qtbot, Qt.Key_Return, Qt.ShiftModifier)
    with Project.open(tiny_project) as project:
        stored = project.annotation(VOLUME, "sparse")
    assert stored.declared_slices == {z: (0, 1, 2, 3)}
    np.testing.assert_array_equal(stored.data[z], np.asarray(prediction.data[z]) + 1)
    assert stored.data[z, 16, 16] == 4
    assert review.mode_combo.currentData() == mode  # the chosen mode stays chosen
    assert z not in [s for s, _ in review.suggested_slices]  # complete now
    _press(viewer, qtbot, Qt.Key_N, Qt.ShiftModifier)  # goes on with the ranking
    assert viewer.dims.current_step[0] == ranking[2]
    from qtpy.QtWidgets import QApplication

    assert QApplication.keyboardModifiers() == Qt.NoModifier  # nothing left held down
