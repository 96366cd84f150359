"""Batch export panel: a thin face over :func:`napari_weakseg.inference.export.export_cohort`.

Pick a model folder, the inputs (a project folder, a folder of NIfTI files, or files) and
an output folder; the export runs in a napari thread worker (the GUI stays responsive),
drives a progress bar, can be cancelled (after the current volume), and reports errors as
napari notifications. When it ends, predictions of images open in the viewer are added as
Labels layers on their image's grid.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (QCheckBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                            QLineEdit, QProgressBar, QPushButton, QVBoxLayout, QWidget)

from .. import layer_meta
from ..inference.export import (ExportOptions, ExportProgress, ExportReport, export_cohort,
                                read_records)
from ..states import ExportStatus
from .forms import OptionForm

if TYPE_CHECKING:
    import napari

#: the ExportOptions fields of the panel: the form rows, then the check boxes; texts,
#: choices and tooltips are declared with the fields (napari_weakseg.fields)
FORM_FIELDS = ("device", "postprocess", "tta")
CHECKS = ("probabilities", "uncertainty", "largest_component", "fill_holes", "force")


class _Bridge(QObject):
    """Carries progress events from the worker thread to the Qt main thread (queued)."""

    progressed = Signal(object)


class ExportPanel(QWidget):
    """Dock widget: model, inputs, output folder, options, Start/Cancel and progress."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = viewer
        self.worker = None
        self.report: ExportReport | None = None
        self._cancel = threading.Event()
        self._bridge = _Bridge()
        self._bridge.progressed.connect(self._on_progress)

        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("model folder (config.json + weights.pt)")
        self.input_edit = QLineEdit()
        self.input_edit.setPlaceholderText("project folder, folder of NIfTI files, or files "
                                           "separated by ';'")
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("output folder")
        self.model_button = QPushButton("Browse…")
        self.input_folder_button = QPushButton("Folder…")
        self.input_files_button = QPushButton("Files…")
        self.out_button = QPushButton("Browse…")
        self.form = OptionForm(ExportOptions, FORM_FIELDS + CHECKS)
        self.checks: dict[str, QCheckBox] = {key: self.form[key] for key in CHECKS}
        self.show_results = QCheckBox("Show predictions of open images")
        self.show_results.setChecked(True)
        self.device_combo = self.form["device"]
        self.post_combo = self.form["postprocess"]  # first: None, the model's own
        self.start_button = QPushButton("Start export")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("Choose a model, the inputs and an output folder.")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Model", _row(self.model_edit, self.model_button))
        form.addRow("Inputs", _row(self.input_edit, self.input_folder_button,
                                   self.input_files_button))
        form.addRow("Output", _row(self.out_edit, self.out_button))
        self.form.add_rows(form, FORM_FIELDS)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for check in self.checks.values():
            layout.addWidget(check)
        layout.addWidget(self.show_results)
        layout.addWidget(_row(self.start_button, self.cancel_button))
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.model_button.clicked.connect(lambda: self._pick_folder(self.model_edit))
        self.input_folder_button.clicked.connect(lambda: self._pick_folder(self.input_edit))
        self.input_files_button.clicked.connect(self._pick_files)
        self.out_button.clicked.connect(lambda: self._pick_folder(self.out_edit))
        self.start_button.clicked.connect(self.start)
        self.model_edit.textChanged.connect(self._show_recommendation)
        self.checks["largest_component"].toggled.connect(self._largest_toggled)
        self.post_combo.currentIndexChanged.connect(self._post_changed)
        self.cancel_button.clicked.connect(self.cancel)

    # -- state ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None

    def options(self) -> ExportOptions:
        return ExportOptions(**self.form.values())

    def _largest_toggled(self, checked: bool) -> None:
        """The old check box is the 'largest' choice of the post-processing box."""
        if checked and self.post_combo.currentData() not in (None, "largest"):
            self.post_combo.setCurrentIndex(self.post_combo.findData("largest"))

    def _post_changed(self, _index: int) -> None:
        if self.post_combo.currentData() not in (None, "largest"):
            self.checks["largest_component"].setChecked(False)

    def _show_recommendation(self, text: str) -> None:
        """Name the model's recorded post-processing in the default entry."""
        label = self.form.options["postprocess"].none_text
        try:
            from .logic import recommended_postprocess

            label += f" ({recommended_postprocess(Path(text.strip()))})" if text.strip() else ""
        except Exception:  # not (yet) a model folder: the plain label
            pass
        self.post_combo.setItemText(0, label)

    def inputs(self) -> list[Path]:
        return [Path(p.strip()) for p in self.input_edit.text().split(";") if p.strip()]

    # -- actions -------------------------------------------------------------------------
    def start(self) -> None:
        """Check the fields, then run the export in a thread worker."""
        if self.running:
            return
        model, out, inputs = self.model_edit.text().strip(), self.out_edit.text().strip(), \
            self.inputs()
        missing = [name for name, value in (("a model folder", model), ("inputs", inputs),
                                            ("an output folder", out)) if not value]
        if missing:
            show_error("Batch export needs " + " and ".join(missing) + ".")
            return
        from napari.qt.threading import create_worker

        from .workers import ensure_pool_headroom

        ensure_pool_headroom()

        self._cancel = threading.Event()
        self.report = None
        self.progress.setRange(0, 0)  # busy until the first event gives the total
        self.status.setText("Loading the model and finding the inputs…")
        self.worker = create_worker(export_cohort, Path(model), inputs, Path(out),
                                    self.options(), progress=self._bridge.progressed.emit,
                                    cancel=self._cancel, _start_thread=False,
                                    _ignore_errors=True)
        self.worker.returned.connect(self._on_done)
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_finished)
        self._set_running(True)
        self.worker.start()

    def cancel(self) -> None:
        """Stop after the current volume (what is written stays; a rerun resumes)."""
        if self.running:
            self._cancel.set()
            self.cancel_button.setEnabled(False)
            self.status.setText("Cancelling after the current volume…")

    # -- worker callbacks (Qt main thread) -----------------------------------------------
    def _on_progress(self, event: ExportProgress) -> None:
        if event.status == ExportStatus.STARTED:
            self.progress.setRange(0, max(event.total, 1))
        self.progress.setValue(min(event.done, self.progress.maximum()))
        if event.status in (ExportStatus.EXPORTED, ExportStatus.SKIPPED, ExportStatus.FAILED):
            self.status.setText(f"{event.done}/{event.total}: {event.status} {event.name}")

    def _on_done(self, report: ExportReport) -> None:
        self.report = report
        self.progress.setRange(0, max(report.total, 1))
        self.progress.setValue(report.total - len(report.not_done))
        self.status.setText(report.summary() + (f"\nTable: {report.csv_path}"
                                                if report.csv_path else ""))
        if report.failed:
            show_warning(f"Batch export: {len(report.failed)} of {report.total} volumes failed "
                         f"(see {report.csv_path} and export.log): "
                         + "; ".join(list(report.failed.values())[:3]))
        elif report.cancelled:
            show_info(f"Batch export cancelled: {report.summary()}")
        else:
            show_info(f"Batch export done: {report.summary()}")
        if self.show_results.isChecked():
            self.add_predictions_of_open_images(report.out_dir)

    def _on_error(self, exc: BaseException) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status.setText(f"Export failed: {exc}")
        show_error(f"Batch export failed: {exc}")

    def _on_finished(self) -> None:
        self.worker = None
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        for widget in (self.model_edit, self.input_edit, self.out_edit, self.device_combo,
                       *self.checks.values()):
            widget.setEnabled(not running)

    # -- results -------------------------------------------------------------------------
    def add_predictions_of_open_images(self, out_dir: Path) -> list:
        """Add ``OUT/labels/NAME`` as a Labels layer for each image layer of the viewer read
        from an exported input (matched by the manifest's input path)."""
        from ..plugin import nifti_layer_data

        exported = {record.input["path"]: record.labels_path(out_dir)
                    for record in read_records(out_dir) if record.ok}
        schema = self._schema()
        added = []
        for layer in list(self.viewer.layers):
            metadata = layer.metadata or {}
            source = metadata.get("source_path")
            # only the images themselves: overlays (uncertainty, predictions, previews)
            # carry their image's metadata, source path included
            if type(layer).__name__ != "Image" or not source or metadata.get(layer_meta.ROLE):
                continue
            labels_path = exported.get(str(Path(source).resolve()))
            if labels_path is None or not labels_path.exists():
                continue
            data, kwargs, _ = nifti_layer_data(labels_path)
            kwargs["name"] = self._result_name(layer.name)
            kwargs["metadata"] = {**kwargs.get("metadata", {}),
                                  layer_meta.ROLE: layer_meta.Role.EXPORT,
                                  layer_meta.EXPORT_FINGERPRINT: _fingerprint(data)}
            existing = self.viewer.layers[kwargs["name"]] \
                if kwargs["name"] in self.viewer.layers else None
            if existing is not None:  # an unedited export layer of ours: new data
                existing.data = data
                existing.metadata = {**existing.metadata, **kwargs["metadata"]}
                continue
            added.append(self.viewer.add_labels(data, colormap=schema.dense_colormap(),
                                                opacity=0.5, **kwargs))
        return added

    def _result_name(self, image_name: str) -> str:
        """``IMAGE [prediction]``, unless a layer of that name holds something else — a
        Review prediction or an export layer the user edited since: never overwritten,
        the export gets ``IMAGE [export]`` (``[export 2]``…) instead."""
        base = f"{image_name} [prediction]"
        candidates = [base, f"{image_name} [export]"] + \
            [f"{image_name} [export {n}]" for n in range(2, 100)]
        for name in candidates:
            if name not in self.viewer.layers:
                return name
            layer = self.viewer.layers[name]
            meta = layer.metadata or {}
            if meta.get(layer_meta.ROLE) == layer_meta.Role.EXPORT and \
                    meta.get(layer_meta.EXPORT_FINGERPRINT) == _fingerprint(layer.data):
                return name  # ours and unedited: refreshed in place
        return candidates[-1]

    def _schema(self):
        """The label schema of the model's classes (names and colours)."""
        from ..schema import LabelSchema

        cardiac = LabelSchema.cardiac()
        try:
            from ..nets.model_folder import read_config

            names = list(read_config(self.model_edit.text().strip())["classes"])
        except Exception:
            return cardiac
        if names == cardiac.names:
            return cardiac
        try:
            return LabelSchema.from_names(names)
        except Exception:
            return cardiac

    # -- pickers -------------------------------------------------------------------------
    def _pick_folder(self, edit: QLineEdit) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder", edit.text())
        if folder:
            edit.setText(folder)

    def _pick_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Choose NIfTI volumes", "",
                                                "NIfTI (*.nii *.nii.gz)")
        if files:
            self.input_edit.setText("; ".join(files))


def _row(*widgets: QWidget) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for i, widget in enumerate(widgets):
        layout.addWidget(widget, 1 if i == 0 else 0)
    return row


def _fingerprint(data) -> int:
    """A cheap identity of a layer's voxels (edits change it)."""
    import zlib

    array = np.ascontiguousarray(np.asarray(data))
    return zlib.crc32(memoryview(array).cast("B"),
                      zlib.crc32(f"{array.shape}{array.dtype}".encode()))
