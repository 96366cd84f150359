"""The docked annotation panel in a real napari window (Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_weakseg.io import read_volume
from napari_weakseg.schema import LabelSchema
from napari_weakseg.widgets.annotation import AnnotationPanel, brush_value


def _colour_present(rgba: np.ndarray, colour: tuple[float, ...], tol: int = 40) -> bool:
    target = np.array(colour[:3]) * 255
    return bool(np.any(np.all(np.abs(rgba[..., :3].astype(int) - target) < tol, axis=-1)))


def test_sample_and_docked_panel_render(make_napari_viewer, qtbot, screenshot_dir):
    from PIL import Image

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1400, 800)
    layers = viewer.open_sample("napari-weakseg", "cardiac")
    assert [type(layer).__name__ for layer in layers] == ["Image", "Labels", "Labels"]
    dock, panel = viewer.window.add_plugin_dock_widget("napari-weakseg", "Weak annotations")
    qtbot.waitUntil(lambda: panel.isVisible(), timeout=60000)
    assert panel.image_combo.currentText() == "cardiac (synthetic)"
    assert viewer.dims.axis_labels[-3:] == ("z", "y", "x")
    shot = viewer.screenshot(canvas_only=False, flash=False)
    Image.fromarray(shot).save(screenshot_dir / "annotation_panel_sample.png")
    assert shot.shape[0] > 400 and shot.shape[1] > 800
    assert shot[..., :3].std() > 20  # not blank
    canvas = viewer.screenshot(canvas_only=True, flash=False)
    schema = LabelSchema.cardiac()
    for label_class in schema.classes:  # every scribble colour is drawn on the canvas
        assert _colour_present(canvas, label_class.color), label_class.name


@pytest.mark.parametrize("kind, class_index, expected_value", [
    ("scribble", 0, 1), ("scribble", 3, 4), ("coarse_pos", 2, 3), ("coarse_neg", 2, 4),
    ("partial", 1, 2), ("sparse", 3, 4),
])
def test_annotate_creates_layer_on_image_grid(make_napari_viewer, tmp_path, kind, class_index,
                                              expected_value):
    from napari_weakseg.plugin import write_labels

    viewer = make_napari_viewer()
    image = viewer.open_sample("napari-weakseg", "cardiac")[0]
    panel = AnnotationPanel(viewer)
    panel.set_kind(kind)
    panel.set_class(class_index)
    layer = panel.start_annotating()
    assert layer.name == f"{image.name} [{kind}]"
    assert layer.data.shape == image.data.shape
    np.testing.assert_allclose(layer.scale, image.scale)
    assert layer.metadata["weakseg_kind"] == kind
    assert layer.selected_label == expected_value == brush_value(kind, class_index)
    assert layer.mode == "paint"
    # switching class re-targets the brush; pressing again reuses the same layer
    panel.set_class(1)
    assert layer.selected_label == brush_value(kind, 1)
    assert panel.start_annotating() is layer
    # a painted layer saves on the image's grid
    layer.data[4, 60:64, 60:64] = expected_value
    data, meta, _ = layer.as_layer_data_tuple()
    (written,) = write_labels(str(tmp_path / "annotation.nii.gz"), data, meta)
    saved = read_volume(written)
    np.testing.assert_array_equal(saved.data, layer.data)
    np.testing.assert_allclose(saved.geometry.affine, image.metadata["affine"])


def test_panel_without_images_says_what_to_do(make_napari_viewer):
    viewer = make_napari_viewer()
    panel = AnnotationPanel(viewer)
    assert not panel.annotate_button.isEnabled()
    assert "Open a volume" in panel.status.text()
    assert panel.start_annotating() is None
