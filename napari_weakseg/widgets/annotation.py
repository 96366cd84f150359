"""Annotation panel: pick an image, an annotation kind and a class; paint.

The panel creates (or selects) one Labels layer per image and kind, on the image's grid
(same shape, scale and geometry metadata, so the NIfTI writer saves it on the image's
affine and header), coloured by the project's label schema, with the brush set to the
stored value of the chosen class (see ``docs/annotations.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtGui import QColor, QPixmap, QIcon
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..schema import LabelSchema, encode_class

if TYPE_CHECKING:
    import napari

KINDS = {
    "scribble": "Scribble — strokes: this voxel is the class",
    "coarse_pos": "Coarse + — rough mask inside a structure",
    "coarse_neg": "Coarse − — this voxel is NOT the class",
    "partial": "Partial — full masks of some classes only",
    "sparse": "Sparse — full masks on some slices",
}


def brush_value(kind: str, class_index: int) -> int:
    """The value painted for ``class_index`` in a layer of ``kind``."""
    if kind == "coarse_neg":
        return 1 << class_index  # bitmask: bit c set ⇔ "not class c"
    return int(encode_class(class_index))


def annotation_colormap(kind: str, schema: LabelSchema) -> dict:
    if kind != "coarse_neg":
        return schema.annotation_colormap()
    colors: dict = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0)}
    for i, label_class in enumerate(schema.classes):
        r, g, b, _ = label_class.color
        colors[1 << i] = (r * 0.6, g * 0.6, b * 0.6, 1.0)  # darker: "not" this class
    return colors


class AnnotationPanel(QWidget):
    """Dock widget: choose image, kind and class; the right Labels layer is ready to paint."""

    def __init__(self, viewer: napari.viewer.Viewer, schema: LabelSchema | None = None):
        super().__init__()
        self.viewer = viewer
        self.schema = schema or LabelSchema.cardiac()

        self.image_combo = QComboBox()
        self.kind_combo = QComboBox()
        for kind, text in KINDS.items():
            self.kind_combo.addItem(text, kind)
        self.class_combo = QComboBox()
        for i, label_class in enumerate(self.schema.classes):
            swatch = QPixmap(14, 14)
            swatch.fill(QColor.fromRgbF(*label_class.color))
            self.class_combo.addItem(QIcon(swatch), f"{i}  {label_class.name}", i)
        self.annotate_button = QPushButton("Annotate selected image")
        self.status = QLabel("Open a volume (File ▸ Open, or the WeakSeg sample) to start.")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Kind", self.kind_combo)
        form.addRow("Class", self.class_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.annotate_button)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.annotate_button.clicked.connect(self.start_annotating)
        self.class_combo.currentIndexChanged.connect(self._sync_brush)
        viewer.layers.events.inserted.connect(self._refresh_images)
        viewer.layers.events.removed.connect(self._refresh_images)
        self._refresh_images()

    # -- public API (used by tests and other panels) -----------------------------------
    @property
    def kind(self) -> str:
        return self.kind_combo.currentData()

    @property
    def class_index(self) -> int:
        return int(self.class_combo.currentData())

    def set_kind(self, kind: str) -> None:
        self.kind_combo.setCurrentIndex(list(KINDS).index(kind))

    def set_class(self, class_index: int) -> None:
        self.class_combo.setCurrentIndex(class_index)

    def start_annotating(self):
        """Create or select the annotation layer for (image, kind); set the brush."""
        from napari.layers import Image

        image = self.viewer.layers[self.image_combo.currentText()] \
            if self.image_combo.currentText() in self.viewer.layers else None
        if not isinstance(image, Image):
            self.status.setText("No image layer to annotate.")
            return None
        name = f"{image.name} [{self.kind}]"
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
        else:
            metadata = {**(image.metadata or {}), "weakseg_kind": self.kind,
                        "weakseg_image": image.name}
            dtype = np.uint16 if self.kind == "coarse_neg" and self.schema.num_classes > 8 \
                else np.uint8
            layer = self.viewer.add_labels(
                np.zeros(image.data.shape, dtype=dtype), name=name, scale=image.scale,
                translate=image.translate, metadata=metadata,
                colormap=annotation_colormap(self.kind, self.schema), opacity=0.9)
        self.viewer.layers.selection.active = layer
        self._sync_brush()
        layer.mode = "paint"
        self.status.setText(f"Painting {self.schema.classes[self.class_index].name} "
                            f"({self.kind}) into '{layer.name}'.")
        return layer

    # -- internals ---------------------------------------------------------------------
    def _refresh_images(self, event=None):
        from napari.layers import Image

        current = self.image_combo.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        self.annotate_button.setEnabled(bool(names))
        if names:
            self.status.setText("Choose a kind and a class, then press 'Annotate selected "
                                "image' and paint.")
        else:
            self.status.setText("Open a volume (File ▸ Open, or File ▸ Open Sample ▸ "
                                "WeakSeg) to start.")

    def _sync_brush(self, *_):
        from napari.layers import Labels

        layer = self.viewer.layers.selection.active
        if isinstance(layer, Labels) and layer.metadata.get("weakseg_kind"):
            layer.selected_label = brush_value(layer.metadata["weakseg_kind"], self.class_index)
