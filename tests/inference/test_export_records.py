"""The export's manifest record type: JSON exactly as the export always wrote it (keys and
their order per status), round trips, and what is not a record of this version."""

from __future__ import annotations

import json

from napari_weakseg.inference.export import ExportRecord, read_record, read_records
from napari_weakseg.inference.export.records import record_path, write_record
from napari_weakseg.states import RecordStatus

OK = {"version": 1, "name": "p1", "status": "ok", "error": None,
      "input": {"path": "/in/p1.nii.gz", "size": 3, "mtime_ns": 4, "sha256": "ab"},
      "model_id": "m", "options": {"flip_tta": False, "postprocess": "none",
                                   "fill_holes": False},
      "postprocess": {"name": "none", "source": "model", "model": "none", "rules": {}},
      "preprocessing": None, "outputs": {"labels": "labels/p1.nii.gz"}, "tags": {},
      "shape": [2, 3, 4], "spacing_mm": [1.0, 1.0, 1.0], "voxel_ml": 0.001,
      "measurements": {"voxels": {}, "ml": {}, "mean_uncertainty": None, "qc": []},
      "seconds": 0.5, "finished_at": "2025-01-01T00:00:00+0000"}
FAILED = {"version": 1, "name": "p2", "status": "failed", "error": "bad file",
          "input": {"path": "/in/p2.nii.gz"}, "model_id": "m", "options": {},
          "postprocess": {}, "tags": {"subject": "patient002"}, "kept_outputs": [],
          "finished_at": "2025-01-01T00:00:00+0000"}


def test_records_write_the_keys_of_their_status_in_order():
    for data in (OK, FAILED):
        record = ExportRecord.from_json(data)
        assert record is not None
        assert list(record.to_json()) == list(data) and record.to_json() == data


def test_write_then_read_round_trips(tmp_path):
    record = ExportRecord.from_json(OK)
    path = write_record(record_path(tmp_path, "p1"), record)
    assert json.loads(path.read_text()) == OK
    again = read_record(path)
    assert again == record and again.ok and again.status == RecordStatus.OK
    assert again.labels_path(tmp_path) == tmp_path / "labels" / "p1.nii.gz"
    write_record(record_path(tmp_path, "p2"), ExportRecord.from_json(FAILED))
    assert [r.name for r in read_records(tmp_path)] == ["p1", "p2"]
    assert read_records(tmp_path)[1].labels_path(tmp_path) is None


def test_what_is_not_a_record_reads_as_none(tmp_path):
    assert read_record(tmp_path / "missing.json") is None
    for text in ("{not json", "[1, 2]", json.dumps({**OK, "version": 2}),
                 json.dumps({"version": 1})):
        (tmp_path / "x.json").write_text(text)
        assert read_record(tmp_path / "x.json") is None
