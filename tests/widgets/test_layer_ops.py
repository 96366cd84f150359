"""Adding and removing overlay layers without the stalls of napari's defaults (issue 17)."""

from __future__ import annotations

import gc
import sys

import numpy as np
import pytest

from napari_weakseg.widgets import layer_ops


@pytest.fixture
def viewer(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((3, 16, 16), np.float32), name="image")
    viewer.add_labels(np.zeros((3, 16, 16), np.uint8), name="labels")
    return viewer


@pytest.mark.skipif(sys.platform == "win32", reason="napari's collection is kept on Windows")
def test_remove_layer_collects_only_new_objects_and_unfreezes(viewer):
    frozen_during_removal = []
    viewer.layers.events.removed.connect(
        lambda event: frozen_during_removal.append(gc.get_freeze_count()))
    before = gc.get_freeze_count()
    layer_ops.remove_layer(viewer, "labels")
    assert "labels" not in viewer.layers
    assert frozen_during_removal and frozen_during_removal[0] > before
    assert gc.get_freeze_count() == before


def test_remove_layer_unfreezes_when_the_removal_fails(viewer):
    before = gc.get_freeze_count()
    with pytest.raises((KeyError, ValueError)):
        layer_ops.remove_layer(viewer, "no such layer")
    assert gc.get_freeze_count() == before
    assert [layer.name for layer in viewer.layers] == ["image", "labels"]


@pytest.mark.parametrize("index, order", [
    (None, ["image", "labels", "new"]),
    (1, ["image", "new", "labels"]),
    (0, ["new", "image", "labels"]),
])
def test_insert_layer_leaves_the_active_layer(viewer, index, order):
    from napari.layers import Image

    viewer.layers.selection.active = viewer.layers["labels"]
    layer = Image(np.ones((3, 16, 16), np.float32), name="new")
    assert layer_ops.insert_layer(viewer, index, layer) is layer
    assert [layer.name for layer in viewer.layers] == order
    assert viewer.layers.selection.active.name == "labels"
    assert viewer.layers._activate_on_insert is True  # napari's default is back


def test_insert_layer_restores_napari_default_when_the_insert_fails(viewer):
    with pytest.raises(TypeError):
        layer_ops.insert_layer(viewer, None, "not a layer")
    assert viewer.layers._activate_on_insert is True
    assert [layer.name for layer in viewer.layers] == ["image", "labels"]


def test_add_labels_passes_the_layer_options_and_keeps_the_active_layer(viewer):
    viewer.layers.selection.active = viewer.layers["image"]
    data = np.ones((3, 16, 16), np.uint8)
    layer = layer_ops.add_labels(viewer, data, name="overlay", opacity=0.25,
                                 scale=(2.0, 1.0, 1.0), metadata={"k": "v"})
    assert viewer.layers[-1] is layer and layer.name == "overlay"
    assert layer.opacity == 0.25 and tuple(layer.scale) == (2.0, 1.0, 1.0)
    assert layer.metadata == {"k": "v"} and np.array_equal(layer.data, data)
    assert viewer.layers.selection.active.name == "image"
