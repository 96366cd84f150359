"""The whole loop in a real napari window, in the background: annotate → train (separate
process) → prediction overlay → correct and accept → retrain from the model."""

from __future__ import annotations

import json
import time

import numpy as np

from napari_weakseg.store import Project
from napari_weakseg.widgets.main import WeakSegWidget

from .helpers import TINY, save_screenshot

VOLUME = "synth000_frame01"
LONG = 90_000  # ms; a tiny run takes a few seconds, more on a busy machine


def test_annotate_train_review_accept_retrain(make_napari_viewer, tiny_project, qtbot,
                                              screenshot_dir):
    viewer = make_napari_viewer(show=True)
    widget = WeakSegWidget(viewer, autosave_ms=50)  # napari thread workers
    viewer.window.add_dock_widget(widget, name="WeakSeg", area="right")
    viewer.window.resize(1500, 950)
    qtbot.waitUntil(widget.isVisible, timeout=60000)
    session, annotate = widget.session, widget.annotate_panel
    train, review = widget.train_panel, widget.review_panel

    widget.project_panel.open_project(tiny_project)
    widget.project_panel.open_volume(VOLUME)
    qtbot.waitUntil(lambda: session.volume is not None, timeout=LONG)

    # annotate: LV declared complete in a partial layer, painted on two slices
    annotate.set_kind("partial")
    annotate.set_class(3)
    annotate.declare_classes([3])
    layer = annotate.start_annotating()
    layer.brush_size = 6
    for z in (1, 2):
        viewer.dims.set_current_step(0, z)
        layer.paint((z, 16, 16), layer.selected_label)
    with Project.open(tiny_project) as project:
        def saved():
            return bool(project.annotation_versions(VOLUME, "partial"))
        qtbot.waitUntil(saved, timeout=LONG)

    # train in the background process; the prediction overlay appears when it ends
    qtbot.waitUntil(lambda: "pce" in train.methods, timeout=LONG)
    train.set_method("pce")
    train.set_hyperparameters(**TINY)
    started = time.perf_counter()
    assert train.start_training() is not None
    qtbot.waitUntil(lambda: review.prediction_layer is not None, timeout=LONG)
    print(f"\nStart → first prediction overlay: {time.perf_counter() - started:.1f} s")
    first = train.last_result
    assert first.status == "completed" and first.model_path.is_dir()
    assert review.model_path == first.model_path
    assert train.dice_plot.series["mean"] and train.loss_plot.series["total"]
    prediction = review.prediction_layer
    assert prediction.data.shape == session.image_layer.data.shape

    # correct slice 0 and accept it as a sparse annotation
    viewer.dims.set_current_step(0, 0)
    prediction.brush_size = 4
    prediction.paint((0, 8, 8), 1)
    review.accept("corrected_slices")
    qtbot.waitUntil(lambda: review.last_accepted is not None, timeout=LONG)
    assert review.last_accepted.kind == "sparse"
    assert review.last_accepted.declared_slices == {0: (0, 1, 2, 3)}
    qtbot.waitUntil(lambda: f"{VOLUME} [sparse]" in viewer.layers, timeout=LONG)

    # retrain: fine-tunes from the model just made, then predicts again
    review.retrain()
    assert train.is_running
    qtbot.waitUntil(lambda: train.last_result is not None and not train.is_running,
                    timeout=LONG)
    second = train.last_result
    assert second.status == "completed" and second.model_path != first.model_path
    spec = json.loads((second.run_dir / "run.json").read_text())
    assert spec["config"]["init_model"] == str(first.model_path)
    qtbot.waitUntil(lambda: review.model_path == second.model_path
                    and review.original is not None and not review._predicting, timeout=LONG)
    with Project.open(tiny_project) as project:
        assert [m.path for m in project.models()] == [first.model_path, second.model_path]
        assert [r.status for r in project.runs()] == ["completed", "completed"]
        assert project.annotation(VOLUME, "sparse").declared_slices == {0: (0, 1, 2, 3)}

    viewer.dims.set_current_step(0, 1)
    shot = save_screenshot(viewer, screenshot_dir / "loop_after_retrain.png")
    assert shot[..., :3].std() > 20
    assert np.asarray(review.prediction_layer.data).shape == prediction.data.shape
