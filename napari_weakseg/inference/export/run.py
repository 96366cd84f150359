"""The export run: load the model, skip what is up to date, read volumes ahead in a
thread, predict, measure, write every output through a staging folder, write the record,
log, and (rank 0 under ``torchrun``) rebuild the tables. See the package docstring for the
output layout, resume and sharding rules."""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ...errors import InputError, OutputError
from ...io.atomic import fsync_dir, sha256_file
from ...io.errors import VolumeError
from ...io.formats import read_any
from ...io.nifti import write_labels, write_volume
from ...postprocess import Postprocessing, fill_holes
from ...runtime import dist_rank, dist_world_size
from ...states import ExportStatus, RecordStatus
from ..predictor import Predictor as _Predictor
from .cohort import Cohort, ExportItem, discover_inputs, resolve_shard, safe_name, shard_items
from .measure import measure_volume
from .options import ExportOptions, ExportProgress, ExportReport
from .qc import check_qc_output, write_qc_report
from .records import (LOG_FILE, MANIFEST_DIR, MAP_DIRS, STAGING_DIR, ExportRecord, now,
                      read_record, record_path, write_record)
from .tables import write_tables

log = logging.getLogger("napari_weakseg.inference.export")


class Predictor(Protocol):
    """What the export needs from a model: class names (index 0 background), an identity
    string (changes when the model does) and ``predict(image (Z, Y, X), flip_tta)`` →
    :class:`~napari_weakseg.inference.predict.Prediction` with probabilities and entropy."""

    classes: list[str]
    identity: str

    def predict(self, image: np.ndarray, flip_tta: bool = False): ...


class ModelPredictor(_Predictor):
    """A model folder for export: the shared
    :class:`~napari_weakseg.inference.predictor.Predictor` (recorded pre- and
    post-processing; ``postprocess`` overrides the latter)."""

    def __init__(self, folder: str | os.PathLike, device: str = "auto",
                 batch_slices: int = 16, postprocess: str | None = None):
        super().__init__(folder, device or "auto", postprocess, batch_slices=batch_slices)


def export_cohort(model: str | os.PathLike | Predictor,
                  sources: Iterable[str | os.PathLike] | Cohort,
                  out_dir: str | os.PathLike, options: ExportOptions | None = None, *,
                  tags: Mapping[str, str] | None = None,
                  progress: Callable[[ExportProgress], None] | None = None,
                  cancel: threading.Event | None = None,
                  message: Callable[[str], None] | None = None) -> ExportReport:
    """Export this shard of the cohort of ``sources`` (see :func:`discover_inputs`) with
    ``model`` (a model folder or a :class:`Predictor`) into ``out_dir``.

    ``progress`` is called (in this thread) after each volume; setting ``cancel`` stops
    after the current volume; ``message`` receives the log lines. A bad input is reported
    (log, CSV, report) and skipped. Errors that concern the whole run (no inputs, a bad
    model folder, outputs that would replace an input) raise ``ValueError``.
    """
    options = options or ExportOptions()
    cohort = sources if isinstance(sources, Cohort) else discover_inputs(sources, tags=tags)
    owns_cohort = not isinstance(sources, Cohort)
    try:
        return _Export(model, cohort, Path(out_dir), options, progress, cancel,
                       message).run()
    finally:
        if owns_cohort:
            cohort.close()


class _Export:
    def __init__(self, model, cohort: Cohort, out_dir: Path, options: ExportOptions,
                 progress, cancel, message):
        if not cohort.items:
            raise InputError("no input volumes found" + (
                f" ({len(cohort.ignored)} files left out: {cohort.ignored[0]} …)"
                if cohort.ignored else ""))
        self.model = model
        self.cohort = cohort
        self.out = out_dir
        self.options = options
        self.progress = progress or (lambda event: None)
        self.cancel = cancel or threading.Event()
        self.message = message
        self.shard = resolve_shard(options.shard)
        self.items = shard_items(cohort.items, *self.shard)
        self._check_outputs_do_not_replace_inputs()
        check_qc_output(out_dir, cohort.items, options.force, enabled=options.qc_report)

    # -- helpers -------------------------------------------------------------------------
    def _check_outputs_do_not_replace_inputs(self) -> None:
        inputs = {str(item.path.resolve()) for item in self.cohort.items}
        for item in self.cohort.items:
            for folder in MAP_DIRS.values():
                target = (self.out / folder / f"{safe_name(item.name)}.nii.gz").resolve()
                if str(target) in inputs:
                    raise OutputError(f"{target}: the export would replace this input; choose "
                                     "another output folder")

    def _output(self, kind: str, item: ExportItem) -> Path:
        return self.out / MAP_DIRS[kind] / f"{safe_name(item.name)}.nii.gz"

    def _record_path(self, item: ExportItem) -> Path:
        return record_path(self.out, safe_name(item.name))

    def _log(self, text: str) -> None:
        shard = f" [shard {self.shard[0]}/{self.shard[1]}]" if self.shard[1] > 1 else ""
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')}{shard} {text}"
        log.info(text)
        try:
            with open(self.out / LOG_FILE, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except OSError as exc:  # the log must never stop the export
            log.warning("cannot write %s: %s", self.out / LOG_FILE, exc)
        if self.message:
            self.message(text)

    def read_record(self, item: ExportItem) -> ExportRecord | None:
        return read_record(self._record_path(item))

    def _write_record(self, item: ExportItem, record: ExportRecord) -> None:
        write_record(self._record_path(item), record)

    def _record_is_current(self, record: ExportRecord | None) -> bool:
        return (record is not None and record.ok
                and record.model_id == self.model_id
                and record.options == self.label_options
                and set(self.options.maps()) <= set(record.outputs))

    def _up_to_date(self, item: ExportItem) -> bool:
        record = self.read_record(item)
        if not self._record_is_current(record):
            return False
        if any(not (self.out / rel).is_file() for rel in record.outputs.values()):
            return False
        known = record.input
        if item.sha256 is not None:
            return known.get("sha256") == item.sha256
        try:
            stat = item.path.stat()
        except OSError:
            return False
        if known.get("size") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns:
            return True
        return known.get("sha256") == sha256_file(item.path)

    def _clean_leftovers(self) -> None:
        """Remove what a killed run of this shard left: staging folders and temporary
        manifest files of this shard's volumes (nothing under a final name)."""
        for item in self.items:
            stem = safe_name(item.name)
            shutil.rmtree(self.out / STAGING_DIR / stem, ignore_errors=True)
            for tmp in (self.out / MANIFEST_DIR).glob(f".{stem}.json.*.tmp"):
                tmp.unlink(missing_ok=True)

    def _read(self, item: ExportItem):
        """Runs in the prefetch thread: the volume and what identifies the input."""
        stat = item.path.stat() if item.path.exists() else None
        volume = item.reader() if item.reader else read_any(item.path, allow_4d=False)
        digest = item.sha256 or sha256_file(item.path)
        return volume, {"path": str(item.path.resolve()),
                        "size": stat.st_size if stat else None,
                        "mtime_ns": stat.st_mtime_ns if stat else None, "sha256": digest}

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> ExportReport:
        started = time.perf_counter()
        predictor = self.model if not isinstance(self.model, (str, os.PathLike)) \
            else self._load_model()  # a bad model folder raises before anything is written
        self.predictor = predictor
        self.model_id = predictor.identity
        self.classes = list(predictor.classes)
        recorded = getattr(predictor, "recorded_postprocessing", None) or Postprocessing("none")
        requested = self.options.requested_postprocess()
        self.post = recorded.with_name(requested)
        self.postprocess_info = {"name": self.post.name,
                                 "source": "override" if requested else "model",
                                 "model": recorded.name, "rules": dict(recorded.rules)}
        self.tta = self.options.requested_tta() or getattr(predictor, "recorded_tta", "none")
        self.label_options = self.options.label_options(recorded.name, self.tta)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / MANIFEST_DIR).mkdir(exist_ok=True)
        distributed = _init_distributed()
        report = ExportReport(self.out, len(self.cohort.items), self.shard,
                              total=len(self.items), ignored=list(self.cohort.ignored))
        try:
            self._clean_leftovers()
            for text in self.cohort.ignored:
                self._log(f"ignored {text}")
            todo = []
            for item in self.items:
                if not self.options.force and self._up_to_date(item):
                    report.skipped.append(item.name)
                else:
                    todo.append(item)
            self._log(f"export of {len(self.items)} volumes with model {self.model_id} "
                      f"({len(report.skipped)} already done) into {self.out}")
            self.progress(ExportProgress(ExportStatus.STARTED, len(report.skipped), report.total))
            for name in report.skipped:
                self._log(f"skipped {name}: already exported with this model")
            done = len(report.skipped)
            if todo and hasattr(predictor, "load"):
                predictor.load()
            threads_before = None
            if self.options.threads:
                import torch

                threads_before = torch.get_num_threads()
                torch.set_num_threads(self.options.threads)
            loader = _Prefetcher(todo, self._read, self.options.prefetch)
            try:
                for item, loaded in loader:
                    if self.cancel.is_set():
                        break
                    status, text, seconds = self._export_one(item, loaded)
                    done += 1
                    if status == ExportStatus.EXPORTED:
                        report.exported.append(item.name)
                    else:
                        report.failed[item.name] = text
                    self.progress(ExportProgress(status, done, report.total, item.name,
                                                 text, seconds))
            finally:
                loader.close()
                if threads_before is not None:
                    import torch

                    torch.set_num_threads(threads_before)  # the caller's setting again
                try:
                    (self.out / STAGING_DIR).rmdir()  # only when empty (no other shard busy)
                except OSError:
                    pass
            handled = set(report.exported) | set(report.failed) | set(report.skipped)
            report.not_done = [i.name for i in self.items if i.name not in handled]
            report.cancelled = bool(report.not_done) and self.cancel.is_set()
        finally:
            if distributed:
                _barrier_and_destroy()
        rank0 = dist_rank() == 0 or not distributed
        if rank0:
            self.write_reports(report)
        report.seconds = time.perf_counter() - started
        self._log(("cancelled: " if report.cancelled else "finished: ") + report.summary())
        self.progress(ExportProgress(ExportStatus.CANCELLED if report.cancelled
                                     else ExportStatus.FINISHED,
                                     report.total - len(report.not_done), report.total))
        return report

    def _load_model(self) -> ModelPredictor:
        return ModelPredictor(self.model, self.options.device, self.options.batch_slices,
                              postprocess=self.options.requested_postprocess())

    def _predict(self, volume):
        """The prediction with the effective post-processing: through the shared
        :class:`Predictor`, or (another object with ``predict(image, flip_tta)``) its raw
        labels post-processed here by name."""
        if isinstance(self.predictor, _Predictor):
            return self.predictor.predict(volume.data, volume.geometry.spatial_spacing,
                                          tta=self.tta, postprocess=self.post.name)
        prediction = self.predictor.predict(volume.data, flip_tta=self.tta == "mirror")
        raw = np.asarray(prediction.labels)
        prediction.raw_labels = raw
        prediction.labels = self.post(raw, self.classes, prediction.probabilities)
        prediction.postprocess = self.post.name
        return prediction

    def _export_one(self, item: ExportItem, loaded) -> tuple[str, str, float]:
        start = time.perf_counter()
        try:
            if isinstance(loaded, BaseException):
                raise loaded
            volume, input_info = loaded
            prediction = self._predict(volume)
            raw = np.asarray(prediction.raw_labels if prediction.raw_labels is not None
                             else prediction.labels)
            labels = np.asarray(prediction.labels)
            if self.options.fill_holes:
                labels = fill_holes(labels)
            geometry = volume.geometry
            measurements = measure_volume(labels, geometry.voxel_volume_ml, self.classes,
                                          entropy=prediction.entropy, raw_labels=raw,
                                          rules=self.post.rules)
            outputs = self._write_outputs(item, geometry, labels, prediction)
        except Exception as exc:  # one bad volume never stops the cohort
            seconds = time.perf_counter() - start
            text = str(exc) if isinstance(exc, VolumeError) else \
                f"{item.path}: {type(exc).__name__}: {exc}"
            kept = [str(p) for p in (self._output(k, item) for k in MAP_DIRS) if p.exists()]
            self._write_record(item, ExportRecord(
                name=item.name, status=RecordStatus.FAILED, error=text,
                input={"path": str(item.path)}, model_id=self.model_id,
                options=self.label_options, postprocess=self.postprocess_info,
                tags=dict(item.tags), kept_outputs=kept, finished_at=now()))
            self._log(f"failed {item.name}: {text}"
                      + (f" (earlier outputs kept: {', '.join(kept)})" if kept else ""))
            if not isinstance(exc, VolumeError):
                self._log("".join(traceback.format_exception(exc)).rstrip())
            return ExportStatus.FAILED, text, seconds
        seconds = time.perf_counter() - start
        self._write_record(item, ExportRecord(
            name=item.name, status=RecordStatus.OK, error=None, input=input_info,
            model_id=self.model_id, options=self.label_options,
            postprocess=self.postprocess_info,
            preprocessing=getattr(self.predictor, "config", {}).get("preprocessing"),
            outputs=outputs, tags=dict(item.tags), shape=list(geometry.spatial_shape),
            spacing_mm=list(geometry.spatial_spacing), voxel_ml=geometry.voxel_volume_ml,
            measurements=measurements, seconds=round(seconds, 3), finished_at=now()))
        self._log(f"exported {item.name} in {seconds:.2f} s"
                  + (f" (QC: {', '.join(measurements['qc'])})" if measurements["qc"] else ""))
        return ExportStatus.EXPORTED, outputs["labels"], seconds

    def _write_outputs(self, item: ExportItem, geometry, labels: np.ndarray,
                       prediction) -> dict[str, str]:
        """Write every map into the staging folder, then rename each into place."""
        staging = self.out / STAGING_DIR / safe_name(item.name)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        staged = {"labels": write_labels(staging / "labels.nii.gz", labels, geometry)}
        if self.options.probabilities:
            if prediction.probabilities is None:
                raise ValueError("the model gave no probabilities")
            staged["probabilities"] = write_volume(
                staging / "probabilities.nii.gz", prediction.probabilities, geometry,
                dtype=np.float32)
        if self.options.uncertainty:
            if prediction.entropy is None:
                raise ValueError("the model gave no uncertainty")
            staged["uncertainty"] = write_volume(staging / "uncertainty.nii.gz",
                                                 prediction.entropy, geometry,
                                                 dtype=np.float32)
        outputs = {}
        for kind, path in staged.items():
            target = self._output(kind, item)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            fsync_dir(target.parent)
            outputs[kind] = target.relative_to(self.out).as_posix()
        shutil.rmtree(staging, ignore_errors=True)
        return outputs

    # -- tables --------------------------------------------------------------------------
    def write_reports(self, report: ExportReport) -> None:
        """QC report (a failure is only logged) and tables from all the cohort's records."""
        args = (self.out, self.cohort.items, {i.name: self.read_record(i) for i in
                self.cohort.items}, self.classes, self.model_id, self._record_is_current)
        try:
            if self.options.qc_report:
                report.qc_path = write_qc_report(*args, lowest=self.options.qc_lowest,
                                                 force=self.options.force)
        except Exception as exc:
            self._log(f"failed QC report: {type(exc).__name__}: {exc}")
        report.csv_path = write_tables(*args, qc_report=report.qc_path is not None)


class _Prefetcher:
    """Reads the next ``depth`` volumes in a background thread while the caller predicts;
    yields ``(item, (volume, input) | exception)`` in order. ``depth`` 0 reads inline."""

    _END = object()

    def __init__(self, items: Sequence[ExportItem], read, depth: int):
        self.items, self.read, self.depth = list(items), read, depth
        self.stop = threading.Event()
        self.queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self.thread = None
        if depth > 0 and self.items:
            self.thread = threading.Thread(target=self._run, name="weakseg-export-prefetch",
                                           daemon=True)
            self.thread.start()

    def _load(self, item):
        try:
            return self.read(item)
        except Exception as exc:
            return exc

    def _put(self, entry) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        for item in self.items:
            if self.stop.is_set() or not self._put((item, self._load(item))):
                return
        self._put(self._END)

    def __iter__(self) -> Iterator:
        if self.thread is None:
            for item in self.items:
                yield item, self._load(item)
            return
        while True:
            entry = self.queue.get()
            if entry is self._END:
                return
            yield entry

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


def _init_distributed() -> bool:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1 with a rendezvous address), join a gloo group
    so that rank 0 can write the tables once every rank is done. True if we joined."""
    if dist_world_size() <= 1 or "MASTER_ADDR" not in os.environ:
        return False
    import datetime

    import torch.distributed as dist

    if dist.is_initialized():
        return False
    dist.init_process_group("gloo", timeout=datetime.timedelta(hours=24))
    return True


def _barrier_and_destroy() -> None:
    import torch.distributed as dist

    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()


__all__ = ["ModelPredictor", "Predictor", "export_cohort"]
