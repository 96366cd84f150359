"""Project panel: open or create a project, see its volumes and their annotation status,
open a volume (image on its grid + its annotation layers), add volumes (file dialog or
drag-and-drop of NIfTI files / folders onto the panel)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QAbstractItemView, QComboBox, QFileDialog, QHBoxLayout,
                            QHeaderView, QLabel, QLineEdit, QMenu, QPushButton, QTableWidget,
                            QTableWidgetItem, QVBoxLayout, QWidget)

from .. import layer_meta
from . import layer_ops, logic

if TYPE_CHECKING:
    import napari

#: short columns first: the dock is narrow, the volume name takes what is left (elided)
COLUMNS = ("Volume", "Split", "GT", "Annotations", "Declared", "Last edit")


class ProjectPanel(QWidget):
    """The project and its volumes; opening a volume sets ``session.volume``."""

    def __init__(self, viewer: napari.viewer.Viewer, session):
        super().__init__()
        self.viewer = viewer
        self.session = session
        self.rows: list[logic.VolumeStatus] = []
        self._open_request = 0
        self._refresh_request = 0
        self.setAcceptDrops(True)

        self.path_edit = QLineEdit()
        self.path_edit.setReadOnly(True)
        self.path_edit.setPlaceholderText("No project open")
        self.open_button = QPushButton("Open…")
        self.new_button = QPushButton("New…")
        self.add_button = QPushButton("Add images…")
        self.import_button = QPushButton("Import folder…")
        self.open_volume_button = QPushButton("Open volume")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.table.setContextMenuPolicy(Qt.CustomContextMenu)
        self.table.setToolTip("Double-click to open a volume; right-click to set the split "
                              "of the selected volumes (split=val with a reference mask "
                              "validates training)")
        self.split_combo = QComboBox()
        for split in logic.SPLITS:
            self.split_combo.addItem(f"split = {split}", split)
        self.split_combo.addItem("no split (trains)", None)
        self.split_combo.setCurrentIndex(logic.SPLITS.index("val"))
        self.split_button = QPushButton("Set for selected")
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        header.setStretchLastSection(False)
        self.status = QLabel("Open or create a project. Drop NIfTI files or folders here to "
                             "add them.")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Project"))
        row.addWidget(self.path_edit, 1)
        row.addWidget(self.open_button)
        row.addWidget(self.new_button)
        layout.addLayout(row)
        layout.addWidget(self.table, 1)
        row = QHBoxLayout()
        row.addWidget(self.open_volume_button)
        row.addWidget(self.add_button)
        row.addWidget(self.import_button)
        layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Split"))
        row.addWidget(self.split_combo, 1)
        row.addWidget(self.split_button)
        layout.addLayout(row)
        layout.addWidget(self.status)

        self.open_button.clicked.connect(self._ask_open)
        self.new_button.clicked.connect(self._ask_new)
        self.add_button.clicked.connect(self._ask_add)
        self.import_button.clicked.connect(self._ask_import)
        self.open_volume_button.clicked.connect(self._open_selected)
        self.table.cellDoubleClicked.connect(lambda row, _col: self._open_row(row))
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.split_button.clicked.connect(
            lambda: self.set_split(self.selected_volumes(), self.split_combo.currentData()))
        session.annotations_changed.connect(lambda *_: self.refresh())
        session.volumes_changed.connect(self.refresh)
        session.open_volume_requested.connect(self.open_volume)
        self._update_buttons()

    # -- public API --------------------------------------------------------------------
    @property
    def project(self):
        return self.session.project

    def open_project(self, path: str | Path):
        """Open an existing project folder."""
        from napari.utils.notifications import show_error

        from ..store import Project

        try:
            project = Project.open(path)
        except Exception as exc:
            show_error(f"Cannot open project {path}: {exc}")
            return None
        self._set_project(project)
        return project

    def create_project(self, path: str | Path, schema=None):
        """Create a project folder (cardiac schema unless ``schema``)."""
        from napari.utils.notifications import show_error

        from ..store import Project

        try:
            project = Project.create(path, schema)
        except Exception as exc:
            show_error(f"Cannot create project {path}: {exc}")
            return None
        self._set_project(project)
        return project

    def refresh(self) -> None:
        """Re-read the volume table from the store (in the background)."""
        project = self.project
        if project is None:
            self._fill_table([])
            return
        self._refresh_request += 1
        request = self._refresh_request

        def done(rows):
            if request == self._refresh_request and self.project is project:
                self._fill_table(rows)

        self.session.executor.run(logic.volume_statuses, project, on_done=done,
                                  on_error=lambda exc: self.status.setText(str(exc)))

    def _fill_table(self, rows) -> None:
        selected = set(self.selected_volumes())
        self.rows = list(rows)
        # Fixed while filling: with ResizeToContents every setItem re-measures the column
        # over all rows — refilling 200 rows took 6.4 s of GUI thread; 4 ms this way
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.Fixed)
        self.table.setRowCount(len(self.rows))
        for i, status in enumerate(self.rows):
            values = (status.name, status.split, "✓" if status.has_truth else "",
                      ", ".join(status.kinds) or "—", status.declared,
                      _short_time(status.last_edit))
            for j, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setToolTip(status.last_edit if j == len(values) - 1 else value)
                if self.session.volume is not None and status.name == self.session.volume.name:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(i, j, item)
            if status.name in selected:
                self._select_row(i)
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        self._update_buttons()

    def _select_row(self, row: int) -> None:
        from qtpy.QtCore import QItemSelectionModel

        index = self.table.model().index(row, 0)
        self.table.selectionModel().select(
            index, QItemSelectionModel.Select | QItemSelectionModel.Rows)

    def volume_names(self) -> list[str]:
        return [row.name for row in self.rows]

    def selected_volumes(self) -> list[str]:
        """Names of the selected rows (table order)."""
        model = self.table.selectionModel()
        rows = sorted(index.row() for index in model.selectedRows()) if model else []
        return [self.rows[r].name for r in rows if r < len(self.rows)]

    def set_split(self, names, split: str | None) -> None:
        """Tag volumes ``split=SPLIT`` (``None`` removes the tag) in the background; the
        table, the Train tab's validation note and the methods follow."""
        from napari.utils.notifications import show_error

        project, names = self.project, list(names)
        if project is None or not names:
            self.status.setText("Select volumes in the table first.")
            return

        def done(changed):
            self.refresh()
            self.session.volumes_changed.emit()
            what = "no split" if split is None else f"split={split}"
            self.status.setText(f"{what}: {len(changed)} volume(s) changed"
                                + (f" ({', '.join(changed[:4])}"
                                   + ("…" if len(changed) > 4 else "") + ")" if changed
                                   else "") + ".")

        self.session.executor.run(logic.set_split, project, names, split, on_done=done,
                                  on_error=lambda exc: show_error(f"Cannot set the split: "
                                                                  f"{exc}"))

    def split_menu(self) -> QMenu:
        """The table's context menu: the split of the selected volumes."""
        menu = QMenu(self)
        names = self.selected_volumes()
        title = (f"{len(names)} volumes" if len(names) > 1 else names[0]) if names else \
            "no volume selected"
        menu.addSection(title)
        for split in (*logic.SPLITS, None):
            text = f"Split: {split}" if split else "Split: none (trains)"
            if split == "val":
                text += " — validates training (needs a reference mask)"
            action = menu.addAction(text)
            action.setData(split)
            action.setEnabled(bool(names))
            action.triggered.connect(lambda _checked=False, value=split:
                                     self.set_split(self.selected_volumes(), value))
        return menu

    def _context_menu(self, position) -> None:
        row = self.table.rowAt(position.y())
        if row >= 0 and row not in {i.row() for i in self.table.selectionModel().selectedRows()}:
            self.table.selectRow(row)
        self.split_menu().exec_(self.table.viewport().mapToGlobal(position))

    def selected_volume(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() \
            else []
        if not rows or rows[0].row() >= len(self.rows):
            return None
        return self.rows[rows[0].row()].name

    def open_volume(self, name: str) -> None:
        """Show volume ``name``: its image (spacing, orientation, axis labels from the
        NIfTI header) and one layer per annotation kind. Pending edits of the previous
        volume are saved first (its layers are removed)."""
        from napari.utils.notifications import show_error

        project = self.project
        if project is None:
            return
        self._remove_volume_layers()
        self.status.setText(f"Loading {name}…")
        self._open_request += 1
        request = self._open_request

        def done(loaded):
            if request == self._open_request and self.project is project:  # still wanted
                self._show_volume(loaded)

        def failed(exc):
            show_error(f"Cannot open {name}: {exc}")
            self.status.setText(str(exc))

        self.session.executor.run(logic.load_volume, project, name, on_done=done,
                                  on_error=failed)

    def add_volumes(self, paths, *, copy: bool = True, split: str | None = None) -> None:
        """Add NIfTI images (copied into the project unless ``copy=False``) or import
        folders (ACDC / nnU-Net / WSL4MIS / plain layouts); runs in the background."""
        from napari.utils.notifications import show_warning

        project = self.project
        if project is None:
            self.status.setText("Open or create a project first.")
            return
        paths = [Path(p) for p in paths]
        self.status.setText(f"Adding {len(paths)} item(s)…")

        def done(result):
            added, problems = result
            self.refresh()
            self.session.volumes_changed.emit()
            text = f"Added {len(added)} volume(s)."
            if problems:
                text += f" {len(problems)} problem(s): " + "; ".join(problems[:3])
                show_warning("Some files were not added:\n" + "\n".join(problems[:10]))
            self.status.setText(text)

        self.session.executor.run(logic.add_images, project, paths, copy=copy, split=split,
                                  on_done=done,
                                  on_error=lambda exc: show_warning(f"Adding failed: {exc}"))

    # -- internals ---------------------------------------------------------------------
    def _set_project(self, project) -> None:
        self._remove_volume_layers()
        self._fill_table([])  # never show the previous project's rows
        self.session.set_project(project)
        self.path_edit.setText(str(project.root))
        self.refresh()
        self.status.setText(f"{project.name}: {len(project.volumes())} volume(s), classes "
                            f"{', '.join(project.schema.names)}. Double-click a volume to "
                            "open it.")

    def _remove_volume_layers(self) -> None:
        project = self.project
        if project is None:
            return
        root = str(project.root)
        doomed = [layer for layer in self.viewer.layers
                  if layer.metadata.get(layer_meta.PROJECT) == root]
        # Top layer first, painting tools off: napari 0.9.2 (software OpenGL) crashes on the
        # next draw when the image under a Labels layer in paint mode is removed first.
        for layer in doomed:
            if getattr(layer, "mode", None) not in (None, "pan_zoom"):
                layer.mode = "pan_zoom"
        for layer in reversed(doomed):
            layer_ops.remove_layer(self.viewer, layer)  # annotation layers: saved on removal
        self.session.set_volume(None)

    def _show_volume(self, loaded: logic.LoadedVolume) -> None:
        record, image = loaded.record, loaded.image
        kwargs = image.geometry.to_layer_kwargs()
        kwargs["metadata"] = {**kwargs["metadata"], layer_meta.VOLUME: record.name,
                              layer_meta.PROJECT: str(self.project.root)}
        layer = self.viewer.add_image(image.data, name=record.name, colormap="gray",
                                      units=("mm",) * image.data.ndim, **kwargs)
        self.viewer.reset_view()
        self.session.set_volume(record, layer, loaded)
        self.refresh()
        kinds = ", ".join(a.record.kind for a in loaded.annotations) or "no annotations yet"
        self.status.setText(f"{record.name}: {record.shape[0]} slices of "
                            f"{record.shape[1]}×{record.shape[2]}, spacing "
                            f"{' × '.join(f'{s:.2f}' for s in record.spacing)} mm; {kinds}.")

    def _open_row(self, row: int) -> None:
        if 0 <= row < len(self.rows):
            self.open_volume(self.rows[row].name)

    def _open_selected(self) -> None:
        name = self.selected_volume()
        if name:
            self.open_volume(name)

    def _update_buttons(self) -> None:
        has_project = self.project is not None
        for button in (self.add_button, self.import_button, self.open_volume_button,
                       self.split_button):
            button.setEnabled(has_project)

    def _ask_open(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a napari-weakseg project")
        if path:
            self.open_project(path)

    def _ask_new(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder for the new project")
        if path:
            self.create_project(path)

    def _ask_add(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add NIfTI images", "",
                                                "NIfTI (*.nii *.nii.gz)")
        if paths:
            self.add_volumes(paths)

    def _ask_import(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Import a folder (ACDC, nnU-Net, "
                                                      "WSL4MIS or images/ + labels/)")
        if path:
            self.add_volumes([path])

    # -- drag and drop -----------------------------------------------------------------
    def dragEnterEvent(self, event):
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event):
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.setDropAction(Qt.CopyAction)
            event.accept()
            self.add_volumes(paths)


def _short_time(stamp: str) -> str:
    """``YYYY-MM-DD HH:MM:SS`` → ``HH:MM`` today, else the date (the full one is the
    cell's tooltip)."""
    import datetime

    if len(stamp) < 16:
        return stamp
    return stamp[11:16] if stamp[:10] == datetime.date.today().isoformat() else stamp[:10]
