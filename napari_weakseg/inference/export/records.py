"""The export's output layout and its manifest record: ``OUT/manifest/NAME.json`` says
what was exported for one volume, from which input, with which model and options (resume,
tables, the panel's "open the predictions" all read it through :class:`ExportRecord`).

The JSON is written exactly as before the record type existed (same keys, same order; an
``ok`` record has no ``kept_outputs``, a ``failed`` one only the keys it always had), so
older output folders resume and newer ones read the same.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...io.atomic import json_default, write_bytes_atomic
from ...io.paths import safe_stem
from ...states import RecordStatus

LABELS_DIR = "labels"
PROBABILITIES_DIR = "probabilities"
UNCERTAINTY_DIR = "uncertainty"
MANIFEST_DIR = "manifest"
STAGING_DIR = ".staging"
MEASUREMENTS_CSV = "measurements.csv"
CARDIAC_CSV = "cardiac.csv"
LOG_FILE = "export.log"
QC_DIR = "qc"
QC_INDEX = "index.html"
RECORD_VERSION = 1
MAP_DIRS = {"labels": LABELS_DIR, "probabilities": PROBABILITIES_DIR,
            "uncertainty": UNCERTAINTY_DIR}

#: keys only an ``ok`` record has / only a ``failed`` record has
_OK_ONLY = ("preprocessing", "outputs", "shape", "spacing_mm", "voxel_ml", "measurements",
            "seconds")
_FAILED_ONLY = ("kept_outputs",)


@dataclass
class ExportRecord:
    """One volume's manifest record. ``status``: ``ok`` (``outputs`` are paths relative to
    the output folder, ``measurements`` from :func:`~.measure.measure_volume`) or
    ``failed`` (``error``; ``kept_outputs``: earlier outputs left in place). ``input``:
    ``path``, ``size``, ``mtime_ns``, ``sha256`` of the input read; ``options``: the label
    options (a change redoes the volume); ``postprocess``: which post-processing, and
    whether the model or an override chose it."""

    name: str
    status: str
    error: str | None = None
    input: dict[str, Any] = field(default_factory=dict)
    model_id: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    postprocess: dict[str, Any] = field(default_factory=dict)
    preprocessing: Any = None
    outputs: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    kept_outputs: list[str] = field(default_factory=list)
    shape: list[int] = field(default_factory=list)
    spacing_mm: list[float] = field(default_factory=list)
    voxel_ml: float | None = None
    measurements: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    finished_at: str = ""
    version: int = RECORD_VERSION

    @property
    def ok(self) -> bool:
        return self.status == RecordStatus.OK

    def to_json(self) -> dict[str, Any]:
        """The record as written: ``version`` first, then the fields of its status."""
        left_out = _FAILED_ONLY if self.ok else _OK_ONLY
        data: dict[str, Any] = {"version": self.version}
        for f in dataclasses.fields(self):
            if f.name != "version" and f.name not in left_out:
                data[f.name] = getattr(self, f.name)
        data["status"] = str(self.status)
        return data

    @classmethod
    def from_json(cls, data: Any) -> ExportRecord | None:
        """The record of a parsed manifest file; ``None`` for another ``version`` or
        something that is not a record."""
        if not isinstance(data, dict) or data.get("version") != RECORD_VERSION \
                or not isinstance(data.get("name"), str) or "status" not in data:
            return None
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def labels_path(self, out_dir: str | os.PathLike) -> Path | None:
        """The exported labels file (``None`` unless ``ok``)."""
        rel = self.outputs.get("labels") if self.ok else None
        return Path(out_dir) / rel if rel else None


def record_path(out_dir: str | os.PathLike, stem: str) -> Path:
    """``OUT/manifest/STEM.json``."""
    return Path(out_dir) / MANIFEST_DIR / f"{stem}.json"


def read_record(path: str | os.PathLike) -> ExportRecord | None:
    """The record at ``path``; ``None`` when it is missing, unreadable, not JSON or of
    another version."""
    try:
        data = json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError, OSError, UnicodeDecodeError):
        return None
    return ExportRecord.from_json(data)


def read_records(out_dir: str | os.PathLike) -> list[ExportRecord]:
    """Every readable record of an output folder, by file name."""
    return [record for path in sorted((Path(out_dir) / MANIFEST_DIR).glob("*.json"))
            if (record := read_record(path)) is not None]


def write_record(path: str | os.PathLike, record: ExportRecord) -> Path:
    """Write ``record`` atomically (JSON, indent 1)."""
    return write_bytes_atomic(path, json.dumps(record.to_json(), indent=1,
                                               default=json_default).encode())


def qc_anchors(keys: Iterable[str], prefix: str) -> dict[str, str]:
    """The QC report's row ids: ``PREFIX + safe_stem(key)`` for each key in order, made
    unique case-insensitively (``-2``, ``-3`` … on a clash). Volumes use ``v-``, subjects
    ``s-``; the tables link to them (:func:`qc_link`), the report defines them."""
    anchors: dict[str, str] = {}
    used: set[str] = set()
    for key in keys:
        if key in anchors:
            continue
        base = anchor = prefix + safe_stem(key)
        number = 2
        while anchor.lower() in used:
            anchor, number = f"{base}-{number}", number + 1
        used.add(anchor.lower())
        anchors[key] = anchor
    return anchors


def qc_link(anchor: str) -> str:
    """The link from a CSV row to its row of the report: ``qc/index.html#ANCHOR``."""
    return f"{QC_DIR}/{QC_INDEX}#{anchor}"


def now() -> str:
    """The local time as the records write it (ISO 8601 with the UTC offset)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


__all__ = ["CARDIAC_CSV", "ExportRecord", "LABELS_DIR", "LOG_FILE", "MANIFEST_DIR",
           "MAP_DIRS", "MEASUREMENTS_CSV", "PROBABILITIES_DIR", "QC_DIR", "QC_INDEX",
           "RECORD_VERSION", "STAGING_DIR", "UNCERTAINTY_DIR", "now", "qc_anchors", "qc_link",
           "read_record", "read_records", "record_path", "write_record"]
