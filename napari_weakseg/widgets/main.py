"""The WeakSeg dock widget: the Project, Annotate, Train and Review panels as tabs over one
shared :class:`~.signals.Session` and one task executor.

Another panel joins with :meth:`WeakSegWidget.add_panel` (it receives the viewer and the
session like the others).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from qtpy.QtWidgets import QComboBox, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from .annotation import AnnotationPanel
from .export import ExportPanel
from .project import ProjectPanel
from .review import ReviewPanel
from .signals import Session
from .train import TrainPanel
from .workers import WindowCloseFilter, install_on_window, on_exit

if TYPE_CHECKING:
    import napari

    from .workers import TaskExecutor


class WeakSegWidget(QWidget):
    """Annotate → train in the background → review and correct → retrain.

    ``executor``: how background work runs (default: napari thread workers;
    ``workers.SynchronousExecutor`` in tests). ``autosave_ms``: how long edits must settle
    before they are saved to the store.
    """

    def __init__(self, viewer: napari.viewer.Viewer, executor: TaskExecutor | None = None,
                 autosave_ms: int = 1500):
        super().__init__()
        if executor is None:
            from .workers import ThreadExecutor

            executor = ThreadExecutor()
        self.viewer = viewer
        self.session = Session(executor)
        self.tabs = QTabWidget()
        self.project_panel = ProjectPanel(viewer, self.session)
        self.annotate_panel = AnnotationPanel(viewer, session=self.session,
                                              autosave_ms=autosave_ms)
        self.train_panel = TrainPanel(viewer, self.session)
        self.review_panel = ReviewPanel(viewer, self.session)
        self.export_panel = ExportPanel(viewer)
        for title, panel in (("Project", self.project_panel),
                             ("Annotate", self.annotate_panel),
                             ("Train", self.train_panel), ("Review", self.review_panel),
                             ("Export", self.export_panel)):
            self.add_panel(title, panel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        self.setMinimumWidth(430)  # the Train form and its buttons stay readable
        self.session.volume_changed.connect(self._on_volume)
        self.session.model_changed.connect(self._on_model)
        self.session.project_changed.connect(self._on_project)
        self._close_filter = WindowCloseFilter(self._on_window_close)
        self._closed = False
        # the viewer's window is known now: closing it (even before this widget was ever
        # shown, e.g. docked and closed without an event loop) ends the session
        window = _viewer_window(viewer)
        if window is not None:
            window.installEventFilter(self._close_filter)
        from qtpy.QtWidgets import QApplication

        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(_weak_call(self, "close_session"))
        on_exit(_weak_call(self, "close_session"))

    def add_panel(self, title: str, panel: QWidget) -> QWidget:
        """Add a tab (scrollable, so long panels fit small screens; combo boxes shrink to
        the dock's width)."""
        for combo in panel.findChildren(QComboBox):
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(10)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(panel)
        self.tabs.addTab(scroll, title)
        return panel

    def show_panel(self, title: str) -> None:
        for i in range(self.tabs.count()):
            if self.tabs.tabText(i) == title:
                self.tabs.setCurrentIndex(i)
                return
        raise KeyError(title)

    def close_session(self) -> None:
        """Save pending edits, stop a running training (checkpoint kept), join the
        background tasks (a thread worker alive at interpreter exit aborts the process),
        close the project. Called when the napari window closes, when the application
        quits, and at interpreter exit."""
        if self._closed:
            return
        self._closed = True
        try:
            self.annotate_panel.flush()
        except RuntimeError:  # Qt side already deleted; edits were saved on close request
            pass
        self.train_panel.shutdown()
        executor = self.session.executor
        shutdown = getattr(executor, "shutdown", None)
        if shutdown is not None:
            shutdown(30.0)
        else:
            executor.wait(30.0)
        self.session.close()

    def _on_window_close(self, event) -> None:
        """The window got a close request: save now. A programmatic close always goes
        through; one from the window manager may still be cancelled in napari's dialog, so
        training is stopped and the project closed only once the window is really gone."""
        from qtpy.QtCore import QTimer

        self.annotate_panel.flush()
        if not event.spontaneous():
            self.close_session()
            return
        ref = weakref.ref(self)

        def after():
            widget = ref()
            if widget is None:
                return
            try:
                visible = widget.window().isVisible()
            except RuntimeError:  # the window is already deleted
                visible = False
            if not visible:
                widget.close_session()

        QTimer.singleShot(0, after)

    def _on_volume(self, volume) -> None:
        if volume is not None:
            self.show_panel("Annotate")

    def _on_project(self, project) -> None:
        """The Export tab predicts the open project unless the user chose other inputs."""
        if project is not None and not self.export_panel.input_edit.text():
            self.export_panel.input_edit.setText(str(project.root))

    def _on_model(self, path) -> None:
        if path is not None:
            self.export_panel.model_edit.setText(str(path))
        if path is not None and self.review_panel.auto_check.isChecked():
            self.show_panel("Review")

    def showEvent(self, event):
        super().showEvent(event)
        install_on_window(self, self._close_filter)


def _viewer_window(viewer):
    """The viewer's Qt main window, or ``None`` (a headless or fake viewer)."""
    from qtpy.QtWidgets import QWidget

    window = getattr(getattr(viewer, "window", None), "_qt_window", None)
    return window if isinstance(window, QWidget) else None


def _weak_call(obj, method: str):
    """A callable that calls ``obj.method()`` while ``obj`` is alive (holds no reference)."""
    ref = weakref.ref(obj)

    def call(*_):
        target = ref()
        if target is not None:
            getattr(target, method)()

    return call
