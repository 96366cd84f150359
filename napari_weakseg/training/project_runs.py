"""A project's training runs: start, resume, record the outcome, keep the model.

The CLI (``weakseg train``) and the napari Train panel both drive runs through these
functions, so a run started in one can be resumed or inspected in the other. Qt-free.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended, after the store was updated.

    ``status``: ``completed``, ``cancelled``, ``budget`` or ``failed``. ``model_path``: the
    registered model folder inside the project (``None`` when the run produced no model).
    ``resumable``: a checkpoint exists, so the run can go on from ``run_dir``.
    """

    run_id: int | None
    run_dir: Path
    status: str
    model_name: str | None = None
    model_path: Path | None = None
    error: str | None = None
    log_path: str | None = None
    resumable: bool = False


@dataclass
class RunHandle:
    """A started run: the engine's :class:`TrainingRun` and its row in the store."""

    run: Any
    run_id: int | None
    run_dir: Path
    model_name: str
    iterations: int
    start_iteration: int = 0
    method: str = ""


def lower_priority(pid: int, increment: int) -> bool:
    """Lower a child process's CPU priority (POSIX; a no-op elsewhere)."""
    if not hasattr(os, "setpriority"):
        return False
    try:
        current = os.getpriority(os.PRIO_PROCESS, pid)
        os.setpriority(os.PRIO_PROCESS, pid, min(19, current + increment))
        return True
    except OSError:
        return False


def start_run(project, config, *, val: Mapping[str, str] | None = None,
              source: dict | None = None, extra_env: dict | None = None,
              run_dir: str | os.PathLike | None = None, nice: int = 0) -> RunHandle:
    """Create the run folder (default ``PROJECT/runs/<time>-<method>``) and its store row,
    and start the training process (``nice`` > 0 lowers its CPU priority)."""
    from ..training.runner import TrainingRun

    if run_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = project.root / "runs" / f"{stamp}-{config.method}"
        n = 1
        while run_dir.exists():
            n += 1
            run_dir = project.root / "runs" / f"{stamp}-{config.method}-{n}"
    run_dir = Path(run_dir)
    if source is None:
        source = {"kind": "project", "path": str(project.root)}
        if val:
            source["val"] = dict(val)
    run = TrainingRun(run_dir, config, source)
    run_id = project.create_run(config.method, config.to_dict(), device=config.device,
                                out_dir=run_dir, log_path=run_dir / "worker.log").id
    run.start(extra_env)
    if nice:
        lower_priority(run.process.pid, nice)
    project.update_run(run_id, status="running")
    return RunHandle(run, run_id, run_dir, run_dir.name, config.iterations, 0, config.method)


def find_run_id(project, run_dir: str | os.PathLike) -> int | None:
    target = str(Path(run_dir))
    for record in reversed(project.runs()):
        if record.out_dir == target:
            return record.id
    return None


def resume_run(project, run_dir: str | os.PathLike, extra_env: dict | None = None,
               nice: int = 0) -> RunHandle:
    """Go on with a cancelled or failed run from its last checkpoint."""
    from ..training.runner import TrainingRun

    run = TrainingRun(run_dir)
    if not run.can_resume:
        raise ValueError(f"{run_dir}: no checkpoint to resume from")
    spec = json.loads((Path(run_dir) / "run.json").read_text())
    run_id = find_run_id(project, run_dir)
    run.start(extra_env)
    if nice:
        lower_priority(run.process.pid, nice)
    if run_id is not None:
        project.update_run(run_id, status="running")
    return RunHandle(run, run_id, Path(run_dir), Path(run_dir).name,
                     int(spec["config"]["iterations"]), 0, spec["config"]["method"])


def resumable_run(project):
    """The newest cancelled/failed run of the project with a checkpoint, or ``None``."""
    for record in reversed(project.runs()):
        if record.status in ("cancelled", "failed") and record.out_dir and \
                (Path(record.out_dir) / "checkpoints" / "last.pt").exists():
            return record
    return None


def training_stream(handle: RunHandle, project_root: str | os.PathLike) -> Iterator[Any]:
    """The run's typed events as they arrive, then one :class:`RunOutcome` (after the store
    records the outcome and registers the model). Runs in a reader thread."""
    final = None
    for event in handle.run.events():
        if event.type in ("finished", "failed"):
            final = event
        yield event
    yield finalise_run(project_root, handle, final)


def _unique_model_name(project, base: str) -> str:
    existing = {m.name for m in project.models()}
    name, n = base, 1
    while name in existing or (project.root / "models" / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def finalise_run(project_root: str | os.PathLike, handle: RunHandle, final):
    """Record the outcome of a run; copy and register its model. → :class:`RunOutcome`."""
    from ..store import Project
    resumable = (handle.run_dir / "checkpoints" / "last.pt").exists()
    project = Project.open(project_root)
    try:
        if final is None or final.type != "finished":
            error = getattr(final, "error", "training ended without a final event")
            log_path = getattr(final, "log_path", "") or str(handle.run_dir / "worker.log")
            if handle.run_id is not None:
                project.update_run(handle.run_id, status="failed", error=error)
            return RunOutcome(handle.run_id, handle.run_dir, "failed", error=error,
                            log_path=log_path, resumable=resumable)
        status = {"budget": "completed"}.get(final.status, final.status)
        model_dir = Path(final.model_dir)
        name = path = None
        if (model_dir / "config.json").exists():
            name = _unique_model_name(project, handle.model_name)
            path = project.root / "models" / name
            tmp = path.with_name(f".{name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(model_dir, tmp)
            tmp.rename(path)
            config = json.loads((model_dir / "config.json").read_text())
            project.register_model(name, Path("models") / name, method=handle.method,
                                   run_id=handle.run_id, config=config.get("training", {}),
                                   metrics={"best_mean_dice": final.best_mean_dice,
                                            "iteration": final.iteration})
        if handle.run_id is not None:
            project.update_run(handle.run_id, status=status,
                               metrics={"best_mean_dice": final.best_mean_dice,
                                        "iteration": final.iteration})
        return RunOutcome(handle.run_id, handle.run_dir, final.status, name, path,
                        resumable=resumable and final.status in ("cancelled", "budget"))
    finally:
        project.close()


