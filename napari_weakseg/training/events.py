"""Typed progress events of a training run, streamed as JSON lines.

The training process writes one JSON object per line on stdout (and appends it to
``events.jsonl`` in the run folder); the GUI and the CLI parse them with
:func:`parse_event`. Every event has ``type`` and ``time`` (UNIX seconds).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass
class Event:
    type: ClassVar[str] = "event"
    time: float = field(default_factory=time.time, kw_only=True)

    def to_json(self) -> str:
        return json.dumps({"type": self.type, **asdict(self)}, allow_nan=True)


@dataclass
class Started(Event):
    type: ClassVar[str] = "started"
    run_dir: str
    method: str
    iterations: int
    start_iteration: int
    device: str
    train_slices: int
    val_volumes: int


@dataclass
class Progress(Event):
    """One optimiser step done. ``losses``: each loss term (floats); ``eta_s`` seconds."""

    type: ClassVar[str] = "progress"
    iteration: int
    iterations: int
    losses: dict[str, float]
    lr: float
    it_per_s: float
    eta_s: float


@dataclass
class Validation(Event):
    """Dice per class (names → value) on the validation volumes, and their mean."""

    type: ClassVar[str] = "validation"
    iteration: int
    dice: dict[str, float]
    mean_dice: float
    best: bool


@dataclass
class Checkpoint(Event):
    type: ClassVar[str] = "checkpoint"
    iteration: int
    path: str


@dataclass
class Preview(Event):
    """The current weights were written to ``model_dir`` (a model folder) for a live
    preview; ``seconds`` since the run (session) started."""

    type: ClassVar[str] = "preview"
    iteration: int
    model_dir: str
    seconds: float


@dataclass
class Finished(Event):
    """``status``: ``completed``, ``cancelled`` or ``budget`` (time budget spent);
    ``model_dir``: the best model folder."""

    type: ClassVar[str] = "finished"
    status: str
    iteration: int
    model_dir: str
    best_mean_dice: float | None
    seconds: float


@dataclass
class Failed(Event):
    type: ClassVar[str] = "failed"
    error: str
    traceback: str
    log_path: str = ""


@dataclass
class Log(Event):
    type: ClassVar[str] = "log"
    message: str


EVENT_TYPES: dict[str, type[Event]] = {cls.type: cls for cls in
                                      (Started, Progress, Validation, Checkpoint, Preview,
                                       Finished, Failed, Log)}


def parse_event(line: str) -> Event | None:
    """The event a JSON line holds, or ``None`` for a line that is not an event."""
    try:
        data: dict[str, Any] = json.loads(line)
    except (json.JSONDecodeError, TypeError):
        return None
    if not isinstance(data, dict):
        return None
    cls = EVENT_TYPES.get(data.pop("type", None))
    if cls is None:
        return None
    try:
        return cls(**data)
    except TypeError:
        return None
