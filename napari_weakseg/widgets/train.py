"""Train panel: method, start-from model, key hyper-parameters, device; Start / Cancel /
Resume; progress in napari's activity dock, live loss and validation-Dice curves, it/s, ETA.

Training runs in its own process (``training.runner.TrainingRun``); a reader thread turns
its typed event stream into Qt-thread callbacks (``logic.training_stream``). A crash of
the training process ends the stream with a ``failed`` event: the panel shows it as a
napari error notification with the log path, and napari keeps running.

Size: one Qt panel — its controls, the run's life cycle in the GUI (start, resume, cancel,
events, outcome) and the small curve widget; what it does without Qt lives in
:mod:`.logic` and :mod:`napari_weakseg.training.project_runs`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import (QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                            QPushButton, QSizePolicy, QSpinBox, QVBoxLayout, QWidget)

from . import logic
from .forms import OptionForm

if TYPE_CHECKING:
    import napari

#: the TrainConfig fields of the Hyper-parameters form, in order; their labels, ranges,
#: steps, units and tooltips are declared with the fields (napari_weakseg.fields)
FORM_FIELDS = ("iterations", "batch_size", "size", "base_width", "val_every", "threads", "lr",
               "max_seconds", "device", "preview_every_s")
#: the whole-number fields (``TrainPanel.fields``, QSpinBox)
HYPERPARAMETERS = FORM_FIELDS[:6]


def resume_text(record) -> str:
    """One line on a resumable run (``record.status`` as reported by
    ``training.project_runs.run_status``)."""
    name = Path(record.out_dir).name
    why = {"interrupted": "was interrupted (napari or the training command ended while it "
                          "ran)",
           "budget": "stopped at its time budget",
           "cancelled": "was cancelled",
           "failed": "failed"}.get(record.status, f"is {record.status}")
    return f"Run {name} {why}; Resume goes on from its checkpoint."


class CurvePlot(QWidget):
    """A small live line plot (QPainter): one polyline per named series, with a legend."""

    def __init__(self, title: str, y_range: tuple[float, float] | None = None,
                 log_y: bool = False):
        super().__init__()
        self.title = title
        self.y_range = y_range
        self.log_y = log_y
        self.empty_text = "no data yet"
        self.data = logic.CurveData()
        self.colors: dict[str, QColor] = {}
        self.setMinimumHeight(130)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)

    def add_point(self, name: str, x: float, y: float, color=None) -> None:
        if self.log_y and (y is None or y <= 0):
            return
        if name not in self.colors:
            self.colors[name] = QColor(color) if isinstance(color, str) else (
                QColor.fromRgbF(*color[:3]) if color is not None else
                QColor.fromHsv((len(self.colors) * 97) % 360, 180, 255))
        self.data.add(name, x, y)
        self.update()

    def clear(self) -> None:
        self.data.clear()
        self.update()

    @property
    def series(self) -> dict[str, list[tuple[float, float]]]:
        return self.data.series

    def _ty(self, y: float) -> float:
        return math.log10(y) if self.log_y else y

    def paintEvent(self, event):
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        rect = QRectF(self.rect()).adjusted(44, 18, -8, -20)
        painter.fillRect(self.rect(), QColor(38, 41, 48))
        painter.setPen(QColor(200, 200, 200))
        painter.drawText(QRectF(4, 0, self.width() - 8, 16),
                         int(Qt.AlignLeft | Qt.AlignVCenter), self.title)
        painter.setPen(QPen(QColor(110, 110, 120), 1))
        painter.drawRect(rect)
        bounds = self.data.bounds()
        if bounds is None:
            painter.setPen(QColor(150, 150, 150))
            painter.drawText(rect, int(Qt.AlignCenter | Qt.TextWordWrap), self.empty_text)
            painter.end()
            return
        x0, x1, y0, y1 = bounds
        if self.y_range is not None:
            y0, y1 = self.y_range
        else:
            y0, y1 = self._ty(y0), self._ty(y1)
        if x1 <= x0:
            x1 = x0 + 1
        if y1 <= y0:
            y0, y1 = y0 - 0.5, y1 + 0.5

        def point(x, y):
            ty = (self._ty(y) - y0) / (y1 - y0)
            return QPointF(rect.left() + (x - x0) / (x1 - x0) * rect.width(),
                           rect.bottom() - min(max(ty, 0.0), 1.0) * rect.height())

        painter.setPen(QColor(170, 170, 170))
        label = (lambda v: f"{10 ** v:.3g}") if self.log_y else (lambda v: f"{v:.3g}")
        painter.drawText(QRectF(0, rect.top() - 6, 42, 14), int(Qt.AlignRight), label(y1))
        painter.drawText(QRectF(0, rect.bottom() - 8, 42, 14), int(Qt.AlignRight), label(y0))
        painter.drawText(QRectF(rect.left(), rect.bottom() + 2, 80, 16), int(Qt.AlignLeft),
                         f"{x0:g}")
        painter.drawText(QRectF(rect.right() - 80, rect.bottom() + 2, 80, 16),
                         int(Qt.AlignRight), f"{x1:g} it.")
        legend_y = rect.top() + 4
        for name, points in self.data.series.items():
            color = self.colors.get(name, QColor("white"))
            painter.setPen(QPen(color, 1.6))
            if len(points) == 1:
                painter.drawEllipse(point(*points[0]), 2.5, 2.5)
            else:
                path = QPainterPath(point(*points[0]))
                for x, y in points[1:]:
                    path.lineTo(point(x, y))
                painter.drawPath(path)
            painter.drawText(QRectF(rect.right() - 150, legend_y, 144, 14),
                             int(Qt.AlignRight), f"{name} {points[-1][1]:.3g}")
            legend_y += 14
        painter.end()


class TrainPanel(QWidget):
    """Start, watch, cancel and resume training runs of the open project."""

    def __init__(self, viewer: napari.viewer.Viewer, session):
        super().__init__()
        self.viewer = viewer
        self.session = session
        self.handle: logic.RunHandle | None = None
        self.last_result = None       # signals.RunEnded of the last run
        self.last_event = None
        self._task = None
        self._progress = None
        self._resume_dir: Path | None = None
        self._choices: list[logic.MethodChoice] = []
        self._kinds: set[str] = set()
        self._methods_request = 0
        #: the method of the model being fine-tuned, to select once the methods are known
        self._model_method: str | None = None
        #: the user picked a method since the start-from model was chosen: keep it
        self._user_method = False

        self.method_combo = QComboBox()
        self.method_info = QLabel("Open a project with annotations to see the methods.")
        self.method_info.setWordWrap(True)
        self.model_combo = QComboBox()
        self.profile_combo = QComboBox()
        for key, text in logic.PROFILE_LABELS.items():
            self.profile_combo.addItem(text, key)
        from ..training.config import TrainConfig

        self.form = OptionForm(TrainConfig, FORM_FIELDS)
        self.fields: dict[str, QSpinBox] = {key: self.form[key] for key in HYPERPARAMETERS}
        self.lr_box = self.form["lr"]
        self.budget_box = self.form["max_seconds"]
        self.device_combo = self.form["device"]
        self.preview_box = self.form["preview_every_s"]
        self.preview_box.setValue(logic.PREVIEW_EVERY_S)
        self.model_method_label = QLabel("")
        self.model_method_label.setWordWrap(True)
        self.validation_label = QLabel("")
        self.validation_label.setWordWrap(True)
        self.start_button = QPushButton("Start")
        self.cancel_button = QPushButton("Cancel")
        self.resume_button = QPushButton("Resume")
        self.progress_label = QLabel("")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.loss_plot = CurvePlot("Training loss", log_y=True)
        self.dice_plot = CurvePlot("Validation Dice", y_range=(0.0, 1.0))

        form = QFormLayout()
        form.addRow("Method", self.method_combo)
        form.addRow("", self.method_info)
        form.addRow("Start from", self.model_combo)
        form.addRow("", self.model_method_label)
        form.addRow("Profile", self.profile_combo)
        params = QGroupBox("Hyper-parameters")
        self.form.add_rows(QFormLayout(params))
        buttons = QHBoxLayout()
        for button in (self.start_button, self.cancel_button, self.resume_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(params)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.validation_label)
        layout.addWidget(self.loss_plot)
        layout.addWidget(self.dice_plot)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.set_profile("cpu")
        self.method_combo.currentIndexChanged.connect(self._show_method)
        self.model_combo.currentIndexChanged.connect(self._show_parent)
        self.model_combo.currentIndexChanged.connect(self._on_start_model)
        self.method_combo.activated.connect(self._on_user_method)
        self.profile_combo.currentIndexChanged.connect(
            lambda _i: self.set_profile(self.profile_combo.currentData()))
        self.start_button.clicked.connect(lambda: self.start_training())
        self.cancel_button.clicked.connect(self.cancel_training)
        self.resume_button.clicked.connect(lambda: self.resume_training())
        session.project_changed.connect(self._on_project)
        session.annotations_changed.connect(lambda *_: self.refresh_methods())
        session.annotations_changed.connect(lambda *_: self._show_validation())
        session.models_changed.connect(self.refresh_models)
        session.volumes_changed.connect(lambda *_: self._show_validation())
        session.retrain_requested.connect(lambda path: self.start_training(init_model=path))
        self.session.executor.run(logic.available_devices, on_done=self._set_devices,
                                  on_error=lambda exc: None)
        self._on_project(session.project)

    # -- public API --------------------------------------------------------------------
    @property
    def methods(self) -> list[str]:
        return [choice.id for choice in self._choices]

    @property
    def method(self) -> str | None:
        return self.method_combo.currentData()

    def set_method(self, method_id: str) -> None:
        index = self.method_combo.findData(method_id)
        if index < 0:
            raise ValueError(f"method {method_id!r} is not offered (annotation kinds of the "
                             f"project: {sorted(self._kinds)}); offered: {self.methods}")
        self.method_combo.setCurrentIndex(index)
        self._user_method = True  # an explicit choice wins over the model's method
        self._show_model_method()

    def set_profile(self, name: str) -> None:
        """Fill the form with a profile's values (``paper`` or ``quick-cpu``)."""
        from ..training.config import PROFILES

        base = PROFILES[name]
        index = self.profile_combo.findData(name)
        if index != self.profile_combo.currentIndex():
            self.profile_combo.blockSignals(True)
            self.profile_combo.setCurrentIndex(index)
            self.profile_combo.blockSignals(False)
        values = {"iterations": base.iterations, "batch_size": base.batch_size,
                  "size": base.size, "base_width": base.base_width,
                  "val_every": base.val_every, "threads": logic.default_threads()}
        self.set_hyperparameters(**values)
        self._show_method()
        self.lr_box.setValue(0.0)
        self.budget_box.setValue(0.0)
        if base.device in [self.device_combo.itemText(i)
                           for i in range(self.device_combo.count())]:
            self.device_combo.setCurrentText(base.device)
        self._show_parent()

    def _show_parent(self, *_args) -> None:
        """Fine-tuning keeps the parent's network width and slice size (and its pre- and
        post-processing): show them, not editable; a new network makes them editable."""
        choice = self.model_combo.currentData()
        parent = None
        if getattr(choice, "path", None) is not None:
            try:
                from ..nets.model_folder import read_config
                from ..preprocess import Preprocessing

                config = read_config(choice.path)
                parent = (Preprocessing.from_config(config["preprocessing"]).size[0],
                          config["network"].get("base_width"))
            except Exception:  # an unreadable folder: the run will say why
                parent = None
        for key, value in zip(("size", "base_width"), parent or (None, None)):
            self.fields[key].setEnabled(parent is None)
            self.fields[key].setToolTip(self.form.options[key].help if parent is None else
                                        "fine-tuning: the parent model's value")
            if value is not None:
                self.fields[key].setValue(int(value))

    def _on_start_model(self, *_args) -> None:
        """A fine-tune keeps the parent model's method (visibly) unless the user picks
        another one afterwards; a new network keeps the method selected."""
        choice = self.model_combo.currentData()
        self._model_method = logic.model_method(getattr(choice, "path", None))
        self._user_method = False
        self._apply_model_method()

    def _on_user_method(self, *_args) -> None:
        self._user_method = True
        self._show_model_method()

    def _apply_model_method(self) -> None:
        """Select the fine-tuned model's method when it is offered (and not overridden)."""
        wanted = self._model_method
        if wanted in self.methods:  # …unless it leaves kinds out (Retrain after Accept)
            wanted = logic.preferred_method(self.methods, self._kinds, wanted)
        if wanted is not None and not self._user_method and wanted in self.methods \
                and self.method != wanted:
            self.method_combo.setCurrentIndex(self.methods.index(wanted))
        self._show_model_method()

    def _show_model_method(self) -> None:
        wanted, current = self._model_method, self.method
        if wanted is None:
            text = ""
        elif current == wanted:
            text = f"Fine-tuning keeps the model's method: {wanted}."
        elif self._choices and wanted not in self.methods:
            text = (f"The model was trained with {wanted}, which does not learn from this "
                    f"project's annotations ({', '.join(sorted(self._kinds)) or 'none'}); "
                    f"training {current or '–'} instead.")
        elif current is not None and self._user_method:
            text = f"The model was trained with {wanted}; you chose {current}."
        else:
            text = f"The model was trained with {wanted}."
        self.model_method_label.setText(text)

    def set_hyperparameters(self, **values) -> None:
        """Set form fields: iterations, batch_size, size, base_width, val_every, threads,
        lr (0 = the method's default), minutes (time budget), device, preview (seconds
        between live previews, 0 = off)."""
        for key, value in values.items():
            if key in self.fields:
                self.fields[key].setValue(int(value))
            elif key == "preview":
                self.preview_box.setValue(float(value or 0.0))
            elif key == "lr":
                self.lr_box.setValue(float(value or 0.0))
            elif key == "minutes":
                self.budget_box.setValue(float(value or 0.0))
            elif key == "device":
                if self.device_combo.findText(value) < 0:
                    self.device_combo.addItem(value)
                self.device_combo.setCurrentText(value)
            else:
                raise KeyError(f"unknown hyper-parameter {key!r}")

    def set_start_model(self, path: str | Path | None) -> None:
        """Select the start-from model (``None`` = a new network)."""
        for i in range(self.model_combo.count()):
            choice = self.model_combo.itemData(i)
            if (choice.path is None and path is None) or (
                    choice.path is not None and path is not None
                    and Path(choice.path).resolve() == Path(path).resolve()):
                self.model_combo.setCurrentIndex(i)
                return
        self.model_combo.addItem(f"folder: {Path(path).name}",
                                 logic.ModelChoice(str(path), Path(path), "folder"))
        self.model_combo.setCurrentIndex(self.model_combo.count() - 1)

    def config(self, init_model: str | Path | None = None):
        """The :class:`TrainConfig` the form describes."""
        choice = self.model_combo.currentData()
        if init_model is None and choice is not None and choice.path is not None:
            init_model = choice.path
        values = self.form.values()  # TrainConfig's units; None where the form says so
        return logic.train_config(
            self.profile_combo.currentData(), self.method, **values,
            checkpoint_every=max(1, min(values["val_every"], 200)),
            init_model=None if init_model is None else str(init_model))

    @property
    def progress_bar(self):
        """The ``napari.utils.progress`` bar of the running run (activity dock), or None."""
        return self._progress

    @property
    def is_running(self) -> bool:
        return self.handle is not None

    def start_training(self, init_model: str | Path | None = None):
        """Start a run of the selected method (fine-tuning ``init_model`` when given)."""
        from napari.utils.notifications import show_error

        project = self.session.project
        if self.is_running:
            self.status.setText("A run is already going on.")
            return None
        if project is None or self.method is None:
            self.status.setText("Open a project with annotations first.")
            return None
        if init_model is not None:
            previous = self.model_combo.currentData()
            self.set_start_model(init_model)
            same = getattr(previous, "path", None) is not None and \
                Path(previous.path).resolve() == Path(init_model).resolve()
            if not same or self._model_method is None:  # Retrain: the model's method
                self._model_method = logic.model_method(init_model)
                self._user_method = False
            self._apply_model_method()
            if self.method is None:
                self.status.setText("Open a project with annotations first.")
                return None
        try:
            config = self.config(init_model)
            handle = logic.start_run(project, config, val={"split": "val"})
        except Exception as exc:
            show_error(f"Training could not start: {exc}")
            return None
        source = f" from {Path(config.init_model).name}" if config.init_model else ""
        kept = " (the model's method)" if config.init_model and \
            config.method == self._model_method else ""
        self._begin(handle, f"Training {config.method}{kept}{source}")
        return handle

    def resume_training(self):
        """Go on from its checkpoint with the last run that stopped early: cancelled,
        failed, interrupted (napari or ``weakseg train`` was killed) or stopped by its time
        budget — also one found when the project was opened."""
        from napari.utils.notifications import show_error

        if self.is_running or self._resume_dir is None or self.session.project is None:
            return None
        try:
            handle = logic.resume_run(self.session.project, self._resume_dir)
        except Exception as exc:
            show_error(f"Cannot resume {self._resume_dir}: {exc}")
            return None
        self._begin(handle, f"Resuming {handle.run_dir.name}", clear=False)
        return handle

    def cancel_training(self) -> None:
        """Graceful stop after the current iteration (a checkpoint is kept)."""
        if self.handle is not None:
            self.handle.run.cancel()
            self.cancel_button.setEnabled(False)
            self.status.setText("Cancelling after the current iteration…")
            self.session.training_state.emit("cancelling")

    def shutdown(self, timeout: float = 20.0) -> None:
        """Window closing: cancel a running run and wait (bounded) for its process."""
        if self.handle is None:
            return
        run = self.handle.run
        run.cancel()
        try:
            run.wait(timeout)
        except Exception:
            run.kill()

    def refresh_methods(self) -> None:
        """Offer the methods that learn from the project's annotation kinds."""
        project = self.session.project
        self._kinds = logic.project_kinds(project) if project is not None else set()
        self._methods_request += 1
        request = self._methods_request
        if not self._kinds:
            self._set_methods([])
            return

        def done(choices):
            if request == self._methods_request:  # a newer request supersedes this one
                self._set_methods(choices)

        self.session.executor.run(logic.method_choices, self._kinds, on_done=done,
                                  on_error=lambda exc: self.status.setText(str(exc)))

    def refresh_models(self) -> None:
        current = self.model_combo.currentData()
        before = getattr(current, "path", None)
        self.model_combo.blockSignals(True)  # the selection is kept: no model change
        try:
            self.model_combo.clear()
            for choice in logic.model_choices(self.session.project):
                self.model_combo.addItem(choice.label, choice)
            if before is not None:
                self.set_start_model(before)
        finally:
            self.model_combo.blockSignals(False)
        after = getattr(self.model_combo.currentData(), "path", None)
        if current is None or before != after:
            self._show_parent()
            self._on_start_model()

    # -- internals ---------------------------------------------------------------------
    def _on_project(self, project) -> None:
        self.refresh_methods()
        self.refresh_models()
        self._show_validation()
        self._resume_dir = None
        if project is not None:
            try:
                record = logic.resumable_run(project)
            except Exception as exc:  # a run folder that cannot be read: say so, go on
                record = None
                self.status.setText(f"Could not check the project's runs: {exc}")
            if record is not None:
                self._resume_dir = Path(record.out_dir)
                self.status.setText(resume_text(record))
        self._update_buttons()

    def _set_methods(self, choices) -> None:
        current = self.method
        self._choices = list(choices)
        self.method_combo.blockSignals(True)
        self.method_combo.clear()
        for choice in self._choices:
            self.method_combo.addItem(choice.id, choice.id)
            self.method_combo.setItemData(self.method_combo.count() - 1, choice.description,
                                          Qt.ToolTipRole)
        if current in self.methods:
            self.method_combo.setCurrentIndex(self.methods.index(current))
        kinds = frozenset(self._kinds)
        if kinds != getattr(self, "_offered_kinds", None):  # new kinds: a method using all
            self._offered_kinds = kinds
            preferred = logic.preferred_method(self.methods, kinds, current)
            if preferred in self.methods:
                self.method_combo.setCurrentIndex(self.methods.index(preferred))
        self.method_combo.blockSignals(False)
        self._apply_model_method()
        self._show_method()
        self._update_buttons()

    def _set_devices(self, devices) -> None:
        current = self.device_combo.currentText()
        self.device_combo.clear()
        self.device_combo.addItems(devices)
        self.device_combo.setCurrentText(current if current in devices else "auto")

    def _show_method(self, *_):
        choice = next((c for c in self._choices if c.id == self.method), None)
        if choice is None:
            self.method_info.setText("No method fits: annotate (scribble, coarse, partial or "
                                     "sparse) first." if self.session.project else
                                     "Open a project with annotations to see the methods.")
            return
        from ..training.config import PROFILE_METHOD_OPTIONS

        profile = self.profile_combo.currentData()
        changed = PROFILE_METHOD_OPTIONS.get(profile, {}).get(choice.id, {})
        note = ("\n" + f"{profile} profile: " + ", ".join(f"{k}={v}" for k, v in changed.items())
                + " (faster to a good model on CPU; docs/results.md)") if changed else ""
        self.method_info.setText(f"{choice.description}\nlearns from: {', '.join(choice.kinds)}"
                                 f" · {choice.optimizer} lr {choice.lr:g}{note}")
        self.lr_box.setSpecialValueText(f"method default ({choice.lr:g})")
        self._show_unused(choice.id)

    def _show_unused(self, method_id: str) -> None:
        """Append "M will not use your N … slices: choose mixed" (computed in the
        background: it reads annotation files) while ``method_id`` is still selected."""
        project = self.session.project
        if project is None:
            return

        def done(note):
            if note and self.method == method_id and note not in self.method_info.text():
                self.method_info.setText(self.method_info.text() + "\n⚠ " + note)

        self.session.executor.run(logic.unused_note, project, method_id, on_done=done,
                                  on_error=lambda exc: None)

    def _update_buttons(self) -> None:
        running = self.is_running
        self.start_button.setEnabled(not running and self.method is not None
                                     and self.session.project is not None)
        self.cancel_button.setEnabled(running)
        self.resume_button.setEnabled(not running and self._resume_dir is not None)

    def _begin(self, handle, text: str, clear: bool = True) -> None:
        self.handle = handle
        self.last_result = None
        if clear:
            self.loss_plot.clear()
            self.dice_plot.clear()
        self.status.setText(text + "…")
        self.progress_label.setText("starting the training process…")
        self._update_buttons()
        self.session.training_state.emit("running")
        self._task = self.session.executor.stream(
            logic.training_stream, handle, self.session.project.root,
            on_item=self._on_event, on_error=self._on_stream_error)

    def _on_event(self, event) -> None:
        from .signals import RunEnded

        if isinstance(event, RunEnded):
            self._on_ended(event)
            return
        self.last_event = event
        kind = event.type
        if kind == "log":
            self.progress_label.setText(event.message)
        elif kind == "started":
            self.handle.iterations = event.iterations
            self.handle.start_iteration = event.start_iteration
            self._open_progress(event.iterations, event.start_iteration, event.method)
            self.status.setText(f"Training {event.method} on {event.device}: "
                                f"{event.train_slices} slices, {event.val_volumes} validation "
                                f"volume(s); iterations {event.start_iteration}→"
                                f"{event.iterations}.")
            self._show_validation(event.val_volumes)
        elif kind == "progress":
            total = event.losses.get("total")
            self.loss_plot.add_point("total", event.iteration, total, "#ffb454")
            self.progress_label.setText(
                f"iteration {event.iteration}/{event.iterations} · {event.it_per_s:.2f} it/s · "
                f"ETA {logic.format_eta(event.eta_s)} · loss {total:.4f}")
            if self._progress is not None:
                self._progress.update(max(0, event.iteration - self._progress.n))
        elif kind == "validation":
            project = self.session.project
            colors = {c.name: c.color for c in project.schema.classes} if project else {}
            for name, value in event.dice.items():
                self.dice_plot.add_point(name, event.iteration, value, colors.get(name))
            self.dice_plot.add_point("mean", event.iteration, event.mean_dice, "#ffffff")
        elif kind == "preview":
            self.session.preview_ready.emit(event)
        elif kind == "finished":
            self.progress_label.setText(f"{event.status} at iteration {event.iteration} in "
                                        f"{event.seconds:.0f} s")

    def _show_validation(self, val_volumes: int | None = None) -> None:
        """Say what the Dice curve is computed on — and, without validation volumes, how to
        get some (instead of an empty plot)."""
        project = self.session.project
        if project is None:
            self.validation_label.setText("")
            return
        try:
            summary = logic.validation_summary(project)
        except Exception:  # a store that cannot be read now: say nothing rather than wrong
            return
        if val_volumes is not None and not (summary.held_out and val_volumes):
            summary = logic.ValidationSummary(summary.tagged, int(val_volumes))
        text = summary.message()
        self.validation_label.setText(text)
        has_curve = bool(summary.with_reference or summary.held_out)
        self.dice_plot.empty_text = ("no data yet" if has_curve else
                                     "no validation volumes (tag split=val, Project tab) and "
                                     "fewer than 2 accepted slices to hold out")
        self.dice_plot.title = " ".join(filter(None, ("Validation Dice", summary.curve())))
        self.dice_plot.setToolTip(text)
        self.dice_plot.update()

    def _open_progress(self, total: int, start: int, method: str) -> None:
        from napari.utils import progress

        self._close_progress()
        self._progress = progress(total=total, desc=f"WeakSeg: training {method}")
        if start:
            self._progress.update(start)

    def _close_progress(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    def _on_ended(self, ended) -> None:
        from napari.utils.notifications import show_error, show_info

        self.handle = None
        self.last_result = ended
        self._close_progress()
        self._resume_dir = ended.run_dir if ended.resumable else None
        self.session.training_state.emit("idle")
        if ended.status == "failed":
            self.progress_label.setText("failed")
            self.status.setText(f"Training failed: {ended.error}\nLog: {ended.log_path}")
            show_error(f"WeakSeg training failed: {ended.error}\nLog: {ended.log_path}")
        else:
            text = f"Run {ended.run_dir.name}: {ended.status}."
            if ended.model_name:
                text += f" Model '{ended.model_name}' registered in the project."
            if ended.resumable:
                text += " Resume goes on from its checkpoint."
            self.status.setText(text)
            show_info(text)
        if ended.model_path is not None:
            self.refresh_models()
            self.session.models_changed.emit()
            self.session.set_model(ended.model_path)
        self._update_buttons()

    def _on_stream_error(self, exc) -> None:
        from napari.utils.notifications import show_error

        self.handle = None
        self._close_progress()
        self.session.training_state.emit("idle")
        self._update_buttons()
        show_error(f"WeakSeg: lost the training stream: {exc}")
