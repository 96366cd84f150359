"""The states the project writes and reports, as string enums.

Each member *is* its string (:class:`enum.StrEnum`): it compares equal to, hashes like and
is written (JSON, SQLite, CSV, logs) as the same text as before, so files and manifests are
unchanged. Qt-, napari- and torch-free.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A training run's status. The store keeps the first five (:data:`STORED_RUN_STATUSES`,
    the manifest's ``CHECK`` constraint); ``interrupted`` and ``budget`` are only reported
    (:func:`napari_weakseg.training.project_runs.run_status`)."""

    CREATED = "created"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # reported: the owning process is gone
    BUDGET = "budget"  # reported/stopped: the time budget ended the run


#: what the runs table may hold (order as in the manifest's CHECK constraint)
STORED_RUN_STATUSES = (RunStatus.CREATED, RunStatus.RUNNING, RunStatus.COMPLETED,
                       RunStatus.FAILED, RunStatus.CANCELLED)


class ExportStatus(StrEnum):
    """A batch export progress event's ``status`` (``ExportProgress.status``)."""

    STARTED = "started"
    EXPORTED = "exported"
    SKIPPED = "skipped"
    FAILED = "failed"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class RecordStatus(StrEnum):
    """A volume's export state: in its manifest record (``ok``/``failed``) and in
    ``measurements.csv`` (also ``pending``: no current record)."""

    OK = "ok"
    FAILED = "failed"
    PENDING = "pending"


__all__ = ["ExportStatus", "RecordStatus", "RunStatus", "STORED_RUN_STATUSES"]
