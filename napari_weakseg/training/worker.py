"""The training process: ``python -m napari_weakseg.training.worker RUN_DIR``.

Reads ``RUN_DIR/run.json`` (``{"config": TrainConfig dict, "data": source dict,
"classes": [...]}``), trains, and writes one JSON event per line to stdout and to
``RUN_DIR/events.jsonl``. Cancel: create ``RUN_DIR/cancel`` or send SIGTERM/SIGINT; the
run stops after the current iteration with a checkpoint. Running it again on the same
folder resumes from that checkpoint. Exit code 0 completed or cancelled, 1 failed.

A worker whose parent dies (``kill -9`` of ``weakseg train`` or of napari) stops the same
way: its stdout pipe breaks or it is re-parented, so it cancels itself after the current
iteration with a checkpoint (events go on to ``events.jsonl``), and the run can be resumed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from ..runtime import dist_rank
from .events import Event, Failed, Log

CANCEL_FILE = "cancel"
EVENTS_FILE = "events.jsonl"
RUN_FILE = "run.json"
#: Set by :class:`~.runner.TrainingRun` to the pid of the process that reads the events.
OWNER_ENV = "WEAKSEG_OWNER_PID"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m napari_weakseg.training.worker RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(argv[0])
    events_path = run_dir / EVENTS_FILE
    cancel = threading.Event()
    lock = threading.Lock()

    rank = dist_rank()
    # started by TrainingRun (the CLI, napari): the parent reads the events and records the
    # outcome; without it the run is orphaned. Started by hand or by torchrun: no such check.
    parent = os.getppid() if os.environ.get(OWNER_ENV) == str(os.getppid()) else None
    orphaned = threading.Event()

    def lose_parent() -> None:
        """The process reading our events is gone: stop with a checkpoint."""
        if not orphaned.is_set():
            orphaned.set()
            cancel.set()
            try:  # later prints (and the flush at exit) must not fail again
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass

    def emit(event: Event) -> None:
        if rank != 0 and event.type != "failed":
            return
        line = event.to_json()
        with lock:
            if not orphaned.is_set():
                try:
                    print(line, flush=True)
                except (BrokenPipeError, ValueError, OSError):
                    lose_parent()
            with open(events_path, "a") as handle:
                handle.write(line + "\n")

    def request_cancel(*_):
        cancel.set()

    signal.signal(signal.SIGTERM, request_cancel)
    signal.signal(signal.SIGINT, request_cancel)

    def watch_cancel_file():
        while not cancel.is_set():
            if (run_dir / CANCEL_FILE).exists():
                cancel.set()
            if parent is not None and os.getppid() != parent:  # re-parented: the owner died
                with lock:
                    lose_parent()
            time.sleep(0.2)

    threading.Thread(target=watch_cancel_file, daemon=True).start()
    try:
        from .config import TrainConfig
        from .sources import load_source
        from .trainer import Trainer, inherit_from_parent

        spec = json.loads((run_dir / RUN_FILE).read_text())
        config = TrainConfig.from_dict(spec["config"])
        (run_dir / CANCEL_FILE).unlink(missing_ok=True)
        emit(Log(message="loading data"))
        config = inherit_from_parent(config)  # a fine-tune: the parent's normaliser etc.
        source = dict(spec["data"])
        if source.get("kind") == "project":  # a large cohort spills to the run's folder
            source.setdefault("volume_cache", str(run_dir / "volume_cache"))
        data = load_source(source, config)
        emit(Log(message=f"{len(data.train)} training and {len(data.val)} validation volumes"))
        if getattr(data, "held_out", None):  # no reference validation: say what is scored
            emit(Log(message=f"data: {data.description}"))
        trainer = Trainer(config, data.train, data.val, data.class_names, run_dir, emit=emit,
                          cancel=cancel, data_description=data.description,
                          rules=data.rules)
        try:
            trainer.run()
        finally:  # the spilled volumes are this run's own files, rebuilt on resume
            import shutil

            shutil.rmtree(run_dir / "volume_cache", ignore_errors=True)
        return 0
    except Exception as exc:  # reported as an event; the GUI shows it with the log
        from .trainer import format_exception

        emit(Failed(error=f"{type(exc).__name__}: {exc}", traceback=format_exception(exc),
                    log_path=str(events_path)))
        return 1


if __name__ == "__main__":
    sys.exit(main())
