"""A project's training runs: start, resume, record the outcome, keep the model.

The CLI (``weakseg train``) and the napari Train panel both drive runs through these
functions, so a run started in one can be resumed or inspected in the other. Qt-free.

**Who owns a run.** The process that starts or resumes a run (the CLI or napari) is its
*owner*: it reads the training process's events and records the outcome in the store. It
writes ``RUN_DIR/owner.json`` — its pid and host, the training process's pid, and a
heartbeat refreshed every :data:`HEARTBEAT_INTERVAL_S` seconds while the training process
lives (the owner file, the heartbeat and whether an owner is alive: :mod:`.run_owner`).
A store row left ``running`` by an owner that died (``kill -9`` of ``weakseg train``,
napari killed) is reported as ``interrupted``: on the owner's host when neither the owner
nor the training process is alive any more (a training process whose owner died stops by
itself after the current iteration, with a checkpoint), elsewhere when the heartbeat is
older than :data:`HEARTBEAT_TIMEOUT_S`. Listing the runs (:func:`list_runs`,
:func:`resumable_run`) records such a run in the store as ``failed`` with an error that
starts with ``interrupted:``; with a checkpoint it can be resumed (``weakseg train PROJECT
--resume RUN`` or the Train panel's Resume).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import OptionError, ProjectError
from ..states import RunStatus
from .run_owner import (HEARTBEAT_INTERVAL_S, HEARTBEAT_TIMEOUT_S, OWNER_FILE, Heartbeat,
                        lower_priority, owner_state, process_alive, read_owner)

#: The prefix of the store's ``error`` of a run recorded as interrupted.
INTERRUPTED_PREFIX = "interrupted:"
#: Reported statuses (:func:`run_status`) a run with a checkpoint can be resumed from.
RESUMABLE_STATUSES = (RunStatus.CANCELLED, RunStatus.FAILED, RunStatus.INTERRUPTED,
                      RunStatus.BUDGET)


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
    """A started run: the engine's :class:`TrainingRun`, its row in the store and the
    owner's heartbeat (``None`` for a handle made by hand)."""

    run: Any
    run_id: int | None
    run_dir: Path
    model_name: str
    iterations: int
    start_iteration: int = 0
    method: str = ""
    heartbeat: Heartbeat | None = None


# -- reported statuses -------------------------------------------------------------------
def _stopped_by(record) -> str | None:
    """How the last session of a completed run ended (``budget`` when its time budget ran
    out), from the store's metrics or the run's event log."""
    stopped = (record.metrics or {}).get("stopped")
    if stopped:
        return stopped
    if not record.out_dir:
        return None
    path = Path(record.out_dir) / "events.jsonl"
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 65536))
            tail = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(tail):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("type") == "finished":
            return data.get("status")
    return None


def run_status(record, now: float | None = None) -> str:
    """A run's status as reported to the user: the store's status, except ``interrupted``
    (a ``running`` row whose owner is gone, or one recorded as interrupted) and ``budget``
    (completed because its time budget ran out: it can go on)."""
    status = record.status
    if status == RunStatus.RUNNING and not owner_state(record, now)[0]:
        return RunStatus.INTERRUPTED
    if status == RunStatus.FAILED and (record.error or "").startswith(INTERRUPTED_PREFIX):
        return RunStatus.INTERRUPTED
    if status == RunStatus.COMPLETED and _stopped_by(record) == RunStatus.BUDGET:
        return RunStatus.BUDGET
    return status


def has_checkpoint(record) -> bool:
    return bool(record.out_dir) and (Path(record.out_dir) / "checkpoints" / "last.pt").exists()


def is_resumable(record, now: float | None = None) -> bool:
    """A run that stopped before its end (cancelled, failed, interrupted, or its time budget
    ran out) and has a checkpoint."""
    return run_status(record, now) in RESUMABLE_STATUSES and has_checkpoint(record)


def mark_interrupted(project, now: float | None = None) -> list:
    """Record every ``running`` run whose owner is gone as ``failed`` with an
    ``interrupted: …`` error (one line: who was gone); → the updated records. A read-only
    project is left as it is."""
    changed = []
    for record in project.runs(status=RunStatus.RUNNING):
        alive, why = owner_state(record, now)
        if alive:
            continue
        error = (f"{INTERRUPTED_PREFIX} {why}; "
                 + ("resume it from its checkpoint" if has_checkpoint(record)
                    else "no checkpoint was saved, start it again"))
        try:
            changed.append(project.update_run(record.id, status=RunStatus.FAILED, error=error))
        except Exception:  # read-only project or a locked manifest: report, do not record
            changed.append(dataclasses.replace(record, status=RunStatus.FAILED, error=error))
    return changed


def list_runs(project, now: float | None = None) -> list:
    """The project's runs, oldest first, with their reported status (:func:`run_status`:
    ``interrupted`` and ``budget`` besides the store's); interrupted runs are recorded in
    the store first (:func:`mark_interrupted`)."""
    mark_interrupted(project, now)
    return [dataclasses.replace(r, status=run_status(r, now)) for r in project.runs()]


def resumable_runs(project, now: float | None = None) -> list:
    """Runs that can go on from a checkpoint, newest first, with reported statuses."""
    return [r for r in reversed(list_runs(project, now))
            if r.status in RESUMABLE_STATUSES and has_checkpoint(r)]


def resumable_run(project):
    """The newest run that can go on from its checkpoint (cancelled, failed, interrupted,
    or stopped by its time budget), with its reported status, or ``None``."""
    runs = resumable_runs(project)
    return runs[0] if runs else None


def find_run_id(project, run_dir: str | os.PathLike) -> int | None:
    record = _record_for(project, run_dir)
    return None if record is None else record.id


def _record_for(project, run_dir: str | os.PathLike):
    target = Path(run_dir)
    resolved = target.resolve()
    for record in reversed(project.runs()):
        if record.out_dir and (record.out_dir == str(target)
                               or Path(record.out_dir).resolve() == resolved):
            return record
    return None


def find_run(project, spec: str | os.PathLike | None) -> Path:
    """The run folder ``spec`` names: a folder path, a folder name under ``PROJECT/runs``,
    or a run id; with no ``spec`` the newest resumable run. Raises :class:`ProjectError`."""
    if spec is None or str(spec) == "":
        record = resumable_run(project)
        if record is None:
            raise ProjectError(f"{project.root}: no run to resume (none was cancelled, failed, "
                               "interrupted or stopped by its time budget with a checkpoint)")
        return Path(record.out_dir)
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        return path
    if (project.root / "runs" / text).is_dir():
        return project.root / "runs" / text
    if text.isdigit():
        for record in project.runs():
            if record.id == int(text) and record.out_dir:
                return Path(record.out_dir)
    names = [Path(r.out_dir).name for r in resumable_runs(project)]
    hint = f"; resumable: {', '.join(names)}" if names else "; no run can be resumed"
    raise ProjectError(f"{text}: no such run folder or run id in {project.root}{hint}")


# -- starting and resuming -----------------------------------------------------------------
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
    try:
        run.start(extra_env)
    except Exception as exc:
        project.update_run(run_id, status=RunStatus.FAILED,
                           error=f"the training process could not start: {exc}")
        raise
    heartbeat = Heartbeat(run_dir, run.process)
    if nice:
        lower_priority(run.process.pid, nice)
    project.update_run(run_id, status=RunStatus.RUNNING)
    return RunHandle(run, run_id, run_dir, run_dir.name, config.iterations, 0, config.method,
                     heartbeat)


def resume_run(project, run_dir: str | os.PathLike, extra_env: dict | None = None,
               nice: int = 0, method: str | None = None) -> RunHandle:
    """Go on with a cancelled, failed, interrupted or budget-stopped run from its last
    checkpoint, with the method and options recorded in its ``run.json`` (``method``, when
    given, must be the recorded one). Raises :class:`ProjectError` for a run that is still
    going on, has no checkpoint or is not a run folder."""
    from ..training.runner import TrainingRun

    run_dir = Path(run_dir)
    record = _record_for(project, run_dir)
    if record is not None and record.status == RunStatus.RUNNING:
        alive, why = owner_state(record)
        if alive:
            raise ProjectError(f"{run_dir}: the run is still going on ({why}); cancel it "
                               f"(touch {run_dir / 'cancel'}) or wait for it to end")
    try:
        run = TrainingRun(run_dir)
        spec = json.loads((run_dir / "run.json").read_text())
        iterations, recorded = int(spec["config"]["iterations"]), spec["config"]["method"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProjectError(f"{run_dir}: not a run folder that can be resumed ({exc})") from None
    if method and method != recorded:
        raise OptionError(f"--method {method}: the run in {run_dir} trains {recorded}; "
                          "leave --method out to resume it")
    if not run.can_resume:
        raise ProjectError(f"{run_dir}: no checkpoint to resume from")
    run.start(extra_env)
    heartbeat = Heartbeat(run_dir, run.process)
    if nice:
        lower_priority(run.process.pid, nice)
    run_id = None if record is None else record.id
    if run_id is not None:
        project.update_run(run_id, status=RunStatus.RUNNING, error="")
    return RunHandle(run, run_id, run_dir, run_dir.name, iterations, 0, recorded, heartbeat)


def training_stream(handle: RunHandle, project_root: str | os.PathLike) -> Iterator[Any]:
    """The run's typed events as they arrive, then one :class:`RunOutcome` (after the store
    records the outcome and registers the model). Runs in a reader thread."""
    final = None
    for event in handle.run.events():
        if handle.heartbeat is not None:
            handle.heartbeat.beat()
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
    if handle.heartbeat is not None:
        handle.heartbeat.stop()
    resumable = (handle.run_dir / "checkpoints" / "last.pt").exists()
    project = Project.open(project_root)
    try:
        if final is None or final.type != "finished":
            error = getattr(final, "error", "training ended without a final event")
            log_path = getattr(final, "log_path", "") or str(handle.run_dir / "worker.log")
            if handle.run_id is not None:
                project.update_run(handle.run_id, status=RunStatus.FAILED, error=error)
            return RunOutcome(handle.run_id, handle.run_dir, RunStatus.FAILED, error=error,
                              log_path=log_path, resumable=resumable)
        # the store knows no "budget": such a run is completed (it has a model) and records
        # how it stopped, so that it is offered for resume after the project is reopened
        status = {RunStatus.BUDGET: RunStatus.COMPLETED}.get(final.status, final.status)
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
                                        "iteration": final.iteration,
                                        "stopped": final.status})
        return RunOutcome(handle.run_id, handle.run_dir, final.status, name, path,
                        resumable=resumable and final.status in (RunStatus.CANCELLED, RunStatus.BUDGET))
    finally:
        project.close()


__all__ = ["INTERRUPTED_PREFIX", "RESUMABLE_STATUSES", "RunHandle", "RunOutcome",
           "finalise_run", "find_run", "find_run_id", "has_checkpoint", "is_resumable",
           "list_runs", "mark_interrupted", "resumable_run", "resumable_runs", "resume_run",
           "run_status", "start_run", "training_stream",
           # the owners and heartbeats (.run_owner), kept importable from here
           "HEARTBEAT_INTERVAL_S", "HEARTBEAT_TIMEOUT_S", "OWNER_FILE", "Heartbeat",
           "lower_priority", "owner_state", "process_alive", "read_owner"]
