"""Start a training run in its own process and stream its typed events.

The GUI and the CLI both use :class:`TrainingRun`: ``start()`` launches the worker
process, iterating over ``events()`` yields parsed :mod:`.events` objects as they arrive,
``cancel()`` asks for a graceful stop (a checkpoint is saved), and starting a run on a
folder that holds a checkpoint resumes it. A crash of the training process never takes
the caller down: it ends the stream with a :class:`~.events.Failed` event.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from .config import TrainConfig
from .events import Event, Failed, parse_event
from .worker import CANCEL_FILE, EVENTS_FILE, OWNER_ENV, RUN_FILE


class TrainingRun:
    """One run folder. ``data``: a source dict (see :mod:`.sources`)."""

    def __init__(self, run_dir: str | Path, config: TrainConfig | None = None,
                 data: dict | None = None):
        self.run_dir = Path(run_dir)
        self.process: subprocess.Popen | None = None
        self._stderr_path = self.run_dir / "worker.log"
        if config is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            spec = {"config": config.to_dict(), "data": data or {}}
            from ..io.atomic import write_json_atomic

            write_json_atomic(self.run_dir / RUN_FILE, spec)
        elif not (self.run_dir / RUN_FILE).exists():
            raise FileNotFoundError(f"{self.run_dir}: no {RUN_FILE}; not a run folder")

    @property
    def can_resume(self) -> bool:
        return (self.run_dir / "checkpoints" / "last.pt").exists()

    def start(self, extra_env: dict | None = None) -> TrainingRun:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", OWNER_ENV: str(os.getpid()),
               **(extra_env or {})}
        (self.run_dir / CANCEL_FILE).unlink(missing_ok=True)
        stderr = open(self._stderr_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "napari_weakseg.training.worker", str(self.run_dir)],
            stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True,
            bufsize=1, env=env)
        stderr.close()
        return self

    def events(self) -> Iterator[Event]:
        """Events until the process ends; a crash without a final event yields ``Failed``."""
        assert self.process is not None and self.process.stdout is not None, "start() first"
        ended = False
        for line in self.process.stdout:
            event = parse_event(line)
            if event is None:
                continue
            ended = ended or event.type in ("finished", "failed")
            yield event
        code = self.process.wait()
        if not ended:
            log = self._stderr_path.read_text(errors="replace")[-4000:] \
                if self._stderr_path.exists() else ""
            yield Failed(error=f"training process exited with code {code} without finishing",
                         traceback=log, log_path=str(self._stderr_path))

    def cancel(self) -> None:
        """Graceful stop: the worker saves a checkpoint after the current iteration."""
        (self.run_dir / CANCEL_FILE).touch()

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()

    def wait(self, timeout: float | None = None) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def logged_events(self) -> list[Event]:
        path = self.run_dir / EVENTS_FILE
        if not path.exists():
            return []
        return [e for e in map(parse_event, path.read_text().splitlines()) if e is not None]
