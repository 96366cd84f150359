"""A project's training runs and registered models: their manifest rows (the run folders
and model folders themselves are :mod:`napari_weakseg.training.project_runs`'s)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..states import STORED_RUN_STATUSES, RunStatus
from . import manifest
from .connection import ManifestConnection
from .records import ModelRecord, NotFoundError, RunRecord, StoreError, dumps

RUN_STATUSES = STORED_RUN_STATUSES


class RunRepository:
    """The ``runs`` and ``models`` rows of one project."""

    def __init__(self, db: ManifestConnection):
        self.db = db
        self.root = db.root

    def create_run(self, method: str, config: Mapping[str, Any] | None = None, *,
                   device: str | None = None, out_dir: str | os.PathLike | None = None,
                   log_path: str | os.PathLike | None = None) -> RunRecord:
        """Record a new training run (status ``created``)."""
        stamp = manifest.now()
        with self.db.write() as conn:
            run_id = conn.execute(
                "INSERT INTO runs (method, config, device, out_dir, log_path, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (method, dumps(dict(config or {})), device,
                 None if out_dir is None else str(out_dir),
                 None if log_path is None else str(log_path), stamp, stamp)).lastrowid
        return self.run(run_id)

    def update_run(self, run_id: int, *, status: str | None = None,
                   metrics: Mapping[str, Any] | None = None, device: str | None = None,
                   error: str | None = None, out_dir: str | os.PathLike | None = None,
                   log_path: str | os.PathLike | None = None) -> RunRecord:
        """Update a run; ``metrics`` are merged into the stored ones. Setting status
        ``running`` stamps ``started_at`` (first time), a final status ``finished_at``."""
        if status is not None and status not in RUN_STATUSES:
            raise StoreError(f"run status must be one of {', '.join(RUN_STATUSES)}")
        stamp = manifest.now()
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"{self.root}: no run {run_id}")
            merged = json.loads(row["metrics"])
            merged.update(metrics or {})
            sets = {"updated_at": stamp, "metrics": dumps(merged)}
            if status is not None:
                sets["status"] = status
                if status == RunStatus.RUNNING and row["started_at"] is None:
                    sets["started_at"] = stamp
                if status in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED):
                    sets["finished_at"] = stamp
            for key, value in (("device", device), ("error", error), ("out_dir", out_dir),
                               ("log_path", log_path)):
                if value is not None:
                    sets[key] = str(value)
            conn.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",
                         (*sets.values(), run_id))
        return self.run(run_id)

    def run(self, run_id: int) -> RunRecord:
        rows = self.db.query("SELECT * FROM runs WHERE id = ?", (int(run_id),))
        if not rows:
            raise NotFoundError(f"{self.root}: no run {run_id}")
        return run_record(rows[0])

    def runs(self, *, method: str | None = None, status: str | None = None) -> list[RunRecord]:
        """Runs, oldest first, optionally filtered."""
        clauses, params = [], []
        for key, value in (("method", method), ("status", status)):
            if value is not None:
                clauses.append(f"{key} = ?")
                params.append(value)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        return [run_record(r) for r in self.db.query(sql + " ORDER BY id", params)]

    def register_model(self, name: str, path: str | os.PathLike, *, method: str | None = None,
                       run_id: int | None = None, config: Mapping[str, Any] | None = None,
                       metrics: Mapping[str, Any] | None = None) -> ModelRecord:
        """Register a model folder (relative paths are taken relative to the project)."""
        path = Path(path)
        stored = path.as_posix() if not path.is_absolute() else str(path)
        with self.db.write() as conn:
            # checked under the write lock: no other process can register the name meanwhile
            if conn.execute("SELECT 1 FROM models WHERE name = ?", (name,)).fetchone():
                raise StoreError(f"{self.root}: a model named {name!r} exists")
            model_id = conn.execute(
                "INSERT INTO models (name, path, method, run_id, config, metrics, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, stored, method, run_id, dumps(dict(config or {})),
                 dumps(dict(metrics or {})), manifest.now())).lastrowid
        return self.model(model_id)

    def model(self, ref: int | str) -> ModelRecord:
        key = "id" if isinstance(ref, (int, np.integer)) else "name"
        rows = self.db.query(f"SELECT * FROM models WHERE {key} = ?", (ref,))
        if not rows:
            raise NotFoundError(f"{self.root}: no model {ref!r}")
        return self._model_record(rows[0])

    def models(self, *, method: str | None = None) -> list[ModelRecord]:
        sql, params = "SELECT * FROM models", []
        if method is not None:
            sql, params = sql + " WHERE method = ?", [method]
        return [self._model_record(r) for r in self.db.query(sql + " ORDER BY id", params)]

    def _model_record(self, row) -> ModelRecord:
        path = Path(row["path"])
        return ModelRecord(id=row["id"], name=row["name"],
                           path=path if path.is_absolute() else self.root / path,
                           method=row["method"], run_id=row["run_id"],
                           config=json.loads(row["config"]), metrics=json.loads(row["metrics"]),
                           created_at=row["created_at"])


def run_record(row) -> RunRecord:
    """The :class:`RunRecord` of a ``runs`` row."""
    return RunRecord(id=row["id"], method=row["method"], config=json.loads(row["config"]),
                     device=row["device"], status=row["status"],
                     metrics=json.loads(row["metrics"]), out_dir=row["out_dir"],
                     log_path=row["log_path"], error=row["error"],
                     created_at=row["created_at"], updated_at=row["updated_at"],
                     started_at=row["started_at"], finished_at=row["finished_at"])
