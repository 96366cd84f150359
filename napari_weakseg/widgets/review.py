"""Review panel: predict the open volume in the background, overlay the label map and the
uncertainty (entropy) map, correct the prediction by painting into it, accept it (or only
the corrected slices/classes) as a ``sparse``/``partial`` annotation, retrain from the
model, and see which slice / volume to annotate next (most uncertain first)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtWidgets import (QCheckBox, QComboBox, QGroupBox, QHBoxLayout, QLabel, QListWidget,
                            QPushButton, QVBoxLayout, QWidget)

from . import logic

if TYPE_CHECKING:
    import napari


class ReviewPanel(QWidget):
    """Prediction, uncertainty, accept and retrain for the open volume."""

    def __init__(self, viewer: napari.viewer.Viewer, session):
        super().__init__()
        self.viewer = viewer
        self.session = session
        self.prediction = None            # inference.predict.Prediction of the last run
        self.original = None              # the predicted labels as they came (dense)
        self.suggested_slices: list[tuple[int, float]] = []
        self.volume_ranking: list[tuple[str, float]] = []
        self.last_accepted = None         # AnnotationRecord of the last accept
        self.predict_seconds: float | None = None
        self._predicting = False
        self._image = None

        self.model_combo = QComboBox()
        self.predict_button = QPushButton("Predict current volume")
        self.post_combo = QComboBox()
        self.post_combo.setToolTip("How the raw network output is cleaned: as the model "
                                   "records (default), none, largest component per class, or "
                                   "anatomy (the organ's largest component + schema rules)")
        for text, key in (("Post-processing: as the model recommends", None),
                          ("Post-processing: none (raw network output)", "none"),
                          ("Post-processing: largest component per class", "largest"),
                          ("Post-processing: anatomy (organ + schema rules)", "anatomy")):
            self.post_combo.addItem(text, key)
        self.auto_check = QCheckBox("Predict when training ends")
        self.auto_check.setToolTip("Predict the open volume with each new model")
        self.auto_check.setChecked(True)
        self.mode_combo = QComboBox()
        for key, text in logic.ACCEPT_MODES.items():
            self.mode_combo.addItem(text, key)
        self.accept_button = QPushButton("Accept into annotations")
        self.retrain_button = QPushButton("Retrain (fine-tune from this model)")
        self.suggest_label = QLabel("")
        self.suggest_label.setWordWrap(True)
        self.next_button = QPushButton("Go to most uncertain slice")
        self.rank_button = QPushButton("Rank volumes by uncertainty")
        self.rank_list = QListWidget()
        self.rank_list.setMaximumHeight(110)
        self.status = QLabel("Train a model (Train tab) or pick one, then predict.")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Model"))
        row.addWidget(self.model_combo, 1)
        layout.addLayout(row)
        layout.addWidget(self.predict_button)
        layout.addWidget(self.post_combo)
        layout.addWidget(self.auto_check)
        accept_box = QGroupBox("Correct, then accept")
        accept_layout = QVBoxLayout(accept_box)
        hint = QLabel("Paint corrections into the prediction layer (eraser = background).")
        hint.setWordWrap(True)
        accept_layout.addWidget(hint)
        accept_layout.addWidget(self.mode_combo)
        accept_layout.addWidget(self.accept_button)
        accept_layout.addWidget(self.retrain_button)
        layout.addWidget(accept_box)
        suggest_box = QGroupBox("Annotate next")
        suggest_layout = QVBoxLayout(suggest_box)
        suggest_layout.addWidget(self.suggest_label)
        suggest_layout.addWidget(self.next_button)
        suggest_layout.addWidget(self.rank_button)
        suggest_layout.addWidget(self.rank_list)
        layout.addWidget(suggest_box)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.predict_button.clicked.connect(lambda: self.predict())
        self.accept_button.clicked.connect(lambda: self.accept())
        self.retrain_button.clicked.connect(self.retrain)
        self.next_button.clicked.connect(self.go_to_next_slice)
        self.rank_button.clicked.connect(self.rank_volumes)
        self.rank_list.itemDoubleClicked.connect(
            lambda item: self.session.open_volume_requested.emit(item.data(256)))
        session.project_changed.connect(lambda *_: self.refresh_models())
        session.models_changed.connect(self.refresh_models)
        session.model_changed.connect(self._on_new_model)
        session.volume_changed.connect(self._on_volume)
        session.training_state.connect(lambda *_: self._update_buttons())
        self.refresh_models()

    # -- public API --------------------------------------------------------------------
    @property
    def model_path(self) -> Path | None:
        choice = self.model_combo.currentData()
        return None if choice is None else choice.path

    def set_model(self, path: str | Path) -> None:
        target = Path(path).resolve()
        for i in range(self.model_combo.count()):
            if Path(self.model_combo.itemData(i).path).resolve() == target:
                self.model_combo.setCurrentIndex(i)
                return
        self.model_combo.addItem(f"folder: {target.name}",
                                 logic.ModelChoice(str(target), target, "folder"))
        self.model_combo.setCurrentIndex(self.model_combo.count() - 1)
        self._update_buttons()

    def refresh_models(self) -> None:
        current = self.model_path
        self.model_combo.clear()
        for choice in logic.model_choices(self.session.project):
            if choice.path is not None:
                self.model_combo.addItem(choice.label, choice)
        if current is not None:
            self.set_model(current)
        self._update_buttons()

    def image_layer(self):
        """The image to predict: the open project volume, else the selected image layer."""
        from napari.layers import Image

        if self.session.image_layer is not None and self.session.image_layer in self.viewer.layers:
            return self.session.image_layer
        active = self.viewer.layers.selection.active
        if isinstance(active, Image) and not active.metadata.get("weakseg_role"):
            return active
        images = [layer for layer in self.viewer.layers if isinstance(layer, Image)
                  and not layer.metadata.get("weakseg_role")]
        return images[-1] if images else None

    def predict(self, model_path: str | Path | None = None) -> bool:
        """Predict the current volume in the background; the overlays appear when done."""
        from napari.utils.notifications import show_error

        if model_path is not None:
            self.set_model(model_path)
        image = self.image_layer()
        if image is None or self.model_path is None:
            self.status.setText("Needs an open volume and a model.")
            return False
        if self._predicting:
            return False
        self._predicting = True
        self._image = image
        self._update_buttons()
        started = time.perf_counter()
        model = self.model_path
        self.status.setText(f"Predicting {image.name} with {model.name}…")

        def done(prediction):
            self._predicting = False
            self.predict_seconds = time.perf_counter() - started
            if image in self.viewer.layers:
                self._show_prediction(image, prediction, model)
            self._update_buttons()

        def failed(exc):
            self._predicting = False
            self._update_buttons()
            self.status.setText(f"Prediction failed: {exc}")
            show_error(f"WeakSeg prediction failed: {exc}")

        spacing = tuple(float(s) for s in image.scale[-3:]) if image.ndim >= 3 else None
        self.session.executor.run(logic.predict_image, model, np.asarray(image.data),
                                  spacing=spacing, postprocess=self.post_combo.currentData(),
                                  on_done=done, on_error=failed)
        return True

    @property
    def prediction_layer(self):
        image = self._image or self.image_layer()
        name = f"{image.name} [prediction]" if image is not None else None
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    @property
    def uncertainty_layer(self):
        image = self._image or self.image_layer()
        name = f"{image.name} [uncertainty]" if image is not None else None
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def accept(self, mode: str | None = None):
        """Save the (corrected) prediction as an annotation of the open volume.

        ``mode``: a key of ``logic.ACCEPT_MODES`` (default: the one selected). Runs in the
        background; ``session.annotations_changed`` tells the Annotate panel to reload.
        """
        from napari.utils.notifications import show_error, show_warning

        if mode is not None:
            self.mode_combo.setCurrentIndex(self.mode_combo.findData(mode))
        mode = self.mode_combo.currentData()
        project, volume, layer = self.session.project, self.session.volume, \
            self.prediction_layer
        if project is None or volume is None or layer is None or self.original is None:
            self.status.setText("Predict a project volume first.")
            return None
        try:
            accepted = logic.accepted_annotation(
                np.asarray(layer.data), self.original, mode, project.num_classes,
                current_slice=int(self.viewer.dims.current_step[0]),
                class_names=project.schema.names)
        except ValueError as exc:
            show_warning(str(exc))
            self.status.setText(str(exc))
            return None

        def done(record):
            self.last_accepted = record
            self.status.setText(f"Accepted {accepted.summary} → {record.kind} "
                                f"v{record.version}. Retrain to learn from it.")
            self.session.annotations_changed.emit(volume.name, record.kind)

        self.session.executor.run(logic.save_accepted, project, volume, accepted,
                                  author=logic.current_author(), on_done=done,
                                  on_error=lambda exc: show_error(f"Accept failed: {exc}"))
        return accepted

    def retrain(self) -> None:
        """Fine-tune from the selected model on the project's current annotations."""
        if self.model_path is not None:
            self.session.retrain_requested.emit(self.model_path)

    def go_to_next_slice(self) -> int | None:
        """Show the most uncertain slice not yet complete."""
        if not self.suggested_slices:
            return None
        z = self.suggested_slices[0][0]
        self.viewer.dims.set_current_step(0, z)
        return z

    def rank_volumes(self) -> None:
        """Predict the training-candidate volumes in the background; most uncertain
        first (double-click one to open it)."""
        from napari.utils.notifications import show_error

        project = self.session.project
        if project is None or self.model_path is None:
            return
        self.rank_button.setEnabled(False)
        self.status.setText("Ranking volumes by uncertainty…")

        def done(ranking):
            self.volume_ranking = ranking
            self.rank_list.clear()
            for name, score in ranking:
                self.rank_list.addItem(f"{name}   mean entropy {score:.3f}")
                self.rank_list.item(self.rank_list.count() - 1).setData(256, name)
            self.rank_button.setEnabled(True)
            if ranking:
                self.status.setText(f"Most uncertain volume: {ranking[0][0]} (double-click "
                                    "to open).")

        def failed(exc):
            self.rank_button.setEnabled(True)
            show_error(f"Ranking failed: {exc}")

        self.session.executor.run(logic.rank_volumes, project.root, self.model_path,
                                  on_done=done, on_error=failed)

    # -- internals ---------------------------------------------------------------------
    def _show_prediction(self, image, prediction, model: Path) -> None:
        project = self.session.project
        schema = project.schema if project is not None else None
        if schema is None:
            from ..schema import LabelSchema

            schema = LabelSchema.cardiac()
        self.prediction = prediction
        self.original = np.array(prediction.labels, copy=True)
        base = {"scale": image.scale, "translate": image.translate,
                "axis_labels": image.axis_labels, "units": image.units}
        metadata = dict(image.metadata or {})  # geometry + volume/project (removed on switch)
        name = f"{image.name} [prediction]"
        if name in self.viewer.layers:
            self.viewer.layers[name].data = np.array(prediction.labels, copy=True)
        else:
            self.viewer.add_labels(np.array(prediction.labels, copy=True), name=name,
                                   colormap=schema.dense_colormap(), opacity=0.5,
                                   metadata={**metadata, "weakseg_role": "prediction"}, **base)
        self._show_uncertainty(image, prediction.entropy, schema, metadata, base)
        if self.viewer.layers.selection.active is not self.viewer.layers[name]:
            self.viewer.layers.selection.active = self.viewer.layers[name]
        done = set()
        if self.session.volume is not None and project is not None:
            try:
                done = logic.complete_slices(project.annotations(self.session.volume))
            except Exception:
                done = set()
        self.suggested_slices = logic.rank_slices(prediction.entropy, exclude=done)
        top = ", ".join(f"z={z} ({s:.2f})" for z, s in self.suggested_slices[:3])
        self.suggest_label.setText(f"Most uncertain slices (mean entropy): {top}" if top
                                   else "Every slice is already complete.")
        post = getattr(prediction, "postprocess", None)
        self.status.setText(f"Predicted {image.name} with {model.name} in "
                            f"{self.predict_seconds:.2f} s"
                            + (f" (post-processing: {post})" if post else "")
                            + ". Correct it by painting, then accept.")

    def _show_uncertainty(self, image, entropy, schema, metadata, base) -> None:
        """The entropy map, below the label map, on the next turn of the event loop: the
        viewer repaints in between instead of stalling for both layers at once (building
        a napari layer takes a few hundred ms of main-thread time on a slow machine)."""
        from qtpy.QtCore import QTimer

        name = f"{image.name} [uncertainty]"
        limits = (0.0, max(math.log(schema.num_classes), 1e-3))

        def show():
            if image not in self.viewer.layers or self.prediction is None or \
                    self.prediction.entropy is not entropy:
                return  # the volume changed or a newer prediction came
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                layer.data[...] = entropy
                layer.refresh()
                return
            layer = self.viewer.add_image(
                entropy, name=name, colormap="magma", blending="additive", opacity=0.4,
                contrast_limits=limits, metadata={**metadata, "weakseg_role": "uncertainty"},
                **base)
            prediction = self.prediction_layer
            if prediction is not None:  # keep the label map on top
                self.viewer.layers.move(self.viewer.layers.index(layer),
                                        self.viewer.layers.index(prediction))
                self.viewer.layers.selection.active = prediction

        QTimer.singleShot(0, show)

    def _on_new_model(self, path) -> None:
        if path is None:
            return
        self.refresh_models()
        self.set_model(path)
        if self.auto_check.isChecked() and self.image_layer() is not None:
            self.predict()

    def _on_volume(self, volume) -> None:
        self.prediction = None
        self.original = None
        self.suggested_slices = []
        self._image = None
        self.suggest_label.setText("")
        self._update_buttons()

    def _update_buttons(self) -> None:
        has_model = self.model_path is not None
        self.predict_button.setEnabled(has_model and not self._predicting)
        self.rank_button.setEnabled(has_model and self.session.project is not None)
        has_prediction = self.original is not None and self.session.volume is not None
        self.accept_button.setEnabled(has_prediction)
        self.next_button.setEnabled(bool(self.suggested_slices))
        self.retrain_button.setEnabled(has_model and self.session.project is not None)
