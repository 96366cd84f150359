"""The export's CSV tables, rebuilt from the manifest records of the whole cohort:
``measurements.csv`` (one row per volume: status, mL per class, QC, cardiac function of
its pair) and ``cardiac.csv`` (one row per ED/ES pair, with its ``qc``). Both end with a
``qc_report`` column: the row's link into the QC report (:mod:`.qc`), empty without one.
:func:`summarise` is what the tables and the report share."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...io.atomic import write_bytes_atomic
from ...states import RecordStatus
from .cohort import ExportItem
from .measure import (CARDIAC_COLUMNS, cardiac_class_names, cardiac_function, cardiac_pairs,
                      cardiac_qc)
from .records import (CARDIAC_CSV, MAP_DIRS, MEASUREMENTS_CSV, ExportRecord, qc_anchors,
                      qc_link)


@dataclass
class Summary:
    """The cohort as the tables see it: ``current`` (records of the model), ``ok`` (those
    that count), ``cardiac`` (canonical → class name), ``pairs`` (subject → ED, ES),
    ``function`` (subject → cardiac function, pairs with both frames ``ok``), ``pair_qc``
    (subject → its flags, for those), ``subject_of`` (volume → subject of its pair)."""

    current: dict[str, ExportRecord]
    ok: dict[str, ExportRecord]
    cardiac: dict[str, str]
    pairs: dict[str, tuple[str, str]]
    function: dict[str, dict]
    pair_qc: dict[str, list[str]]
    subject_of: dict[str, str]


def summarise(items: Sequence[ExportItem], records: Mapping[str, ExportRecord | None],
              classes: Sequence[str], model_id: str,
              is_current: Callable[[ExportRecord | None], bool]) -> Summary:
    """A record counts when it is of ``model_id`` and ``is_current``."""
    current = {name: rec for name, rec in records.items()
               if rec is not None and rec.model_id == model_id}
    ok = {name: rec for name, rec in current.items() if is_current(rec)}
    cardiac = cardiac_class_names(classes)
    pairs = cardiac_pairs(items) if cardiac else {}
    function: dict[str, dict] = {}
    pair_qc: dict[str, list[str]] = {}
    for subject, (ed, es) in pairs.items():
        if ed in ok and es in ok:
            ed_ml = {c: ok[ed].measurements["ml"][n] for c, n in cardiac.items()}
            es_ml = {c: ok[es].measurements["ml"][n] for c, n in cardiac.items()}
            function[subject] = cardiac_function(ed_ml, es_ml)
            pair_qc[subject] = cardiac_qc(function[subject], ok[ed].measurements,
                                          ok[es].measurements, cardiac)
    subject_of = {n: s for s, pair in pairs.items() for n in pair}
    return Summary(current, ok, cardiac, pairs, function, pair_qc, subject_of)


def write_tables(out: Path, items: Sequence[ExportItem],
                 records: Mapping[str, ExportRecord | None], classes: Sequence[str],
                 model_id: str, is_current: Callable[[ExportRecord | None], bool], *,
                 qc_report: bool = False) -> Path:
    """Write ``OUT/measurements.csv`` (and ``OUT/cardiac.csv`` when the cohort has ED/ES
    pairs and the model cardiac classes) for ``items`` with their ``records`` (name →
    record or ``None``); a record counts when it is of ``model_id`` and ``is_current``
    (``ok`` with today's options). ``qc_report``: fill the ``qc_report`` links (the
    report was written). Returns the measurements path."""
    summary = summarise(items, records, classes, model_id, is_current)
    current, ok, cardiac = summary.current, summary.ok, summary.cardiac
    pairs, function, subject_of = summary.pairs, summary.function, summary.subject_of
    volume_links = {n: qc_link(a) for n, a in qc_anchors(
        (item.name for item in items), "v-").items()} if qc_report else {}
    subject_links = {s: qc_link(a) for s, a in qc_anchors(pairs, "s-").items()} \
        if qc_report else {}
    class_columns = [f"{name}_{unit}" for name in classes[1:] for unit in ("voxels", "ml")]
    cardiac_columns = [c for c in CARDIAC_COLUMNS if c.split("_")[0] in cardiac]
    columns = (["name", "status", "error", "subject", "frame", "input", "labels",
                "probabilities", "uncertainty", "shape_zyx", "spacing_zyx_mm", "voxel_ml"]
               + class_columns + ["mean_uncertainty", "qc"] + cardiac_columns
               + ["model_id", "exported_at", "qc_report"])
    rows = []
    for item in items:
        rec = records[item.name]
        row = {"name": item.name, "subject": item.tags.get("subject", ""),
               "frame": item.tags.get("frame", ""), "input": str(item.path),
               "qc_report": volume_links.get(item.name, "")}
        if item.name in ok:
            m = rec.measurements
            row.update({
                "status": str(RecordStatus.OK), "input": rec.input["path"],
                **{k: rec.outputs.get(k, "") for k in MAP_DIRS},
                "shape_zyx": "x".join(str(s) for s in rec.shape),
                "spacing_zyx_mm": "x".join(_fmt(s) for s in rec.spacing_mm),
                "voxel_ml": _fmt(rec.voxel_ml),
                "mean_uncertainty": _fmt(m["mean_uncertainty"]),
                "qc": ";".join(m["qc"]) or "ok", "model_id": rec.model_id,
                "exported_at": rec.finished_at})
            for name in classes[1:]:
                row[f"{name}_voxels"] = m["voxels"][name]
                row[f"{name}_ml"] = _fmt(m["ml"][name])
            row.update({k: _fmt(v) for k, v in
                        function.get(subject_of.get(item.name, ""), {}).items()})
        elif item.name in current and rec.status == RecordStatus.FAILED:
            row.update({"status": str(RecordStatus.FAILED), "error": rec.error or "",
                        "model_id": rec.model_id, "exported_at": rec.finished_at})
        else:
            row["status"] = str(RecordStatus.PENDING)
        rows.append(row)
    path = out / MEASUREMENTS_CSV
    write_csv(path, columns, rows)
    if pairs:
        subject_columns = (["subject", "ED", "ES", "status"] + cardiac_columns
                           + ["qc", "qc_report"])
        subject_rows = [{"subject": s, "ED": ed, "ES": es,
                         "status": "ok" if s in function else "incomplete",
                         **{k: _fmt(v) for k, v in function.get(s, {}).items()},
                         "qc": ";".join(summary.pair_qc[s]) or "ok" if s in function else "",
                         "qc_report": subject_links.get(s, "")}
                        for s, (ed, es) in pairs.items()]
        write_csv(out / CARDIAC_CSV, subject_columns, subject_rows)
    return path


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping]) -> None:
    """``rows`` (dicts) under ``columns`` (``None`` → empty), written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    write_bytes_atomic(path, buffer.getvalue().encode())


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return format(float(value), ".10g")


__all__ = ["Summary", "summarise", "write_csv", "write_tables"]
