"""Review panel: predict the open volume in the background, overlay the label map and the
uncertainty (entropy) map, correct the prediction by painting into it, accept it (or only
the corrected slices/classes) as a ``sparse``/``partial`` annotation, retrain from the
model, and see which slice / volume to annotate next (most uncertain first).

A project volume with stored ground truth also gets it as a contour layer (not editable)
and a per-class table of 3D Dice and HD95 (mm, the volume's spacing) of the shown
prediction against it — computed in the background by
:func:`napari_weakseg.evaluation.metrics.evaluate_volume` and again after corrections.
Keys (:mod:`.shortcuts`): Shift+Enter accepts the slice shown, Shift+N goes to the next
suggested slice (Ctrl+digit, bound by the Annotate panel, picks the correction's class).

Size: one Qt panel with seven steps (predict, overlay, compare with the ground truth,
correct, accept, retrain, suggest); their logic lives in :mod:`.logic`,
:mod:`napari_weakseg.weak.accept`, :mod:`napari_weakseg.evaluation` and
:mod:`napari_weakseg.inference.suggest`.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QGroupBox, QHBoxLayout,
                            QHeaderView, QLabel, QListWidget, QPushButton, QTableWidget,
                            QTableWidgetItem, QVBoxLayout, QWidget)

from .. import layer_meta
from ..inference.suggest import SuggestFor
from . import layer_ops, logic, shortcuts
from .annotation import _class_icon

if TYPE_CHECKING:
    import napari


#: The characters of the live-preview banner ("LIVE PREVIEW · iteration N"), drawn ahead
#: while a run starts (``ReviewPanel._draw_next_glyph``).
BANNER_GLYPHS = "LIVEPRVW·iteration0123456789"


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
        self._frame: int | None = None    # the frame (t) of a 4D image last predicted
        self._previewing = False          # a live preview prediction is running
        self._pending_preview = None      # the newest preview event not predicted yet
        self.preview_event = None         # training.events.Preview last shown
        self._entropy_to_show = None
        self._generation = 0              # +1 per final prediction: late previews are dropped
        self.truth_check = None           # logic.GroundTruthCheck of the open volume
        self._score_request = 0           # +1 per scoring: late results are dropped
        self._scored = None               # fingerprint of the labels last scored
        self._watched_layer = None        # the prediction layer whose edits rescore
        self._visited: set[int] = set()   # suggested slices already shown (Shift+N)
        self._suggest_text = ""
        self._frame_text = ""   # " of frame t=N" for a 4D series' frame
        self._banner_glyphs = list(dict.fromkeys(BANNER_GLYPHS))  # not drawn yet
        self._glyph_timer = QTimer(self)
        self._glyph_timer.setInterval(40)
        self._glyph_timer.timeout.connect(self._draw_next_glyph)

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
        self.preview_check = QCheckBox("Live preview while training")
        self.preview_check.setToolTip("Predict the open volume with the latest weights "
                                      "while a run trains (the Train tab sets how often); "
                                      "shown as a [preview] layer until the final "
                                      "prediction replaces it")
        self.preview_check.setChecked(True)
        self.mode_combo = QComboBox()
        for key, text in logic.ACCEPT_MODES.items():
            self.mode_combo.addItem(text, key)
        self.accept_button = QPushButton("Accept into annotations")
        self.accept_button.setToolTip(
            "Save the corrected prediction as an annotation "
            f"({shortcuts.shown(shortcuts.ACCEPT_SLICE)} on the image canvas: the slice "
            "shown, as a complete sparse slice)")
        self.retrain_button = QPushButton("Retrain (fine-tune from this model)")
        self.suggest_label = QLabel("")
        self.suggest_label.setWordWrap(True)
        self.suggest_combo = QComboBox()
        for purpose, text in logic.SUGGEST_PURPOSES.items():
            self.suggest_combo.addItem(text, purpose.value)
        self.suggest_combo.setToolTip(
            "To correct: the slices the model is least sure about. To scribble: unsure "
            "slices that show every structure — a fine-tune on scribbles of the most "
            "unsure slices (mostly the ends of the stack, nearly all background) can "
            "unlearn a structure.")
        self.next_button = QPushButton(
            f"Next suggested slice ({shortcuts.shown(shortcuts.NEXT_SLICE)})")
        self.next_button.setToolTip("The most uncertain slice not complete yet; again: the "
                                    "next one")
        self.rank_button = QPushButton("Rank volumes by uncertainty")
        self.rank_list = QListWidget()
        self.rank_list.setMaximumHeight(110)
        self.status = QLabel("Train a model (Train tab) or pick one, then predict.")
        self.status.setWordWrap(True)
        self.truth_box = QGroupBox("Ground truth (stored for this volume)")
        self.truth_label = QLabel("")
        self.truth_label.setWordWrap(True)
        self.truth_table = QTableWidget(0, 3)
        self.truth_table.setHorizontalHeaderLabels(["Class", "Dice", "HD95 (mm)"])
        self.truth_table.verticalHeader().setVisible(False)
        self.truth_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.truth_table.setSelectionMode(QAbstractItemView.NoSelection)
        self.truth_table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.truth_box.setVisible(False)
        self.keys_label = QLabel(f"Keys: {shortcuts.shown(shortcuts.ACCEPT_SLICE)} accept "
                                 f"the slice shown · {shortcuts.shown(shortcuts.NEXT_SLICE)} "
                                 "next suggested slice · Ctrl+digit the class to paint")
        self.keys_label.setWordWrap(True)
        self.keys_label.setStyleSheet("color: gray")
        self._rescore_timer = QTimer(self)
        self._rescore_timer.setSingleShot(True)
        self._rescore_timer.setInterval(600)
        self._rescore_timer.timeout.connect(self._rescore)

        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Model"))
        row.addWidget(self.model_combo, 1)
        layout.addLayout(row)
        layout.addWidget(self.predict_button)
        layout.addWidget(self.post_combo)
        layout.addWidget(self.auto_check)
        layout.addWidget(self.preview_check)
        truth_layout = QVBoxLayout(self.truth_box)
        truth_layout.addWidget(self.truth_label)
        truth_layout.addWidget(self.truth_table)
        layout.addWidget(self.truth_box)
        accept_box = QGroupBox("Correct, then accept")
        accept_layout = QVBoxLayout(accept_box)
        hint = QLabel("Paint corrections into the prediction layer (eraser = background).")
        hint.setWordWrap(True)
        accept_layout.addWidget(hint)
        accept_layout.addWidget(self.mode_combo)
        accept_layout.addWidget(self.accept_button)
        accept_layout.addWidget(self.retrain_button)
        accept_layout.addWidget(self.keys_label)
        layout.addWidget(accept_box)
        suggest_box = QGroupBox("Annotate next")
        suggest_layout = QVBoxLayout(suggest_box)
        suggest_layout.addWidget(self.suggest_combo)
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
        self.suggest_combo.currentIndexChanged.connect(lambda *_: self._rank_shown())
        self.rank_button.clicked.connect(self.rank_volumes)
        self.rank_list.itemDoubleClicked.connect(
            lambda item: self.session.open_volume_requested.emit(item.data(256)))
        session.project_changed.connect(lambda *_: self.refresh_models())
        session.models_changed.connect(self.refresh_models)
        session.model_changed.connect(self._on_new_model)
        session.volume_changed.connect(self._on_volume)
        session.training_state.connect(lambda *_: self._update_buttons())
        session.training_state.connect(self._on_training_state)
        session.preview_ready.connect(self._on_preview)
        viewer.bind_key(shortcuts.ACCEPT_SLICE, self._accept_shortcut, overwrite=True)
        viewer.bind_key(shortcuts.NEXT_SLICE, self._next_shortcut, overwrite=True)
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
        if isinstance(active, Image) and not active.metadata.get(layer_meta.ROLE):
            return active
        images = [layer for layer in self.viewer.layers if isinstance(layer, Image)
                  and not layer.metadata.get(layer_meta.ROLE)]
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
        try:
            data, frame, spacing = self._volume_to_predict(image)
        except ValueError as exc:
            self._clear_suggestions()
            self.status.setText(str(exc))
            show_error(f"WeakSeg: {exc}")
            return False
        self._predicting = True
        self._image = image
        self._clear_suggestions()  # never show the previous prediction's slices
        self._update_buttons()
        started = time.perf_counter()
        model = self.model_path
        what = image.name if frame is None else f"{image.name} (frame t={frame})"
        self.status.setText(f"Predicting {what} with {model.name}…")

        def done(prediction):
            self._predicting = False
            self.predict_seconds = time.perf_counter() - started
            if image in self.viewer.layers:
                self._show_prediction(image, prediction, model, frame)
            self._update_buttons()

        def failed(exc):
            self._predicting = False
            self._clear_suggestions()
            self._update_buttons()
            self.status.setText(f"Prediction failed: {exc}")
            show_error(f"WeakSeg prediction failed: {exc}")

        self.session.executor.run(logic.predict_image, model, data,
                                  spacing=spacing, postprocess=self.post_combo.currentData(),
                                  on_done=done, on_error=failed)
        return True

    def _volume_to_predict(self, image):
        """``(Z, Y, X) data, frame, spacing`` of ``image``: a 3D volume as it is; a 4D
        cine series (t, z, y, x) one frame at a time — the frame under the time slider.
        Raises ``ValueError`` with a message for anything else."""
        data = image.data
        if image.ndim == 3:
            frame = None
        elif image.ndim == 4:
            frame = int(self.viewer.dims.current_step[0]) if self.viewer.dims.ndim >= 4 \
                else 0
            frame = min(max(frame, 0), data.shape[0] - 1)
            data = data[frame]
        else:
            raise ValueError(f"{image.name}: a {image.ndim}D image cannot be predicted; the "
                             "models segment 3D volumes (z, y, x) or 4D cine series "
                             "(t, z, y, x), one frame at a time")
        spacing = tuple(float(s) for s in image.scale[-3:])
        return np.asarray(data), frame, spacing

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
        if layer is not None and np.ndim(layer.data) != 3:
            self.status.setText("Accept works on 3D project volumes; a 4D cine series is "
                                "predicted frame by frame for review only.")
            return None
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
            if accepted.kind == "sparse" and accepted.slices:  # complete now: not suggested
                self.suggested_slices = [(z, score) for z, score in self.suggested_slices
                                         if z not in accepted.slices]
                self._show_suggestions()
            self.session.annotations_changed.emit(volume.name, record.kind)

        self.session.executor.run(logic.save_accepted, project, volume, accepted,
                                  author=logic.current_author(), on_done=done,
                                  on_error=lambda exc: show_error(f"Accept failed: {exc}"))
        return accepted

    def retrain(self) -> None:
        """Fine-tune from the selected model on the project's current annotations."""
        if self.model_path is not None:
            self.session.retrain_requested.emit(self.model_path)

    def accept_current_slice(self):
        """What Shift+Enter does: accept the slice shown as a complete sparse slice (the
        mode chosen in the list stays chosen)."""
        index = self.mode_combo.currentIndex()
        try:
            return self.accept("current_slice")
        finally:
            self.mode_combo.setCurrentIndex(index)

    def go_to_next_slice(self) -> int | None:
        """Show the most uncertain slice not complete yet; called again (Shift+N), the
        next one in the ranking, from the top once every suggestion was shown."""
        if not self.suggested_slices:
            return None
        ranking = [z for z, _ in self.suggested_slices]
        pending = [z for z in ranking if z not in self._visited]
        if not pending:
            self._visited.clear()
            pending = ranking
        z = pending[0]
        self._visited.add(z)
        image = self._image or self.image_layer()
        axis = (image.ndim - 3) if image is not None and image.ndim >= 3 else 0
        self.viewer.dims.set_current_step(axis, z)
        self.status.setText(
            f"Slice z={z}: suggestion {ranking.index(z) + 1} of {len(ranking)}. Correct it, "
            f"then {shortcuts.shown(shortcuts.ACCEPT_SLICE)} accepts it; "
            f"{shortcuts.shown(shortcuts.NEXT_SLICE)} goes on.")
        return z

    @property
    def ground_truth_layer(self):
        image = self._image or self.image_layer()
        name = f"{image.name} [ground truth]" if image is not None else None
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

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
    def _schema(self):
        project = self.session.project
        if project is not None:
            return project.schema
        from ..schema import LabelSchema

        return LabelSchema.cardiac()

    @staticmethod
    def _layer_base(image) -> dict:
        return {"scale": image.scale, "translate": image.translate,
                "axis_labels": image.axis_labels, "units": image.units}

    @staticmethod
    def _on_image_grid(image, volume: np.ndarray, frame: int | None, layer=None):
        """``volume`` (z, y, x) as the image's data: itself for a 3D image; for a 4D one,
        frame ``frame`` of ``layer``'s data when that layer has the image's shape (other
        frames predicted earlier are kept), else of a new zero array."""
        if frame is None:
            return np.array(volume, copy=True)
        shape = tuple(image.data.shape)
        if layer is not None and tuple(np.shape(layer.data)) == shape and \
                np.asarray(layer.data).dtype == volume.dtype:
            out = np.array(layer.data, copy=True)
        else:
            out = np.zeros(shape, dtype=volume.dtype)
        out[frame] = volume
        return out

    def _show_prediction(self, image, prediction, model: Path, frame: int | None = None
                         ) -> None:
        schema = self._schema()
        self.prediction = prediction
        self._frame = frame
        self._generation += 1
        self.original = np.array(prediction.labels, copy=True) if frame is None else None
        base = self._layer_base(image)
        metadata = dict(image.metadata or {})  # geometry + volume/project (removed on switch)
        name = f"{image.name} [prediction]"
        existing = self.viewer.layers[name] if name in self.viewer.layers else None
        preview = self.preview_layer
        if existing is None and preview is not None and preview.name == \
                f"{image.name} [preview]":
            # the live preview's layer becomes the prediction's: a rename, where removing
            # one layer and building another stalls the viewer (layer controls, shaders)
            preview.name = name
            preview.metadata = {**metadata, layer_meta.ROLE: layer_meta.Role.PREDICTION}
            existing = preview
        self._remove_preview(image)  # the final prediction replaces the live preview
        labels = self._on_image_grid(image, np.asarray(prediction.labels), frame, existing)
        if existing is not None:
            existing.data = labels
        else:
            self.viewer.add_labels(labels, name=name,
                                   colormap=schema.dense_colormap(), opacity=0.5,
                                   metadata={**metadata,
                                             layer_meta.ROLE: layer_meta.Role.PREDICTION},
                                   **base)
        entropy = prediction.entropy if frame is None else self._on_image_grid(
            image, np.asarray(prediction.entropy, dtype=np.float32), frame,
            self.uncertainty_layer)
        self._show_uncertainty(image, entropy, schema, metadata, base)
        if self.viewer.layers.selection.active is not self.viewer.layers[name]:
            self.viewer.layers.selection.active = self.viewer.layers[name]
        self._frame_text = "" if frame is None else f" of frame t={frame}"
        self._rank_shown()
        self._watch_prediction(self.viewer.layers[name])
        self._score(image, np.asarray(prediction.labels) if frame is None else None)
        post = getattr(prediction, "postprocess", None)
        seconds = self.predict_seconds or 0.0
        if frame is None:
            self.status.setText(f"Predicted {image.name} with {model.name} in {seconds:.2f} s"
                                + (f" (post-processing: {post})" if post else "")
                                + ". Correct it by painting, then accept.")
        else:
            self.status.setText(f"Predicted frame t={frame} of {image.data.shape[0]} of the "
                                f"4D series {image.name} with {model.name} in {seconds:.2f} s"
                                f". Move the time slider and predict again for another "
                                f"frame (accepting corrections needs a 3D project volume).")

    def _show_uncertainty(self, image, entropy, schema, metadata, base) -> None:
        """The entropy map, below the label map, from the next turn of the event loop on:
        an existing layer gets the new data; a new one is built, inserted and drawn on
        three turns, so the viewer repaints in between instead of stalling for the label
        map and all of that at once (adding a napari layer takes a few hundred ms of
        main-thread time on a slow machine)."""
        from qtpy.QtCore import QTimer

        name = f"{image.name} [uncertainty]"
        limits = (0.0, max(math.log(schema.num_classes), 1e-3))

        self._entropy_to_show = entropy

        def show():
            if image not in self.viewer.layers or self.prediction is None or \
                    self._entropy_to_show is not entropy:
                return  # the volume changed or a newer prediction came
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                if tuple(layer.data.shape) == tuple(np.shape(entropy)):
                    layer.data[...] = entropy
                    layer.refresh()
                else:
                    layer.data = entropy
                return
            from napari.layers import Image

            # three short frames instead of one long one: the layer is built on this turn,
            # inserted below the label map (no move afterwards), hidden and not made the
            # active layer on the next (its visual and controls), and drawn — shaders
            # compiled — on the one after
            layer = Image(entropy, name=name, colormap="magma", blending="additive",
                          opacity=0.4, contrast_limits=limits, visible=False,
                          metadata={**metadata, layer_meta.ROLE: layer_meta.Role.UNCERTAINTY},
                          **base)

            def insert():
                if image not in self.viewer.layers or self._entropy_to_show is not entropy \
                        or name in self.viewer.layers:
                    return  # the volume changed, a newer prediction came, or a layer exists
                prediction = self.prediction_layer
                index = self.viewer.layers.index(prediction) if prediction is not None \
                    else len(self.viewer.layers)
                layer_ops.insert_layer(self.viewer, index, layer)
                QTimer.singleShot(0, reveal)

            def reveal():
                if layer in self.viewer.layers:
                    layer.visible = True

            QTimer.singleShot(0, insert)

        QTimer.singleShot(0, show)

    def _on_new_model(self, path) -> None:
        if path is None:
            return
        self.refresh_models()
        self.set_model(path)
        if self.auto_check.isChecked() and self.image_layer() is not None:
            self.predict()

    def _on_volume(self, volume) -> None:
        self._score_request += 1  # a comparison still running belongs to the last volume
        self._clear_truth()
        self._watched_layer = None
        self.prediction = None
        self.original = None
        self._image = None
        self._frame = None
        self._pending_preview = None
        self._clear_suggestions()
        self._update_buttons()

    @property
    def suggest_purpose(self) -> SuggestFor:
        """What the suggested slices are for."""
        return SuggestFor(self.suggest_combo.currentData())

    def _rank_shown(self) -> None:
        """Rank the shown prediction's slices for the chosen purpose (complete slices
        skipped) and show the top ones."""
        prediction = self.prediction
        if prediction is None or prediction.entropy is None:
            return
        project = self.session.project
        done = set()
        if self.session.volume is not None and project is not None:
            try:
                done = logic.complete_slices(project.annotations(self.session.volume))
            except Exception:
                done = set()
        probabilities = prediction.probabilities
        purpose = self.suggest_purpose
        self.suggested_slices = logic.rank_slices(prediction.entropy, exclude=done,
                                                  probabilities=probabilities,
                                                  purpose=purpose)
        self._visited = set()
        ceiling = math.log(max(len(probabilities) if probabilities is not None else 2, 2))
        where = self._frame_text
        if probabilities is None:
            head = f"Most uncertain slices{where} (mean entropy"
        elif purpose is SuggestFor.SCRIBBLES:
            head = (f"Slices to scribble{where} (entropy over the possible foreground × "
                    "share of every structure shown")
        else:
            head = (f"Most uncertain slices{where} (entropy over the possible "
                    "foreground")
        self._suggest_text = f"{head}, 0 = sure … {ceiling:.2f} = no idea): "
        self._show_suggestions()

    def _clear_suggestions(self) -> None:
        self.suggested_slices = []
        self._visited = set()
        self.suggest_label.setText("")
        self.next_button.setEnabled(False)

    def _show_suggestions(self) -> None:
        top = ", ".join(f"z={z} ({s:.2f})" for z, s in self.suggested_slices[:3])
        self.suggest_label.setText(self._suggest_text + top if top else
                                   "Every slice is already complete.")
        self.next_button.setEnabled(bool(self.suggested_slices))

    def _accept_shortcut(self, viewer=None) -> None:
        self.accept_current_slice()

    def _next_shortcut(self, viewer=None) -> None:
        self.go_to_next_slice()

    # -- ground truth ------------------------------------------------------------------
    def _score(self, image, labels) -> None:
        """Compare ``labels`` (the shown prediction of the open project volume) with its
        stored ground truth in the background: the contour layer and the Dice/HD95 table
        appear when done. Nothing (and nothing shown) without ground truth."""
        project, volume = self.session.project, self.session.volume
        self._score_request += 1
        request = self._score_request
        try:
            has_truth = labels is not None and project is not None and volume is not None \
                and project.has_ground_truth(volume)
        except Exception:  # a store that cannot be read now: no comparison
            has_truth = False
        if not has_truth:
            self._clear_truth()
            return
        labels = np.array(labels, copy=True)
        self._scored = logic.fingerprint(labels)
        check = self.truth_check
        if check is None:
            task, args = logic.check_ground_truth, (project, volume, labels)
        else:  # the ground truth is read once per volume
            task, args = self._rescored, (check, labels, project.schema.names)
        self.truth_label.setText("Comparing with the ground truth…")

        def done(result):
            if request != self._score_request or image not in self.viewer.layers:
                return  # a newer prediction, edit or volume came meanwhile
            if result is None:
                self._clear_truth()
                return
            self.truth_check = result
            self._show_truth(image, result)

        def failed(exc):
            if request == self._score_request:
                self.truth_label.setText(f"Could not compare with the ground truth: {exc}")

        self.session.executor.run(task, *args, on_done=done, on_error=failed)

    @staticmethod
    def _rescored(check, labels, names):
        return replace(check, scores=logic.score_prediction(labels, check.truth, check.spacing,
                                                            names))

    def _show_truth(self, image, check) -> None:
        schema = self._schema()
        name = f"{image.name} [ground truth]"
        if name not in self.viewer.layers:  # the user's active layer stays active
            layer = layer_ops.add_labels(
                self.viewer, np.asarray(check.truth), name=name,
                colormap=schema.dense_colormap(),
                opacity=0.5, blending="translucent",
                features={"index": list(range(schema.num_classes)), "class": schema.names},
                metadata={**dict(image.metadata or {}),
                          layer_meta.ROLE: layer_meta.Role.GROUND_TRUTH},
                **self._layer_base(image))
            layer.contour = 1
            layer.editable = False  # reference, not a canvas: painting it needs intent
        spacing = " × ".join(f"{s:g}" for s in check.spacing)
        self.truth_label.setText(
            f"Shown prediction vs the stored ground truth (contours: '{name}'): 3D Dice and "
            f"HD95 in mm at the volume's spacing {spacing} mm (z × y × x). Updated as you "
            "correct.")
        rows = logic.score_rows(check.scores)
        colors = {c.name: c.color for c in schema.classes}
        self.truth_table.setRowCount(len(rows))
        for r, (label, dice, hd95, note) in enumerate(rows):
            for c, text in enumerate((label, dice, hd95)):
                item = QTableWidgetItem(text)
                if c:
                    item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
                elif label in colors:
                    item.setIcon(_class_icon(colors[label]))
                if note:
                    item.setToolTip(note)
                self.truth_table.setItem(r, c, item)
        height = self.truth_table.horizontalHeader().height() + 4 + sum(
            self.truth_table.rowHeight(r) for r in range(len(rows)))
        self.truth_table.setFixedHeight(height)
        self.truth_box.setVisible(True)

    def _clear_truth(self) -> None:
        self.truth_check = None
        self._scored = None
        self._rescore_timer.stop()
        self.truth_table.setRowCount(0)
        self.truth_label.setText("")
        self.truth_box.setVisible(False)

    def _watch_prediction(self, layer) -> None:
        """Rescore (debounced) when the prediction layer is corrected."""
        if layer is self._watched_layer:
            return
        self._watched_layer = layer
        layer.events.paint.connect(self._schedule_rescore)
        layer.events.set_data.connect(self._schedule_rescore)

    def _schedule_rescore(self, *_) -> None:
        if self.truth_check is not None:
            self._rescore_timer.start()

    def _rescore(self) -> None:
        layer = self.prediction_layer
        if layer is None or self.truth_check is None or self._frame is not None or \
                layer is not self._watched_layer:
            return
        if logic.fingerprint(layer.data) != self._scored:
            self._score(self._image or self.image_layer(), layer.data)

    # -- live previews -----------------------------------------------------------------
    @property
    def preview_layer(self):
        image = self._image or self.image_layer()
        name = f"{image.name} [preview]" if image is not None else None
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def _on_preview(self, event) -> None:
        """A run wrote new weights: predict the open volume with them in the background
        (the newest only: previews that arrive meanwhile replace each other)."""
        if not self.preview_check.isChecked():
            return
        if self._previewing:
            self._pending_preview = event
            return
        image = self.image_layer()
        if image is None:
            return
        try:
            data, frame, spacing = self._volume_to_predict(image)
        except ValueError:
            return
        self._previewing = True
        self._pending_preview = None
        generation = self._generation

        def finish():
            self._previewing = False
            pending, self._pending_preview = self._pending_preview, None
            if pending is not None:
                self._on_preview(pending)

        def done(prediction):
            if image in self.viewer.layers and self.preview_check.isChecked() and \
                    generation == self._generation:  # no final prediction came meanwhile
                self._show_preview(image, prediction, event, frame)
            finish()

        def failed(exc):  # the folder is being rewritten, or the run ended: the next one
            finish()

        self.session.executor.run(logic.predict_image, event.model_dir, data,
                                  spacing=spacing, postprocess=self.post_combo.currentData(),
                                  tta="none", on_done=done, on_error=failed)

    def _show_preview(self, image, prediction, event, frame: int | None) -> None:
        if self._predicting:  # a final prediction is on its way: it wins
            return
        schema = self._schema()
        name = f"{image.name} [preview]"
        existing = self.viewer.layers[name] if name in self.viewer.layers else None
        labels = self._on_image_grid(image, np.asarray(prediction.labels), frame, existing)
        metadata = {**dict(image.metadata or {}), layer_meta.ROLE: layer_meta.Role.PREVIEW,
                    layer_meta.PREVIEW_ITERATION: int(event.iteration)}
        if existing is not None:
            existing.data = labels
            existing.metadata = metadata
        else:  # the user's active layer (and tool) stays active
            layer_ops.add_labels(self.viewer, labels, name=name,
                                 colormap=schema.dense_colormap(), opacity=0.5,
                                 metadata=metadata, **self._layer_base(image))
        self.preview_event = event
        self._glyph_timer.stop()
        text = (f"Live preview · iteration {event.iteration} · {event.seconds:.0f} s into "
                "training — the final prediction replaces it")
        self.status.setText(f"{text}. (Uncheck 'Live preview while training' to stop.)")

        def banner():
            # on the next turn of the event loop: drawing the banner's new glyphs (signed
            # distance fields computed on the CPU, ~8 ms each) then falls in another
            # frame than building the preview layer
            if self.preview_event is not event:
                return  # replaced by a newer preview or by the final prediction
            overlay = self.viewer.text_overlay
            overlay.text = f"LIVE PREVIEW · iteration {event.iteration}"
            overlay.position = "top_center"
            overlay.color = "yellow"
            overlay.visible = True

        QTimer.singleShot(0, banner)

    def _on_training_state(self, state) -> None:
        if state == "running" and self._banner_glyphs and self.preview_check.isChecked() \
                and not self._glyph_timer.isActive() and not self.viewer.text_overlay.visible:
            self._glyph_timer.start()

    def _draw_next_glyph(self) -> None:
        """While a run starts: draw the live-preview banner's characters one per tick,
        fully transparent. The canvas renders each new glyph once (a signed distance field
        on the CPU, 8–20 ms) and keeps it, so the first banner does not stall the viewer
        for all of them at once (330 ms measured on 2 busy cores)."""
        try:
            overlay = self.viewer.text_overlay
            if self.preview_event is not None:  # a real banner took over: the rest later
                self._glyph_timer.stop()
                return
            if not self._banner_glyphs:  # all drawn
                self._glyph_timer.stop()
                overlay.visible = False
                overlay.text = ""
                return
            overlay.color = (0.0, 0.0, 0.0, 0.0)
            overlay.text = self._banner_glyphs.pop(0)
            overlay.visible = True
        except (RuntimeError, AttributeError):  # the viewer was closed
            self._glyph_timer.stop()

    def _remove_preview(self, image) -> None:
        name = f"{image.name} [preview]"
        if name in self.viewer.layers:
            layer_ops.remove_layer(self.viewer, name)
        if self.preview_event is not None:
            self.viewer.text_overlay.visible = False
            self.viewer.text_overlay.text = ""
        self.preview_event = None
        self._pending_preview = None

    def _update_buttons(self) -> None:
        has_model = self.model_path is not None
        self.predict_button.setEnabled(has_model and not self._predicting)
        self.rank_button.setEnabled(has_model and self.session.project is not None)
        has_prediction = self.original is not None and self.session.volume is not None
        self.accept_button.setEnabled(has_prediction)
        self.next_button.setEnabled(bool(self.suggested_slices))
        self.retrain_button.setEnabled(has_model and self.session.project is not None)
