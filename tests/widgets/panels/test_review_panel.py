"""Review panel: prediction and uncertainty overlays, accepting corrections as sparse or
partial annotations, the next slice / volume to annotate, retrain."""

from __future__ import annotations

import numpy as np
import pytest

from napari_weakseg.store import Project
from napari_weakseg.widgets.main import WeakSegWidget
from napari_weakseg.widgets.workers import SynchronousExecutor

from .helpers import save_screenshot

VOLUME = "synth000_frame01"


@pytest.fixture
def predicted(make_napari_viewer, tiny_project, tiny_model):
    viewer = make_napari_viewer(show=True)
    widget = WeakSegWidget(viewer, executor=SynchronousExecutor())
    widget.project_panel.open_project(tiny_project)
    widget.project_panel.open_volume(VOLUME)
    review = widget.review_panel
    assert review.predict(tiny_model)
    return viewer, widget, review


def test_prediction_overlays_on_the_image_grid(predicted, qtbot, screenshot_dir):
    viewer, widget, review = predicted
    image = widget.session.image_layer
    qtbot.waitUntil(lambda: review.uncertainty_layer is not None, timeout=60000)
    labels, uncertainty = review.prediction_layer, review.uncertainty_layer
    names = [layer.name for layer in viewer.layers]
    assert names.index(uncertainty.name) < names.index(labels.name)  # label map on top
    assert labels.name == f"{VOLUME} [prediction]" and uncertainty.name == f"{VOLUME} [uncertainty]"
    for layer in (labels, uncertainty):
        assert layer.data.shape == image.data.shape
        np.testing.assert_allclose(layer.scale, image.scale)
    assert labels.data.max() < 4 and float(uncertainty.data.min()) >= 0
    assert np.all(uncertainty.data <= np.log(4) + 1e-5)
    # suggestions: slices by entropy over the possible foreground, most uncertain first
    from napari_weakseg.inference.suggest import foreground_entropy

    scores = foreground_entropy(review.prediction.probabilities, review.prediction.entropy)
    assert [z for z, _ in review.suggested_slices] == list(np.argsort(-scores, kind="stable"))
    assert "possible foreground" in review.suggest_label.text()
    assert review.go_to_next_slice() == review.suggested_slices[0][0]
    assert viewer.dims.current_step[0] == review.suggested_slices[0][0]
    # for scribbling: the same entropy times the share of every structure shown
    from napari_weakseg.inference.suggest import all_structures_entropy

    review.suggest_combo.setCurrentIndex(review.suggest_combo.findData("scribbles"))
    scores = all_structures_entropy(review.prediction.probabilities,
                                    review.prediction.entropy)
    assert [z for z, _ in review.suggested_slices] == list(np.argsort(-scores, kind="stable"))
    assert review.suggest_label.text().startswith("Slices to scribble")
    review.suggest_combo.setCurrentIndex(review.suggest_combo.findData("correction"))
    assert review.suggest_label.text().startswith("Most uncertain slices")

    viewer.window.add_dock_widget(widget, name="WeakSeg", area="right")
    viewer.window.resize(1500, 900)
    widget.show_panel("Review")
    qtbot.waitUntil(widget.isVisible, timeout=60000)
    save_screenshot(viewer, screenshot_dir / "review_panel.png")


def test_accept_corrected_slices_as_sparse(predicted, tiny_project):
    viewer, widget, review = predicted
    layer = review.prediction_layer
    viewer.dims.set_current_step(0, 2)
    layer.brush_size = 4
    layer.paint((2, 10, 10), 3)  # correct slice 2 (LV)
    accepted = review.accept("corrected_slices")
    assert accepted.kind == "sparse" and list(accepted.slices) == [2]
    with Project.open(tiny_project) as project:
        stored = project.annotation(VOLUME, "sparse")
    assert stored.declared_slices == {2: (0, 1, 2, 3)}
    np.testing.assert_array_equal(stored.data[2], np.asarray(layer.data[2]) + 1)
    assert not stored.data[[0, 1, 3]].any()
    # the Annotate panel shows it, and the Train panel now offers sparse-capable methods
    np.testing.assert_array_equal(viewer.layers[f"{VOLUME} [sparse]"].data, stored.data)
    assert "disambig" in widget.train_panel.methods
    assert review.last_accepted.version == 1


def test_accept_corrected_classes_as_partial(predicted, tiny_project):
    viewer, widget, review = predicted
    layer = review.prediction_layer
    edited = np.asarray(layer.data).copy()
    edited[1, 5:9, 5:9] = 1  # RV painted in
    changed = np.nonzero(edited != layer.data)
    layer.data_setitem(changed, edited[changed])
    accepted = review.accept("corrected_classes")
    assert accepted.kind == "partial" and 1 in accepted.classes
    with Project.open(tiny_project) as project:
        stored = project.annotation(VOLUME, "partial")
    assert stored.declared_classes == accepted.classes
    assert np.all(stored.data[edited == 1] == 2)


def test_accept_without_corrections_warns_and_saves_nothing(predicted, tiny_project,
                                                            notifications):
    viewer, widget, review = predicted
    assert review.accept("corrected_slices") is None
    assert any("no slice was corrected" in m for m in notifications.messages("warning"))
    with Project.open(tiny_project) as project:
        assert not project.annotations(VOLUME, kind="sparse")


def test_rank_volumes_and_retrain_request(predicted, tiny_model):
    viewer, widget, review = predicted
    review.rank_volumes()
    names = [name for name, _ in review.volume_ranking]
    assert sorted(names) == ["synth000_frame01", "synth000_frame10", "synth001_frame01"]
    scores = [score for _, score in review.volume_ranking]
    assert scores == sorted(scores, reverse=True)
    requested = []
    widget.session.retrain_requested.disconnect()  # observe the request only
    widget.session.retrain_requested.connect(requested.append)
    review.retrain()
    assert [p.resolve() for p in requested] == [tiny_model.resolve()]


# -- ground truth in the Review tab (issue 17) ------------------------------------------------
def test_ground_truth_contours_and_per_class_dice_hd95(predicted, tiny_project, qtbot,
                                                       screenshot_dir):
    from napari_weakseg.evaluation.metrics import evaluate_volume

    viewer, widget, review = predicted
    image = widget.session.image_layer
    layer = review.ground_truth_layer
    assert layer is not None and layer.name == f"{VOLUME} [ground truth]"
    assert layer.contour == 1 and layer.opacity == 0.5 and not layer.editable
    assert layer.metadata["weakseg_role"] == "ground_truth"
    assert list(layer.features["class"]) == ["background", "RV", "MYO", "LV"]
    np.testing.assert_allclose(layer.scale, image.scale)
    assert viewer.layers.selection.active is review.prediction_layer  # still the one to paint
    with Project.open(tiny_project) as project:
        truth = project.ground_truth(VOLUME)
        spacing = project.volume(VOLUME).spacing
    np.testing.assert_array_equal(layer.data, truth)
    expected = evaluate_volume(review.prediction.labels, truth, spacing,
                               {1: "RV", 2: "MYO", 3: "LV"})
    table = review.truth_table
    assert review.truth_box.isVisibleTo(widget.review_panel)
    assert [table.item(r, 0).text() for r in range(table.rowCount())] == ["RV", "MYO", "LV",
                                                                         "mean"]
    for r, name in enumerate(("RV", "MYO", "LV")):
        assert table.item(r, 1).text() == f"{expected[name]['dice']:.3f}"
        hd = expected[name]["hd95_mm"]
        assert table.item(r, 2).text() == ("–" if np.isnan(hd) else f"{hd:.1f}")
    assert "mm" in review.truth_label.text() and "10 × " in review.truth_label.text()

    # correcting the prediction into the ground truth: rescored (debounced, background)
    pred = review.prediction_layer
    changed = np.nonzero(np.asarray(pred.data) != truth)
    pred.data_setitem(changed, truth[changed].astype(pred.data.dtype))
    qtbot.waitUntil(lambda: table.item(3, 1).text() == "1.000", timeout=30000)
    assert [table.item(r, 1).text() for r in range(3)] == ["1.000"] * 3
    assert [table.item(r, 2).text() for r in range(3)] == ["0.0"] * 3

    viewer.window.add_dock_widget(widget, name="WeakSeg", area="right")
    viewer.window.resize(1500, 1000)
    widget.show_panel("Review")
    viewer.dims.set_current_step(0, 1)
    qtbot.waitUntil(widget.isVisible, timeout=60000)
    shifted = np.roll(truth, 2, axis=2).astype(pred.data.dtype)  # a plausible "prediction"
    changed = np.nonzero(np.asarray(pred.data) != shifted)
    pred.data_setitem(changed, shifted[changed])
    expected = evaluate_volume(shifted, truth, spacing, {1: "RV", 2: "MYO", 3: "LV"})
    qtbot.waitUntil(lambda: table.item(2, 1).text() == f"{expected['LV']['dice']:.3f}",
                    timeout=30000)
    assert table.item(2, 2).text() == f"{expected['LV']['hd95_mm']:.1f}"
    viewer.reset_view()
    qtbot.wait(300)
    save_screenshot(viewer, screenshot_dir / "review_ground_truth.png")


def test_no_ground_truth_no_layer_no_table(make_napari_viewer, tiny_project, tiny_model):
    with Project.open(tiny_project) as project:
        source = project.volume(VOLUME)
        project.add_volume(source.image_path, name="no_truth")
    viewer = make_napari_viewer(show=True)
    widget = WeakSegWidget(viewer, executor=SynchronousExecutor())
    widget.project_panel.open_project(tiny_project)
    widget.project_panel.open_volume("no_truth")
    review = widget.review_panel
    assert review.predict(tiny_model)
    assert review.prediction_layer is not None
    assert review.ground_truth_layer is None
    assert not any("[ground truth]" in layer.name for layer in viewer.layers)
    assert review.truth_table.rowCount() == 0 and not review.truth_box.isVisibleTo(review)
    # a volume with ground truth after one without: shown; back again: gone
    widget.project_panel.open_volume(VOLUME)
    assert review.predict(tiny_model) and review.ground_truth_layer is not None
    widget.project_panel.open_volume("no_truth")
    assert review.predict(tiny_model)
    assert review.ground_truth_layer is None and not review.truth_box.isVisibleTo(review)
    assert not any("[ground truth]" in layer.name for layer in viewer.layers)
