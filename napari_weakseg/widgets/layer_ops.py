"""Adding and removing the plugin's overlay layers without stalling the viewer.

Two costs of napari 0.9 that the panels hit on every prediction, measured under Xvfb
(``benchmarks/gui_latency.py --trace-stalls``; issue 17):

* **Removing a layer runs a full garbage collection.** ``VispyCanvas._remove_layer`` calls
  ``gc.collect()`` (then ``glFinish``) to work around an OpenGL driver bug on Windows. A
  full collection walks every object the process tracks; once torch is loaded for
  predictions that is hundreds of milliseconds of the GUI thread (312 ms of a 458 ms removal
  profiled on this project's machine). :func:`remove_layer` *freezes* the tracked objects
  (``gc.freeze``, public since Python 3.7) for the removal, so that collection walks only
  what is new, and unfreezes them after: the removed layer's cyclic garbage is left to the
  interpreter's own next full collection instead of being collected on the spot. Nothing
  is leaked — unfreezing returns every object to the oldest generation. Not on Windows,
  where that immediate collection is napari's guard against a driver crash.
* **Inserting a layer makes it the active one** (``LayerList._activate_on_insert``), which
  rebuilds the layer-controls panel for it; the panels then restore the user's active
  layer, which rebuilds it again. :func:`insert_layer` inserts overlays without activating
  them.

Both fall back to napari's plain behaviour where its internals differ.
"""

from __future__ import annotations

import gc
import sys
from contextlib import contextmanager


@contextmanager
def collections_skip_existing_objects():
    """Within the block, ``gc.collect()`` walks only objects created inside it."""
    if sys.platform == "win32" or not hasattr(gc, "freeze"):
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def remove_layer(viewer, layer) -> None:
    """``viewer.layers.remove(layer)`` (a layer or its name) without napari's full garbage
    collection stalling the GUI thread (see the module docstring)."""
    with collections_skip_existing_objects():
        viewer.layers.remove(layer)


def insert_layer(viewer, index: int | None, layer):
    """Insert ``layer`` at ``index`` (``None``: on top) of ``viewer.layers`` without making
    it the active layer (the user's layer and tool stay). Returns the layer."""
    layers = viewer.layers
    index = len(layers) if index is None else index
    if not hasattr(layers, "_activate_on_insert"):
        active = layers.selection.active
        layers.insert(index, layer)
        if active is not None and active in layers:
            layers.selection.active = active
        return layer
    before = layers._activate_on_insert
    layers._activate_on_insert = False
    try:
        layers.insert(index, layer)
    finally:
        layers._activate_on_insert = before
    return layer


def add_labels(viewer, data, **kwargs):
    """``viewer.add_labels(data, **kwargs)`` that leaves the active layer alone. Returns the
    layer."""
    from napari.layers import Labels

    return insert_layer(viewer, None, Labels(data, **kwargs))
