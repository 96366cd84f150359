"""Annotate panel: pick an image, an annotation kind and a class; paint; it is saved.

The panel creates (or selects) one Labels layer per image and kind, on the image's grid
(same shape, scale and geometry metadata, so the NIfTI writer saves it on the image's
affine and header), coloured by the project's label schema, with the brush set to the
stored value of the chosen class (see ``docs/annotations.md``).

For a volume opened from a project (Project panel), every edit is saved to the store as a
new version once the edits settle (``autosave_ms`` after the last stroke or undo), when
the layer is removed (volume switch) and when the window closes; saves run in the
background and never overwrite anything (the store keeps every version, and "Restore"
brings an earlier one back as a new version — undoable with Ctrl-Z like any stroke).
Declarations: the classes delineated completely (``partial``) and the slices marked
complete (``sparse``; button or **Shift-K** on the current slice). **Ctrl+digit** (⌘ on
macOS) picks the class of the active annotation layer — or of the Review tab's prediction
layer while correcting it (:mod:`.shortcuts`: napari keeps its plain-digit layer modes).

Size: one Qt panel (its widgets, the layer events, and the Qt side of the autosave: the
debounce timer, the background runs, restore as an undoable edit); the autosave's state
machine (what to save, sequence order, one save at a time) is
:class:`~napari_weakseg.store.autosave.AnnotationAutosaver`, the other Qt-free parts live in
:mod:`.logic` and the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGridLayout, QGroupBox,
                            QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget)

from .. import layer_meta
from ..schema import LabelSchema, encode_class
from ..store.autosave import AnnotationAutosaver, SaveJob, Skip
from . import logic, shortcuts
from .logic import KINDS
from .workers import WindowCloseFilter, install_on_window

if TYPE_CHECKING:
    import napari

SLICE_SHORTCUT = shortcuts.SLICE_COMPLETE


def brush_value(kind: str, class_index: int) -> int:
    """The value painted for ``class_index`` in a layer of ``kind``."""
    if kind == "coarse_neg":
        return 1 << class_index  # bitmask: bit c set ⇔ "not class c"
    return int(encode_class(class_index))


#: Kinds whose layers hold whole slices or whole classes (accepted predictions): drawn
#: lighter, with the annotated background only tinted, so the image stays visible.
DENSE_KINDS = ("sparse", "partial", "dense")
#: Layer opacity by kind (strokes stay bold; whole-slice kinds do not hide the image).
KIND_OPACITY = {"sparse": 0.45, "partial": 0.45, "dense": 0.45}
#: Alpha of the annotated-background colour in whole-slice kinds.
BACKGROUND_TINT = 0.12


def annotation_colormap(kind: str, schema: LabelSchema) -> dict:
    if kind in DENSE_KINDS:
        colors = dict(schema.annotation_colormap())
        r, g, b, _ = colors[1]  # background annotated: a faint tint, not a slab of colour
        colors[1] = (r, g, b, BACKGROUND_TINT)
        return colors
    if kind != "coarse_neg":
        return schema.annotation_colormap()
    colors: dict = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0)}
    for i, label_class in enumerate(schema.classes):
        r, g, b, _ = label_class.color
        colors[1 << i] = (r * 0.6, g * 0.6, b * 0.6, 1.0)  # darker: "not" this class
    return colors


def _class_icon(color) -> QIcon:
    swatch = QPixmap(14, 14)
    swatch.fill(QColor.fromRgbF(*color))
    return QIcon(swatch)


class AnnotationPanel(QWidget):
    """Dock widget: choose image, kind and class; the right Labels layer is ready to paint.

    ``session``: shared with the other WeakSeg panels (``signals.Session``); a panel used
    alone makes its own (no project: layers are not autosaved).
    """

    def __init__(self, viewer: napari.viewer.Viewer, schema: LabelSchema | None = None,
                 session=None, autosave_ms: int = 1500):
        super().__init__()
        from .signals import Session
        from .workers import ThreadExecutor

        self.viewer = viewer
        self.session = session if session is not None else Session(ThreadExecutor())
        self.schema = schema or (self.session.project.schema if self.session.project
                                 else LabelSchema.cardiac())
        self._autosaver = AnnotationAutosaver()  # keys: id(layer)
        self._watched: dict[int, object] = {}
        self._versions_request = 0             # newest background refresh of the list
        self._versions_of = None               # (project, volume, kind) the list shows

        self.image_combo = QComboBox()
        self.kind_combo = QComboBox()
        for kind, text in KINDS.items():
            self.kind_combo.addItem(text, kind)
        self.class_combo = QComboBox()
        self.annotate_button = QPushButton("Annotate selected image")
        self.status = QLabel("Open a volume (File ▸ Open, or the WeakSeg sample) to start.")
        self.status.setWordWrap(True)

        self.complete_box = QGroupBox("Complete classes (partial; sparse slices)")
        self._complete_layout = QGridLayout(self.complete_box)
        self.class_checks: list[QCheckBox] = []
        self.slice_button = QPushButton(
            f"Mark slice complete ({shortcuts.shown(SLICE_SHORTCUT)})")
        self.keys_label = QLabel("")
        self.keys_label.setWordWrap(True)
        self.keys_label.setStyleSheet("color: gray")
        self.slices_label = QLabel("")
        self.slices_label.setWordWrap(True)

        self.save_label = QLabel("")
        self.save_label.setWordWrap(True)
        self.save_button = QPushButton("Save now")
        self.version_combo = QComboBox()
        self.restore_button = QPushButton("Restore")
        for combo in (self.image_combo, self.kind_combo, self.class_combo, self.version_combo):
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)

        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Kind", self.kind_combo)
        form.addRow("Class", self.class_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.annotate_button)
        layout.addWidget(self.status)
        layout.addWidget(self.complete_box)
        layout.addWidget(self.slice_button)
        layout.addWidget(self.slices_label)
        layout.addWidget(self.keys_label)
        history = QGroupBox("Saved versions")
        history_layout = QVBoxLayout(history)
        row = QHBoxLayout()
        row.addWidget(self.version_combo, 1)
        row.addWidget(self.restore_button)
        history_layout.addLayout(row)
        history_layout.addWidget(self.save_button)
        history_layout.addWidget(self.save_label)
        layout.addWidget(history)
        layout.addStretch(1)
        self._build_class_widgets()

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(autosave_ms)
        self._timer.timeout.connect(self._autosave)

        self.annotate_button.clicked.connect(self.start_annotating)
        self.class_combo.currentIndexChanged.connect(self._sync_brush)
        self.kind_combo.currentIndexChanged.connect(self._sync_controls)
        self.slice_button.clicked.connect(lambda: self.toggle_slice_complete())
        self.save_button.clicked.connect(lambda: self.save_now(sync=False))
        self.restore_button.clicked.connect(self._restore_selected)
        viewer.layers.events.inserted.connect(self._refresh_images)
        viewer.layers.events.removed.connect(self._refresh_images)
        viewer.layers.events.removing.connect(self._on_removing)
        viewer.layers.selection.events.active.connect(self._sync_controls)
        viewer.bind_key(SLICE_SHORTCUT, self._slice_shortcut, overwrite=True)
        for class_index, key in shortcuts.CLASS_KEYS.items():
            viewer.bind_key(key, self._class_shortcut(class_index), overwrite=True)
        self.session.project_changed.connect(self._on_project)
        self.session.volume_changed.connect(self._on_volume)
        self.session.annotations_changed.connect(self._on_store_changed)
        self._close_filter = WindowCloseFilter(lambda event: self.flush())
        self._refresh_images()
        self._sync_controls()

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

    def select_class(self, class_index: int):
        """What Ctrl+``class_index`` does: the class becomes the brush of the active
        layer — an annotation layer (in its kind's encoding) or the Review tab's
        prediction layer (plain class values) — and the panel's class. Returns the layer
        whose brush changed, or ``None``."""
        from napari.layers import Labels

        if not 0 <= class_index < self.schema.num_classes:
            self.status.setText(f"No class {class_index}: the schema has classes 0–"
                                f"{self.schema.num_classes - 1}.")
            return None
        self.set_class(class_index)  # an annotation layer follows (_sync_brush)
        layer = self.viewer.layers.selection.active
        if not isinstance(layer, Labels):
            return None
        name = self.schema.classes[class_index].name
        if layer.metadata.get(layer_meta.KIND):
            self.status.setText(f"Painting {name} into '{layer.name}'.")
            return layer
        if layer.metadata.get(layer_meta.ROLE) == layer_meta.Role.PREDICTION:
            layer.selected_label = class_index
            self.status.setText(f"Correcting '{layer.name}' with {name}.")
            return layer
        return None

    def start_annotating(self):
        """Create or select the annotation layer for (image, kind); set the brush."""
        image = self._current_image()
        if image is None:
            self.status.setText("No image layer to annotate.")
            return None
        layer = self.annotation_layer(self.kind, image=image, create=True)
        self.viewer.layers.selection.active = layer
        self._sync_brush()
        layer.mode = "paint"
        self.status.setText(f"Painting {self.schema.classes[self.class_index].name} "
                            f"({self.kind}) into '{layer.name}'.")
        return layer

    def annotation_layer(self, kind: str, *, image=None, create: bool = False, data=None):
        """The Labels layer of ``kind`` for ``image`` (default: the current image);
        created (empty, or holding ``data``) when ``create``."""
        image = image if image is not None else self._current_image()
        if image is None:
            return None
        name = f"{image.name} [{kind}]"
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            if data is not None:
                layer.data = np.asarray(data).astype(layer.data.dtype)
            return layer
        if not create:
            return None
        metadata = {**(image.metadata or {}), layer_meta.KIND: kind,
                    layer_meta.IMAGE: image.name,
                    layer_meta.DECLARED_CLASSES: (self.declared_classes or None)
                    if kind == "partial" else None,
                    layer_meta.DECLARED_SLICES: None}
        dtype = np.uint16 if kind == "coarse_neg" and self.schema.num_classes > 8 else np.uint8
        array = np.zeros(image.data.shape, dtype=dtype) if data is None \
            else np.asarray(data).astype(dtype)
        layer = self.viewer.add_labels(
            array, name=name, scale=image.scale, translate=image.translate, metadata=metadata,
            colormap=annotation_colormap(kind, self.schema),
            opacity=KIND_OPACITY.get(kind, 0.9),
            axis_labels=image.axis_labels, units=image.units)
        self._watch(layer)
        return layer

    @property
    def autosave_ms(self) -> int:
        """How long edits must settle before they are saved."""
        return self._timer.interval()

    @autosave_ms.setter
    def autosave_ms(self, value: int) -> None:
        self._timer.setInterval(int(value))

    @property
    def declared_classes(self) -> tuple[int, ...]:
        return tuple(i for i, box in enumerate(self.class_checks) if box.isChecked())

    def declare_classes(self, classes) -> None:
        """Tick the classes delineated completely (saved with the partial layer)."""
        wanted = {int(c) for c in classes}
        for i, box in enumerate(self.class_checks):
            box.blockSignals(True)
            box.setChecked(i in wanted)
            box.blockSignals(False)
        self._on_checks_changed()

    @property
    def complete_slices(self) -> dict[int, tuple[int, ...] | None]:
        layer = self.annotation_layer("sparse")
        if layer is None:
            return {}
        return dict(layer.metadata.get(layer_meta.DECLARED_SLICES) or {})

    def toggle_slice_complete(self, z: int | None = None) -> dict:
        """Mark slice ``z`` (default: the slice shown) complete in the sparse layer, or
        unmark it. The ticked classes are the slice's complete classes (none ticked or all
        ticked = every class)."""
        layer = self.annotation_layer("sparse", create=True)
        if layer is None:
            self.status.setText("No image layer to annotate.")
            return {}
        if z is None:
            z = int(self.viewer.dims.current_step[-3 if layer.ndim >= 3 else 0])
        checked = self.declared_classes
        classes = None if len(checked) in (0, self.schema.num_classes) else checked
        slices = logic.toggle_slice(layer.metadata.get(layer_meta.DECLARED_SLICES), z, classes)
        layer.metadata[layer_meta.DECLARED_SLICES] = slices or None
        self._show_slices(slices)
        self._schedule()
        return slices

    def save_now(self, sync: bool = True) -> list:
        """Save every annotation layer of a project volume whose state changed.

        ``sync``: on this thread (volume switch, close); else in the background.
        Returns the records saved synchronously.
        """
        self._timer.stop()
        records = []
        for layer in list(self._watched.values()):
            record = self._save_layer(layer, sync=sync)
            if record is not None:
                records.append(record)
        return records

    def flush(self) -> None:
        """Save pending edits now (called on volume switch and window close)."""
        self.save_now(sync=True)

    def versions(self, kind: str | None = None) -> list:
        """Saved versions (oldest first) of the current volume's ``kind`` annotation."""
        project, volume = self.session.project, self.session.volume
        if project is None or volume is None:
            return []
        return project.annotation_versions(volume, kind or self.kind)

    def restore_version(self, version: int, kind: str | None = None):
        """Bring back ``version`` as a new version and into the layer (undoable)."""
        from napari.utils.notifications import show_error

        kind = kind or self.kind
        project, volume = self.session.project, self.session.volume
        if project is None or volume is None:
            return None
        self.flush()
        try:
            record = project.restore_annotation(volume, kind, version,
                                                author=logic.current_author())
            annotation = project.annotation(volume, kind)
        except Exception as exc:
            show_error(f"Could not restore version {version}: {exc}")
            return None
        layer = self.annotation_layer(kind, create=True)
        self._apply_stored(layer, annotation, undoable=True)
        self._refresh_versions()
        self.save_label.setText(f"Restored v{version} as v{record.version}.")
        self.session.annotations_changed.emit(volume.name, kind)
        return record

    # -- internals ---------------------------------------------------------------------
    def _current_image(self):
        from napari.layers import Image

        name = self.image_combo.currentText()
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        return layer if isinstance(layer, Image) else None

    def _build_class_widgets(self):
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        for i, label_class in enumerate(self.schema.classes):
            self.class_combo.addItem(_class_icon(label_class.color),
                                     f"{i}  {label_class.name}", i)
            if i in shortcuts.CLASS_KEYS:
                self.class_combo.setItemData(i, shortcuts.shown(shortcuts.CLASS_KEYS[i]),
                                             Qt.ToolTipRole)
        self.class_combo.blockSignals(False)
        keys = shortcuts.class_keys_text(self.schema.num_classes)
        self.class_combo.setToolTip(f"The class to paint. {keys} on the image canvas picks "
                                    "it for the active annotation layer (or the prediction "
                                    "layer while correcting); napari keeps 1–7 for the "
                                    "layer's modes.")
        self.slice_button.setToolTip(f"{shortcuts.shown(SLICE_SHORTCUT)} on the image canvas "
                                     "marks the slice shown complete (again: unmarks it)")
        self.keys_label.setText(shortcuts.help_text(self.schema.num_classes))
        for box in self.class_checks:
            self._complete_layout.removeWidget(box)
            box.deleteLater()
        self.class_checks = []
        for i, label_class in enumerate(self.schema.classes):
            box = QCheckBox(label_class.name)
            box.setIcon(_class_icon(label_class.color))
            box.toggled.connect(self._on_checks_changed)
            self._complete_layout.addWidget(box, i // 2, i % 2)
            self.class_checks.append(box)

    def _refresh_images(self, event=None):
        from napari.layers import Image

        current = self.image_combo.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)
                 and not layer.metadata.get(layer_meta.ROLE)]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if self.session.image_layer is not None and self.session.image_layer.name in names:
            self.image_combo.setCurrentText(self.session.image_layer.name)
        elif current in names:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)
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
        if isinstance(layer, Labels) and layer.metadata.get(layer_meta.KIND):
            layer.selected_label = brush_value(layer.metadata[layer_meta.KIND],
                                               self.class_index)

    def _sync_controls(self, *_):
        """Show the declarations of the layer of the selected kind."""
        kind = self.kind
        self.complete_box.setEnabled(kind in ("partial", "sparse"))
        self.slice_button.setEnabled(kind == "sparse")
        layer = self.annotation_layer(kind)
        if layer is not None and kind == "partial":
            classes = layer.metadata.get(layer_meta.DECLARED_CLASSES) or ()
            for i, box in enumerate(self.class_checks):
                box.blockSignals(True)
                box.setChecked(i in classes)
                box.blockSignals(False)
        self._show_slices(layer.metadata.get(layer_meta.DECLARED_SLICES) if layer is not None
                          and kind == "sparse" else None)
        self._refresh_versions(only_if_changed=True)

    def _show_slices(self, slices):
        if self.kind != "sparse":
            self.slices_label.setText("")
        elif not slices:
            self.slices_label.setText("No slice marked complete yet ("
                                      f"{shortcuts.shown(SLICE_SHORTCUT)} marks the slice "
                                      "shown).")
        else:
            self.slices_label.setText("Complete slices: " + ", ".join(map(str, slices)))

    def _on_checks_changed(self, *_):
        if self.kind != "partial":
            return
        layer = self.annotation_layer("partial")
        if layer is not None:
            layer.metadata[layer_meta.DECLARED_CLASSES] = self.declared_classes or None
            self._schedule()

    def _class_shortcut(self, class_index: int):
        def select(viewer=None):
            self.select_class(class_index)

        select.__doc__ = f"WeakSeg: paint class {class_index}"
        return select

    def _slice_shortcut(self, viewer=None):
        self.set_kind("sparse")
        self.toggle_slice_complete()

    def _refresh_versions(self, only_if_changed: bool = False):
        """Refill the versions list from the store, in the background (a query waiting on
        the manifest while a training process writes to it stalled the viewer by ~40 ms:
        benchmarks/gui_latency.py --trace-stalls). ``only_if_changed``: skip it when the
        list already shows this volume and kind — the active layer changes often (every
        prediction or preview layer added) and the versions only change with a save."""
        project, volume = self.session.project, self.session.volume
        showing = (None if project is None else str(project.root),
                   None if volume is None else volume.name, self.kind)
        if only_if_changed and showing == self._versions_of:
            return
        self._versions_of = showing
        self._versions_request += 1
        request, kind = self._versions_request, self.kind

        def fill(records):
            if request != self._versions_request:
                return  # a newer refresh is on its way
            try:
                self.version_combo.clear()
            except RuntimeError:  # the panel was closed while the query ran
                return
            for record in reversed(records):
                self.version_combo.addItem(logic.version_label(record, self.schema.names),
                                           record.version)
            self.restore_button.setEnabled(len(records) > 1)

        self.session.executor.run(self.versions, kind, on_done=fill,
                                  on_error=lambda exc: fill([]))

    def _restore_selected(self):
        version = self.version_combo.currentData()
        if version is not None:
            self.restore_version(int(version))

    # -- autosave ----------------------------------------------------------------------
    def _watch(self, layer) -> None:
        if id(layer) in self._watched:
            return
        self._watched[id(layer)] = layer
        layer.events.paint.connect(self._schedule)
        layer.events.set_data.connect(self._schedule)
        self._autosaver.track(id(layer), self._layer_fingerprint(layer))

    def _unwatch(self, layer) -> None:
        if self._watched.pop(id(layer), None) is None:
            return
        layer.events.paint.disconnect(self._schedule)
        layer.events.set_data.disconnect(self._schedule)
        self._autosaver.forget(id(layer))

    def _schedule(self, *_):
        self._timer.start()

    def _autosave(self):
        self.save_now(sync=False)

    @staticmethod
    def _layer_fingerprint(layer) -> tuple:
        return logic.fingerprint(layer.data, layer.metadata.get(layer_meta.DECLARED_CLASSES),
                                 layer.metadata.get(layer_meta.DECLARED_SLICES))

    def _target(self, layer):
        """(project, volume record) a layer saves to, or ``None`` (not a project volume)."""
        project = self.session.project
        volume_name = layer.metadata.get(layer_meta.VOLUME)
        if project is None or volume_name is None or \
                layer.metadata.get(layer_meta.PROJECT) != str(project.root):
            return None
        return project, volume_name

    def _save_layer(self, layer, sync: bool):
        """Save ``layer`` if it changed (``sync``: on this thread); the ordering and the
        bookkeeping are :class:`~napari_weakseg.store.autosave.AnnotationAutosaver`'s."""
        from napari.utils.notifications import show_error

        target = self._target(layer)
        if target is None:
            return None
        project, volume = target
        kind = layer.metadata[layer_meta.KIND]
        job = self._autosaver.prepare(
            id(layer), project, volume, kind, layer.data,
            classes=layer.metadata.get(layer_meta.DECLARED_CLASSES),
            slices=layer.metadata.get(layer_meta.DECLARED_SLICES),
            background=not sync, author=logic.current_author())
        if job is Skip.IN_FLIGHT:
            self._schedule()  # a save of this layer is running; save again after it
        if not isinstance(job, SaveJob):
            return None
        if sync:
            try:
                record = self._autosaver.save(job)
            except Exception as exc:
                show_error(f"Autosave of {volume} ({kind}) failed: {exc}")
                return None
            self._saved_ok(layer, record)
            return record
        self.save_label.setText(f"Saving {kind}…")

        def done(record, layer=layer, job=job):
            self._autosaver.finished(job, record)
            self._saved_ok(layer, record)

        def failed(exc, job=job):
            self._autosaver.failed(job)
            self.save_label.setText(f"Autosave failed: {exc}")
            show_error(f"Autosave of {volume} ({kind}) failed: {exc}")

        self.session.executor.run(self._autosaver.run, job, on_done=done, on_error=failed)
        return None

    def _saved_ok(self, layer, record):
        """Show a save that stored ``record`` (``None``: nothing was stored)."""
        if record is None:
            return
        layer.metadata[layer_meta.SHA256] = record.sha256
        self.save_label.setText(f"Saved {record.kind} v{record.version} "
                                f"({logic.local_time(record.created_at)[11:]}).")
        if record.kind == self.kind:
            self._refresh_versions()
        self.session.annotations_changed.emit(record.volume_name, record.kind)

    def _on_removing(self, event):
        layer = event.value if hasattr(event, "value") else None
        if layer is None:
            index = getattr(event, "index", None)
            if index is not None and 0 <= index < len(self.viewer.layers):
                layer = self.viewer.layers[index]
        if layer is not None and id(layer) in self._watched:
            self._save_layer(layer, sync=True)
            self._unwatch(layer)

    # -- session -----------------------------------------------------------------------
    def _on_project(self, project):
        if project is not None and project.schema != self.schema:
            self.schema = project.schema
            self._build_class_widgets()
        self._refresh_versions()

    def _on_volume(self, volume):
        loaded = getattr(self.session, "loaded", None)
        image = self.session.image_layer
        self._refresh_images()
        if volume is None or image is None or loaded is None:
            self._refresh_versions()
            return
        for annotation in loaded.annotations:
            if annotation.record.kind not in KINDS:
                continue
            layer = self.annotation_layer(annotation.record.kind, image=image, create=True)
            self._apply_stored(layer, annotation, undoable=False)
        self._sync_controls()
        self.status.setText(f"{volume.name}: {len(loaded.annotations)} annotation layer(s) "
                            "loaded. Choose a kind and a class, then paint.")

    def _on_store_changed(self, volume_name: str, kind: str):
        """An annotation changed in the store from elsewhere (Review ▸ Accept): load the
        new version in the background and put it into the layer (undoable)."""
        volume, project = self.session.volume, self.session.project
        if volume is None or project is None or volume.name != volume_name or \
                kind not in KINDS:
            return
        layer = self.annotation_layer(kind)
        try:
            record = project.annotation_record(volume, kind)
        except Exception:
            return
        if layer is not None and record.sha256 == layer.metadata.get(layer_meta.SHA256):
            if kind == self.kind:
                self._refresh_versions()
            return  # the layer holds this version already (e.g. our own autosave)

        def done(annotation):
            if self.session.volume is None or self.session.volume.name != volume_name:
                return
            target = self.annotation_layer(kind, create=True)
            if target is not None:
                self._apply_stored(target, annotation, undoable=True)
            if kind == self.kind:
                self._refresh_versions()

        self.session.executor.run(project.annotation, volume, kind, on_done=done,
                                  on_error=lambda exc: None)

    def _apply_stored(self, layer, annotation, undoable: bool):
        """Put a stored version into ``layer`` (with Ctrl-Z history when ``undoable``)."""
        new = np.asarray(annotation.data).astype(layer.data.dtype)
        layer.metadata[layer_meta.DECLARED_CLASSES] = annotation.record.declared_classes
        layer.metadata[layer_meta.DECLARED_SLICES] = annotation.record.declared_slices
        layer.metadata[layer_meta.SHA256] = annotation.record.sha256
        if undoable and new.shape == layer.data.shape:
            changed = np.nonzero(layer.data != new)
            if changed[0].size:
                layer.data_setitem(changed, new[changed])
        else:
            layer.data = new
        self._autosaver.mark_saved(id(layer), self._layer_fingerprint(layer))

    # -- lifecycle ---------------------------------------------------------------------
    def showEvent(self, event):
        super().showEvent(event)
        install_on_window(self, self._close_filter)
