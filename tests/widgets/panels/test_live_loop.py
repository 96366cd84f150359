"""Issue 17 — the loop as annotators expect it: Retrain keeps the model's method, training
uses the machine's cores at normal priority, live previews while training (replaced by the
final prediction), a split editor and a clear note without validation volumes, 4D cine
series in Review, export that never overwrites an edited layer, light whole-slice layers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from napari_weakseg.store import Project
from napari_weakseg.training.events import Preview, Started
from napari_weakseg.widgets import logic
from napari_weakseg.widgets.main import WeakSegWidget
from napari_weakseg.widgets.workers import SynchronousExecutor

from .helpers import TINY, save_screenshot

VOLUME = "synth000_frame01"


def _model_with_method(source, folder, method: str):
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    config["method"] = method
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _widget(make_napari_viewer, show=False, **kwargs):
    viewer = make_napari_viewer(show=show)
    widget = WeakSegWidget(viewer, executor=SynchronousExecutor(), **kwargs)
    return viewer, widget


def _dock(viewer, widget, qtbot, title="Review"):
    viewer.window.add_dock_widget(widget, name="WeakSeg", area="right")
    viewer.window.resize(1500, 950)
    widget.show_panel(title)
    qtbot.waitUntil(widget.isVisible, timeout=60000)


@pytest.fixture
def captured_starts(monkeypatch):
    """Configs the Train panel tried to start (no process is spawned)."""
    configs = []

    def fake_start(project, config, **options):
        configs.append(config)
        raise RuntimeError("not started in this test")

    monkeypatch.setattr(logic, "start_run", fake_start)
    return configs


# -- 1. Retrain keeps the model's method ----------------------------------------------------
def test_retrain_keeps_the_models_method_visibly(make_napari_viewer, tiny_project, tiny_model,
                                                 tmp_path, captured_starts):
    model = _model_with_method(tiny_model, tmp_path / "pce-model", "pce")
    viewer, widget = _widget(make_napari_viewer)
    widget.project_panel.open_project(tiny_project)  # the project reopened
    train, review = widget.train_panel, widget.review_panel
    assert {"effdnet", "pce"} <= set(train.methods)
    assert train.method == train.methods[0] != "pce"  # the default: first alphabetically
    review.set_model(model)
    review.retrain()  # "Retrain (fine-tune from this model)"
    (config,) = captured_starts
    assert config.method == "pce" and config.init_model == str(model)  # old code: effdnet
    assert train.method == "pce"
    assert "keeps the model's method: pce" in train.model_method_label.text()


def test_an_explicit_method_choice_wins_over_the_models(make_napari_viewer, tiny_project,
                                                        tiny_model, tmp_path,
                                                        captured_starts):
    model = _model_with_method(tiny_model, tmp_path / "pce-model", "pce")
    viewer, widget = _widget(make_napari_viewer)
    widget.project_panel.open_project(tiny_project)
    train = widget.train_panel
    train.set_start_model(model)  # choosing the model selects its method…
    assert train.method == "pce"
    train.set_method("effdnet")   # …until the user picks another one
    assert "trained with pce; you chose effdnet" in train.model_method_label.text()
    train.start_training(init_model=model)
    assert captured_starts[-1].method == "effdnet"
    train.set_start_model(None)   # a new network: no model method to show
    assert train.model_method_label.text() == ""


# -- 3. the machine's cores, normal priority ---------------------------------------------
def test_gui_training_uses_the_cores_at_normal_priority(make_napari_viewer, tiny_project,
                                                        monkeypatch):
    import os

    from napari_weakseg.training import project_runs

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert logic.default_threads() == 7
    viewer, widget = _widget(make_napari_viewer)
    widget.project_panel.open_project(tiny_project)
    train = widget.train_panel
    train.set_profile("quick-cpu")
    assert train.fields["threads"].value() == 7  # old code: os.cpu_count() - 1
    config = train.config()
    assert config.threads == 7 and config.preview_every_s == logic.PREVIEW_EVERY_S
    seen = {}

    def fake_start(project, config, **options):
        seen.update(options)
        raise RuntimeError("stop here")

    monkeypatch.setattr(project_runs, "start_run", fake_start)
    with pytest.raises(RuntimeError, match="stop here"):
        logic.start_run(widget.session.project, config, val={"split": "val"})
    assert seen.get("nice", 0) == 0  # old code: nice +10


# -- 2. live previews ---------------------------------------------------------------------
def test_live_preview_then_the_final_prediction_replaces_it(make_napari_viewer, tiny_project,
                                                            tiny_model, tmp_path, qtbot,
                                                            screenshot_dir):
    viewer, widget = _widget(make_napari_viewer, show=True)
    widget.project_panel.open_project(tiny_project)
    widget.project_panel.open_volume(VOLUME)
    review, image = widget.review_panel, widget.session.image_layer
    preview_dir = tmp_path / "run" / "model_preview"
    shutil.copytree(logic.zoo_dir() / "acdc-cine-pce", preview_dir)  # something to see
    annotations = viewer.layers.selection.active
    # the Train panel relays the training process's preview event
    widget.train_panel._on_event(Preview(iteration=40, model_dir=str(preview_dir),
                                         seconds=12.0))
    layer = review.preview_layer
    assert layer is not None and layer.name == f"{VOLUME} [preview]"  # old code: nothing
    assert layer.metadata["weakseg_role"] == "preview"
    assert layer.metadata["weakseg_preview_iteration"] == 40
    assert layer.data.shape == image.data.shape
    np.testing.assert_allclose(layer.scale, image.scale)
    assert review.prediction_layer is None  # a preview is not the reviewable prediction
    assert viewer.layers.selection.active is annotations  # the user's tool stays selected
    qtbot.waitUntil(lambda: viewer.text_overlay.visible, timeout=10000)  # the next turn
    assert "iteration 40" in viewer.text_overlay.text
    assert "Live preview · iteration 40" in review.status.text()
    # a newer preview updates the same layer
    widget.train_panel._on_event(Preview(iteration=80, model_dir=str(preview_dir),
                                         seconds=24.0))
    assert [lay.name for lay in viewer.layers].count(f"{VOLUME} [preview]") == 1
    assert review.preview_layer.metadata["weakseg_preview_iteration"] == 80
    qtbot.waitUntil(lambda: "iteration 80" in viewer.text_overlay.text, timeout=10000)
    _dock(viewer, widget, qtbot)
    save_screenshot(viewer, screenshot_dir / "review_live_preview.png")

    shown = review.preview_layer
    widget.session.set_model(tiny_model)  # the run ended: the final model is predicted
    assert review.preview_layer is None and review.prediction_layer is not None
    # the preview's layer became the prediction's (no layer rebuilt)
    assert review.prediction_layer is shown
    assert shown.metadata["weakseg_role"] == "prediction"
    assert "weakseg_preview_iteration" not in shown.metadata
    assert not viewer.text_overlay.visible


def test_previews_can_be_turned_off(make_napari_viewer, tiny_project, tiny_model, tmp_path):
    viewer, widget = _widget(make_napari_viewer)
    widget.project_panel.open_project(tiny_project)
    widget.project_panel.open_volume(VOLUME)
    widget.review_panel.preview_check.setChecked(False)
    widget.session.preview_ready.emit(Preview(iteration=1, model_dir=str(tiny_model),
                                              seconds=1.0))
    assert widget.review_panel.preview_layer is None


def test_a_real_run_shows_previews_while_it_trains(make_napari_viewer, tiny_project, qtbot):
    """End to end: the training process writes previews, the Review tab shows them."""
    viewer = make_napari_viewer()
    widget = WeakSegWidget(viewer)  # napari thread workers, a real training process
    widget.project_panel.open_project(tiny_project)
    qtbot.waitUntil(lambda: widget.session.volume is None and bool(
        widget.project_panel.volume_names()), timeout=30000)
    widget.project_panel.open_volume(VOLUME)
    qtbot.waitUntil(lambda: widget.session.image_layer is not None, timeout=30000)
    train, review = widget.train_panel, widget.review_panel
    qtbot.waitUntil(lambda: bool(train.methods), timeout=30000)
    train.set_method("pce")
    train.set_hyperparameters(**{**TINY, "iterations": 100000, "val_every": 100000,
                                 "preview": 1})
    assert train.config().preview_every_s == 1
    assert train.start_training() is not None
    qtbot.waitUntil(lambda: review.preview_layer is not None, timeout=90000)
    assert review.preview_layer.metadata["weakseg_preview_iteration"] > 0
    train.cancel_training()
    qtbot.waitUntil(lambda: train.last_result is not None, timeout=60000)
    qtbot.waitUntil(lambda: review.prediction_layer is not None, timeout=60000)
    assert review.preview_layer is None  # replaced by the final prediction
    widget.close_session()


# -- 4. validation users can have -----------------------------------------------------------
def test_split_editor_and_the_no_validation_note(make_napari_viewer, tiny_project, qtbot,
                                                 screenshot_dir):
    viewer, widget = _widget(make_napari_viewer, show=True)
    panel, train = widget.project_panel, widget.train_panel
    panel.open_project(tiny_project)
    assert "1 validation volume(s)" in train.validation_label.text()
    # the context menu's "Split: none" on the val volume: no validation left
    panel.table.selectRow(3)
    menu = panel.split_menu()
    actions = {a.data(): a for a in menu.actions() if a.text().startswith("Split:")}
    assert set(actions) == {"train", "val", "test", None}
    actions[None].trigger()
    with Project.open(tiny_project) as project:
        assert "split" not in project.volume("synth001_frame10").tags
    assert panel.table.item(3, 1).text() == ""
    note = train.validation_label.text()
    assert note.startswith("0 validation volumes: tag some volumes split=val with a "
                           "reference mask")  # old code: no note, an empty plot
    assert "split=val" in train.dice_plot.empty_text
    # the small form: two volumes to val at once
    panel.table.clearSelection()
    panel._select_row(0)
    panel._select_row(1)
    assert panel.selected_volumes() == ["synth000_frame01", "synth000_frame10"]
    panel.split_combo.setCurrentIndex(panel.split_combo.findData("val"))
    panel.split_button.click()
    with Project.open(tiny_project) as project:
        assert [v.name for v in project.volumes(split="val")] == ["synth000_frame01",
                                                                  "synth000_frame10"]
    assert "2 validation volume(s)" in train.validation_label.text()
    # a started run that found no validation volume says so too
    train.handle = logic.RunHandle(run=None, run_id=None, run_dir=tiny_project, model_name="x",
                                   iterations=10)
    train._on_event(Started(run_dir="x", method="pce", iterations=10, start_iteration=0,
                            device="cpu", train_slices=8, val_volumes=0))
    assert train.validation_label.text().startswith("0 validation volumes")
    train._close_progress()
    train.handle = None
    # screenshot: the Project tab with its split editor and the context menu open
    _dock(viewer, widget, qtbot, "Project")
    panel.table.selectRow(2)
    menu = panel.split_menu()
    rect = panel.table.visualRect(panel.table.model().index(2, 1))
    menu.popup(panel.table.viewport().mapToGlobal(rect.center()))
    qtbot.waitUntil(menu.isVisible, timeout=60000)
    qtbot.wait(200)
    from qtpy.QtWidgets import QApplication

    QApplication.primaryScreen().grabWindow(0).save(
        str(screenshot_dir / "project_split_editor.png"))
    menu.close()


# -- 5. 4D cine series in Review ----------------------------------------------------------
def _cine(viewer):
    from napari_weakseg.plugin import make_cardiac_cine_sample

    data, kwargs, _ = make_cardiac_cine_sample()[0]
    return viewer.add_image(data, **kwargs)


def test_review_predicts_a_4d_cine_series_frame_by_frame(make_napari_viewer, qtbot,
                                                         screenshot_dir):
    viewer, widget = _widget(make_napari_viewer, show=True)
    image = _cine(viewer)
    assert image.ndim == 4
    review = widget.review_panel
    viewer.dims.set_current_step(0, 3)
    assert review.predict(logic.zoo_dir() / "acdc-cine-pce")  # old code: an error
    labels = review.prediction_layer
    assert labels.data.shape == image.data.shape
    qtbot.waitUntil(lambda: review.uncertainty_layer is not None, timeout=60000)
    entropy = np.asarray(review.uncertainty_layer.data)
    assert entropy.shape == image.data.shape
    assert entropy[3].max() > 0 and not entropy[[0, 5]].any()  # only frame t=3 predicted
    assert "frame t=3" in review.status.text() and "frame t=3" in review.suggest_label.text()
    z = review.go_to_next_slice()  # the z slider (axis 1), not the time slider
    assert viewer.dims.current_step[1] == z and viewer.dims.current_step[0] == 3
    viewer.dims.set_current_step(0, 5)
    assert review.predict()
    qtbot.wait(50)
    entropy = np.asarray(review.uncertainty_layer.data)
    assert entropy[3].max() > 0 and entropy[5].max() > 0  # earlier frames kept
    _dock(viewer, widget, qtbot)
    save_screenshot(viewer, screenshot_dir / "review_4d_cine.png")
    assert review.accept("volume") is None  # accepting needs a 3D project volume
    assert "3D project volumes" in review.status.text()


def test_a_2d_image_is_refused_and_stale_suggestions_cleared(make_napari_viewer, tiny_model,
                                                             notifications):
    viewer, widget = _widget(make_napari_viewer)
    _cine(viewer)
    review = widget.review_panel
    assert review.predict(tiny_model) and review.suggested_slices
    flat = viewer.add_image(np.zeros((32, 32), np.float32), name="flat")
    viewer.layers.selection.active = flat
    assert not review.predict()
    assert review.suggested_slices == [] and review.suggest_label.text() == ""
    assert not review.next_button.isEnabled()
    assert any("2D image cannot be predicted" in m for m in notifications.messages("error"))


# -- 6. export next to edited layers; light whole-slice layers ----------------------------
def test_export_results_never_overwrite_an_edited_prediction(make_napari_viewer, tmp_path,
                                                             qtbot):
    from napari_weakseg.widgets.export import ExportPanel
    from tests.inference.test_export import make_tiny_model, random_image, write_image

    viewer = make_napari_viewer()
    source = write_image(tmp_path / "in" / "v0.nii.gz", random_image(0, (2, 24, 20)))
    image = viewer.open(str(source), plugin="napari-weakseg")[0]
    # a Review prediction the user edited, and its uncertainty overlay (image metadata)
    edited = np.full(image.data.shape, 2, np.uint8)
    viewer.add_labels(edited.copy(), name=f"{image.name} [prediction]",
                      metadata={**image.metadata, "weakseg_role": "prediction"})
    viewer.add_image(np.zeros(image.data.shape, np.float32),
                     name=f"{image.name} [uncertainty]",
                     metadata={**image.metadata, "weakseg_role": "uncertainty"})
    panel = ExportPanel(viewer)
    panel.model_edit.setText(str(make_tiny_model(tmp_path / "model")))
    panel.input_edit.setText(str(source))
    panel.out_edit.setText(str(tmp_path / "out"))
    panel.device_combo.setCurrentText("cpu")
    panel.start()
    qtbot.waitUntil(lambda: not panel.running, timeout=60_000)
    assert panel.report.ok
    names = [layer.name for layer in viewer.layers]
    assert not any("[uncertainty] [" in name for name in names)  # old code: one such layer
    np.testing.assert_array_equal(viewer.layers[f"{image.name} [prediction]"].data, edited)
    exported = viewer.layers[f"{image.name} [export]"]
    assert exported.metadata["weakseg_role"] == "export"
    from napari_weakseg.schema import LabelSchema

    lv = LabelSchema.cardiac().dense_colormap()[3]
    np.testing.assert_allclose(exported.colormap.map(np.array([3]))[0], lv, atol=1e-6)
    # exporting again refreshes our unedited layer instead of adding another
    panel.add_predictions_of_open_images(tmp_path / "out")
    assert [layer.name for layer in viewer.layers].count(f"{image.name} [export]") == 1
    assert f"{image.name} [export 2]" not in viewer.layers


def test_whole_slice_layers_do_not_hide_the_image(make_napari_viewer):
    from napari_weakseg.schema import LabelSchema
    from napari_weakseg.widgets.annotation import AnnotationPanel, annotation_colormap

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((3, 16, 16), np.float32), name="img")
    panel = AnnotationPanel(viewer)
    sparse = panel.annotation_layer("sparse", create=True)
    scribble = panel.annotation_layer("scribble", create=True)
    assert sparse.opacity <= 0.5 and scribble.opacity == pytest.approx(0.9)
    colors = annotation_colormap("sparse", LabelSchema.cardiac())
    assert colors[1][3] <= 0.15 and colors[4][3] == 1.0  # background only tinted


def test_banner_glyphs_are_drawn_ahead_invisibly(make_napari_viewer, qtbot):
    """While a run starts, the banner's characters are drawn one per tick, transparent, so
    the first live preview does not stall the viewer rendering all of them at once."""
    from napari_weakseg.widgets.review import BANNER_GLYPHS

    viewer, widget = _widget(make_napari_viewer, show=True)
    review = widget.review_panel
    seen = []
    viewer.text_overlay.events.text.connect(lambda event: seen.append(viewer.text_overlay.text))
    widget.session.training_state.emit("running")
    assert review._glyph_timer.isActive()
    qtbot.waitUntil(lambda: viewer.text_overlay.visible, timeout=10000)
    assert viewer.text_overlay.color[3] == 0  # drawn, but nobody sees it
    qtbot.waitUntil(lambda: not review._glyph_timer.isActive(), timeout=20000)
    assert set("".join(seen)) >= set(BANNER_GLYPHS)
    assert not viewer.text_overlay.visible and viewer.text_overlay.text == ""
    widget.session.training_state.emit("running")  # once per panel: every glyph is kept
    assert not review._glyph_timer.isActive()
