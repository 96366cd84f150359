"""Shared state of the WeakSeg panels and the typed messages they exchange (no Qt here).

The panels never call each other: they observe one :class:`Session` (psygnal signals, the
careamics-napari pattern) and react. Signals are emitted on the Qt main thread only — a
background task hands its result back through the executor (``workers.py``) first.

Training streams the engine's typed events (``training/events.py``: started, progress,
validation, checkpoint, finished, failed, log) followed by one :class:`RunEnded` written by
the reader thread once the run is recorded in the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from psygnal import Signal

from ..training.project_runs import RunOutcome


#: The last message of a training stream (after the store was updated).
RunEnded = RunOutcome


class Session:
    """What every panel shares: the open project, the open volume, the current model.

    Attributes are set through the ``set_*`` methods, which emit the matching signal.
    """

    project_changed = Signal(object)        # Project | None
    volume_changed = Signal(object)         # VolumeRecord | None
    volumes_changed = Signal()              # volumes added/tags changed
    annotations_changed = Signal(str, str)  # volume name, kind (saved or accepted)
    models_changed = Signal()               # a model was registered
    model_changed = Signal(object)          # Path | None: the model to predict with
    retrain_requested = Signal(object)      # Path: fine-tune from this model
    open_volume_requested = Signal(str)     # volume name (e.g. a suggestion to annotate)
    training_state = Signal(str)            # idle | running | cancelling
    preview_ready = Signal(object)          # training.events.Preview: weights to preview

    def __init__(self, executor: Any = None):
        self.executor = executor
        self.project = None
        self.volume = None
        self.image_layer = None
        self.loaded = None
        self.model_path: Path | None = None
        self.author: str | None = None

    def set_project(self, project) -> None:
        old = self.project
        self.project = project
        self.volume = None
        self.image_layer = None
        self.loaded = None
        self.model_path = None
        if old is not None and old is not project:
            old.close()
        self.project_changed.emit(project)

    def set_volume(self, volume, image_layer=None, loaded=None) -> None:
        """``loaded``: ``logic.LoadedVolume`` (image + latest annotations) when known."""
        self.volume = volume
        self.image_layer = image_layer
        self.loaded = loaded
        self.volume_changed.emit(volume)

    def set_model(self, path: Path | None) -> None:
        self.model_path = None if path is None else Path(path)
        self.model_changed.emit(self.model_path)

    def close(self) -> None:
        if self.project is not None:
            self.project.close()
            self.project = None


__all__ = ["RunEnded", "Session"]
