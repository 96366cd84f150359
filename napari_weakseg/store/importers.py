"""Import datasets into a project and export annotations out of it.

Sources: a folder of NIfTI files (labels/scribbles found by name), the nnU-Net raw layout,
WSL4MIS ``.h5`` volumes, and the ACDC folder of ``../shared/data/acdc`` (images, labels,
scribbles, ``splits.json``). Dense labels become *ground truth* (for evaluation; kept apart
from annotations) unless the caller asks for them as a ``dense`` annotation. Every import is
resumable: a volume already in the project (same name) gets only what it still lacks.
Bad files are reported in the :class:`ImportReport` and skipped, never silently.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import OutputError
from ..io.errors import VolumeError
from ..io.paths import OutputFolder, safe_stem
from ..io.geometry import VolumeGeometry
from ..io.nifti import (LABEL_NAME_PATTERN, is_nifti_path, read_labels, strip_nifti_suffix,
                        write_labels, write_volume)
from ..schema import LabelSchema
from ..weak.encoding import CLASS_KINDS, to_wsl4mis
from .project import Project
from .manifest import ManifestError
from .records import (NotFoundError, ProjectDiskError, ReadOnlyProjectError, StoreError,
                      VolumeRecord)

ACDC_NAME = re.compile(r"^(?P<subject>patient\d+)_frame(?P<frame>\d+)$")
ACDC_SCRIBBLE_AUTHOR = "ACDC manual scribbles (Valvano et al., IEEE TMI 2021)"
LABEL_SUFFIXES = ("_gt", "_seg", "_label", "_labels", "_mask")
SCRIBBLE_SUFFIXES = ("_scribble", "_scribbles")
FORMATS = ("auto", "acdc", "nnunet", "wsl4mis", "folder")


@dataclass
class ImportReport:
    """What an import did: volume names added / already present, files refused."""

    added: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    annotations: int = 0
    ground_truths: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        text = (f"{len(self.added)} volumes added, {len(self.existing)} already present, "
                f"{self.annotations} annotations and {self.ground_truths} ground truths saved")
        if self.errors:
            text += f"; {len(self.errors)} files refused:\n  " + "\n  ".join(self.errors)
        return text


# -- helpers ---------------------------------------------------------------------------------
def _get_or_add(project: Project, report: ImportReport, image: Path, *, name: str,
                copy: bool, tags: Mapping[str, str]) -> VolumeRecord | None:
    try:
        record = project.volume(name)
    except NotFoundError:
        try:
            record = project.add_volume(image, copy=copy, name=name, tags=tags)
        except (VolumeError, StoreError) as exc:
            raise_if_project_wide(exc)
            report.errors.append(str(exc))
            return None
        report.added.append(name)
        return record
    report.existing.append(name)
    missing = {k: v for k, v in tags.items() if record.tags.get(k) is None}
    if missing:
        record = project.set_tags(record, **missing)
    return record


def _add_annotation(project: Project, report: ImportReport, record: VolumeRecord, kind: str,
                    path: Path, *, encoding: str, author: str | None) -> None:
    if project.annotations(record, kind=kind):
        return  # resumed import: already there
    try:
        project.save_annotation(record, kind, path, encoding=encoding, author=author,
                                note=f"imported from {path}")
        report.annotations += 1
    except (VolumeError, StoreError) as exc:
        raise_if_project_wide(exc)
        report.errors.append(str(exc))


def _add_ground_truth(project: Project, report: ImportReport, record: VolumeRecord,
                      path: Path) -> None:
    if project.has_ground_truth(record):
        return
    try:
        project.set_ground_truth(record, path)
        report.ground_truths += 1
    except (VolumeError, StoreError) as exc:
        raise_if_project_wide(exc)
        report.errors.append(str(exc))


def _nifti(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and is_nifti_path(p) and not p.name.startswith("."))


def _sibling(folder: Path, stem: str) -> Path | None:
    for suffix in (".nii.gz", ".nii"):
        path = folder / f"{stem}{suffix}"
        if path.exists():
            return path
    return None


# -- ACDC --------------------------------------------------------------------------------------
def acdc_tags(names: Iterable[str]) -> dict[str, dict[str, str]]:
    """Tags of ACDC volume names: subject ``patientNNN``; frame ``ED`` for each patient's
    lowest frame number, ``ES`` for the other; dataset, modality."""
    frames: dict[str, list[int]] = {}
    parsed = {}
    for name in names:
        match = ACDC_NAME.match(name)
        if match:
            parsed[name] = (match["subject"], int(match["frame"]))
            frames.setdefault(match["subject"], []).append(int(match["frame"]))
    out = {}
    for name, (subject, frame) in parsed.items():
        out[name] = {"dataset": "ACDC", "modality": "cine-MRI", "subject": subject,
                     "frame": "ED" if frame == min(frames[subject]) else "ES"}
    return out


def import_acdc(project: Project, folder: str | os.PathLike, *, copy: bool = False
                ) -> ImportReport:
    """Import the ACDC folder (``images/``, ``labels/``, ``scribbles/``, ``splits.json``).

    Images are referenced (``copy=False``, default — the data stays where it is, checksums
    guard it) or copied. Scribbles (WSL4MIS convention, 4 = unannotated) become ``scribble``
    annotations, labels become ground truth; tags: dataset ``ACDC``, modality, subject,
    frame (ED/ES), split (from ``splits.json``; volumes not listed get no split).
    """
    folder = Path(folder)
    if not (folder / "images").is_dir():
        raise VolumeError(folder, "not an ACDC folder (no images/ subfolder)")
    if project.schema.names != LabelSchema.cardiac().names:
        raise StoreError(f"{project.root}: ACDC needs the cardiac schema "
                         f"{LabelSchema.cardiac().names}, the project has {project.schema.names}")
    splits: dict[str, str] = {}
    split_file = folder / "splits.json"
    if split_file.exists():
        for split, names in json.loads(split_file.read_text()).items():
            for name in names:
                splits[name] = split
    images = _nifti(folder / "images")
    names = [strip_nifti_suffix(p.name) for p in images]
    tags = acdc_tags(names)
    report = ImportReport()
    for path, name in zip(images, names):
        volume_tags = dict(tags.get(name, {"dataset": "ACDC"}))
        if name in splits:
            volume_tags["split"] = splits[name]
        record = _get_or_add(project, report, path, name=name, copy=copy, tags=volume_tags)
        if record is None:
            continue
        scribble = _sibling(folder / "scribbles", name) if (folder / "scribbles").is_dir() \
            else None
        if scribble is not None:
            _add_annotation(project, report, record, "scribble", scribble, encoding="wsl4mis",
                            author=ACDC_SCRIBBLE_AUTHOR)
        label = _sibling(folder / "labels", name) if (folder / "labels").is_dir() else None
        if label is not None:
            _add_ground_truth(project, report, record, label)
    return report


# -- a folder of NIfTI files -------------------------------------------------------------------
def import_folder(project: Project, folder: str | os.PathLike, *, copy: bool = True,
                  scribble_encoding: str = "wsl4mis", labels_as: str = "ground_truth",
                  tags: Mapping[str, str] | None = None) -> ImportReport:
    """Import every NIfTI image of ``folder``, with labels/scribbles found by name.

    Two layouts: subfolders ``images/`` (+ ``labels/``, ``scribbles/`` with the same file
    names), or one flat folder where ``NAME_gt|_seg|_label(s)|_mask`` is the label of
    ``NAME`` and ``NAME_scribble(s)`` its scribble. ``scribble_encoding``: ``"wsl4mis"``
    (background stroke 0, C = unannotated; default) or ``"ours"``. ``labels_as``:
    ``"ground_truth"`` (default) or ``"dense"`` (a training annotation).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise VolumeError(folder, "not a folder")
    if labels_as not in ("ground_truth", "dense"):
        raise StoreError(f"labels_as must be ground_truth or dense, got {labels_as!r}")
    report = ImportReport()
    if (folder / "images").is_dir():
        entries = []
        for image in _nifti(folder / "images"):
            name = strip_nifti_suffix(image.name)
            label = _sibling(folder / "labels", name) if (folder / "labels").is_dir() else None
            scribble = (_sibling(folder / "scribbles", name)
                        if (folder / "scribbles").is_dir() else None)
            entries.append((name, image, label, scribble))
    else:
        files = _nifti(folder)
        entries = []
        for image in files:
            name = strip_nifti_suffix(image.name)
            if LABEL_NAME_PATTERN.search(image.name):
                continue
            label = next((p for s in LABEL_SUFFIXES if (p := _sibling(folder, name + s))), None)
            scribble = next((p for s in SCRIBBLE_SUFFIXES
                             if (p := _sibling(folder, name + s))), None)
            entries.append((name, image, label, scribble))
    if not entries:
        raise VolumeError(folder, "no NIfTI images found")
    for name, image, label, scribble in entries:
        record = _get_or_add(project, report, image, name=name, copy=copy, tags=dict(tags or {}))
        if record is None:
            continue
        if scribble is not None:
            _add_annotation(project, report, record, "scribble", scribble,
                            encoding=scribble_encoding, author=None)
        if label is not None:
            if labels_as == "dense":
                _add_plain_labels(project, report, record, "dense", label)
            else:
                _add_ground_truth(project, report, record, label)
    return report


def _add_plain_labels(project: Project, report: ImportReport, record: VolumeRecord,
                      kind: str, path: Path) -> None:
    """Plain class labels (0 = background) → an annotation of ``kind``.

    ``dense``: every voxel (class + 1), all classes declared. ``partial``/``sparse``:
    background left unannotated (0 = "background or an undeclared class"), nothing declared
    (targets fall back to the classes present). ``scribble``/``coarse_pos``: every voxel
    labelled, background included.
    """
    if project.annotations(record, kind=kind):
        return
    try:
        labels = read_labels(path, like=record.geometry).data.astype(np.int64)
        if labels.size and labels.max() >= project.num_classes:
            raise VolumeError(path, f"labels hold {labels.max()}, outside the schema "
                                    f"(0 … {project.num_classes - 1})")
        declared = range(project.num_classes) if kind == "dense" else None
        data = labels + 1
        if kind in ("partial", "sparse"):
            data[labels == 0] = 0
        project.save_annotation(record, kind, data, note=f"imported from {path}",
                                declared_classes=declared)
        report.annotations += 1
    except (VolumeError, StoreError) as exc:
        raise_if_project_wide(exc)
        report.errors.append(str(exc))


# -- nnU-Net -----------------------------------------------------------------------------------
def nnunet_schema(folder: str | os.PathLike) -> LabelSchema:
    """The label schema of an nnU-Net dataset's ``dataset.json`` (without ``ignore``)."""
    from ..io.nnunet import read_nnunet_dataset

    return LabelSchema.from_names(read_nnunet_dataset(folder).class_names)


def import_nnunet(project: Project, folder: str | os.PathLike, *, copy: bool = True,
                  channel: int = 0, labels_as: str = "auto",
                  tags: Mapping[str, str] | None = None) -> ImportReport:
    """Import an nnU-Net raw dataset (``imagesTr/``, ``labelsTr/``, ``imagesTs/``).

    One channel per volume (``channel``, default 0). ``labelsTr`` files: ``"auto"`` →
    ground truth, or — when ``dataset.json`` has an ``ignore`` label (nnU-Net's sparse
    annotations) — a ``scribble`` annotation (ignore → unannotated); or give a kind
    (``scribble``, ``partial``, ``sparse``, ``dense``, ``coarse_pos``) or
    ``"ground_truth"``. Tags: dataset (its name), modality (the channel name), split
    ``train`` for imagesTr and ``test`` for imagesTs.
    """
    from ..io.nnunet import read_nnunet_dataset

    dataset = read_nnunet_dataset(folder)
    if dataset.class_names != project.schema.names:
        raise StoreError(f"{Path(folder) / 'dataset.json'}: classes {dataset.class_names} differ "
                         f"from the project's {project.schema.names}")
    if channel not in dataset.channel_names:
        raise StoreError(f"{folder}: no channel {channel} (channels "
                         f"{sorted(dataset.channel_names)})")
    ignore = dataset.ignore_value
    if labels_as == "auto":
        labels_as = "ground_truth" if ignore is None else "scribble"
    if labels_as != "ground_truth" and labels_as not in CLASS_KINDS:
        raise StoreError(f"labels_as must be ground_truth or one of {CLASS_KINDS}")
    if labels_as == "ground_truth" and ignore is not None:
        raise StoreError(f"{folder}: labels with an 'ignore' value are annotations, not ground "
                         "truth; import them as a kind (e.g. scribble)")
    report = ImportReport()
    for case in dataset.cases:
        volume_tags = {"dataset": dataset.name, "modality": dataset.channel_names[channel],
                       "split": "train" if case.subset == "Tr" else "test", **(tags or {})}
        record = _get_or_add(project, report, case.images[channel], name=case.case_id,
                             copy=copy, tags=volume_tags)
        if record is None or case.label is None:
            continue
        if labels_as == "ground_truth":
            _add_ground_truth(project, report, record, case.label)
        elif ignore is not None:
            # nnU-Net: class c → c, ignore → unannotated: the WSL4MIS layout with C = ignore
            if ignore != project.num_classes:
                report.errors.append(f"{case.label}: ignore label {ignore} must be the "
                                     f"highest value ({project.num_classes})")
                continue
            _add_annotation(project, report, record, labels_as, case.label,
                            encoding="wsl4mis", author=None)
        else:
            _add_plain_labels(project, report, record, labels_as, case.label)
    return report


def export_nnunet(project: Project, out_dir: str | os.PathLike, *, kind: str | None = None,
                  strategy: str = "default", volumes: Iterable | None = None,
                  name: str | None = None, modality: str = "MRI",
                  force: bool = False) -> Path:
    """Write volumes in the nnU-Net raw layout (case ids made file-name safe; outputs guarded
    by :class:`~napari_weakseg.io.paths.OutputFolder`).

    ``kind=None``: ``labelsTr`` = ground truth (volumes without it go to ``imagesTs``).
    A class kind: ``labelsTr`` = that annotation with nnU-Net's ``ignore`` label (value C)
    on unannotated voxels (volumes without it go to ``imagesTs``).
    """
    from ..io.nnunet import write_dataset_json

    if kind is not None and kind not in CLASS_KINDS:
        raise StoreError(f"{kind} cannot be written as nnU-Net labels")
    records = [project.volume(v) for v in volumes] if volumes is not None else project.volumes()
    outputs = _output_folder(project, out_dir, records, force)
    outputs.path_for("dataset", ".json", source="dataset.json")  # checked before any write
    out = outputs.root
    n_train = 0
    for record in records:
        image = project.read_image(record)
        if kind is None:
            labels = project.ground_truth(record)
        else:
            try:
                labels = to_wsl4mis(project.annotation(record, kind, strategy=strategy).data,
                                    project.num_classes)
            except NotFoundError:
                labels = None
        subset = "Tr" if labels is not None else "Ts"
        case = safe_stem(record.name)
        target = outputs.path_for(f"{case}_0000", ".nii.gz", source=record.name,
                                  subfolder=f"images{subset}")
        outputs.record(write_volume(target, image.data, image.geometry))
        if labels is not None:
            target = outputs.path_for(case, ".nii.gz", source=record.name,
                                      subfolder=f"labels{subset}")
            outputs.record(write_labels(target, labels, record.geometry))
            n_train += 1
    labels_map = {n: i for i, n in enumerate(project.schema.names)}
    if kind is not None:
        labels_map["ignore"] = project.num_classes
    outputs.path_for("dataset", ".json", source="dataset.json")
    outputs.record(write_dataset_json(out, name=name or project.name,
                                      channel_names={0: modality}, labels=labels_map,
                                      num_training=n_train))
    return out


# -- WSL4MIS h5 --------------------------------------------------------------------------------
def import_wsl4mis(project: Project, source: str | os.PathLike | Iterable[str | os.PathLike],
                   *, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
                   tags: Mapping[str, str] | None = None) -> ImportReport:
    """Import WSL4MIS volume ``.h5`` files (a folder of them, or a list).

    The files hold no geometry: images are written as NIfTI into the project on an
    axis-aligned grid of ``spacing`` (sz, sy, sx) mm. ``scribble`` → a ``scribble``
    annotation (4 = unannotated), ``label`` → ground truth. 2D slice files are refused.
    """
    from ..io.wsl4mis import read_wsl4mis_h5

    if isinstance(source, (str, os.PathLike)):
        source = Path(source)
        files = sorted(source.glob("*.h5")) if source.is_dir() else [source]
    else:
        files = [Path(p) for p in source]
    if not files:
        raise VolumeError(source, "no .h5 files found")
    report = ImportReport()
    names = [p.stem for p in files]
    parsed = acdc_tags(names)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=project.root))
    try:
        for path, name in zip(files, names):
            try:
                case = read_wsl4mis_h5(path)
                if case.image.ndim != 3:
                    raise VolumeError(path, f"is a 2D slice file {case.image.shape}; import "
                                            "the volume files (…_volumes/*.h5)")
            except VolumeError as exc:
                report.errors.append(str(exc))
                continue
            geometry = VolumeGeometry.from_spacing(case.image.shape, spacing)
            volume_tags = {"dataset": "WSL4MIS", **parsed.get(name, {}), **(tags or {})}
            volume_tags["dataset"] = (tags or {}).get("dataset", "WSL4MIS")
            try:
                record = project.volume(name)
                report.existing.append(name)
            except NotFoundError:
                image_file = staging / f"{name}.nii.gz"
                write_volume(image_file, case.image.astype(np.float32), geometry)
                record = _get_or_add(project, report, image_file, name=name, copy=True,
                                     tags=volume_tags)
                image_file.unlink()
                if record is None:
                    continue
            if case.scribble is not None and not project.annotations(record, kind="scribble"):
                try:
                    project.save_annotation(record, "scribble", case.scribble,
                                            encoding="wsl4mis", note=f"imported from {path}")
                    report.annotations += 1
                except (VolumeError, StoreError) as exc:
                    raise_if_project_wide(exc)
                    report.errors.append(f"{path}: {exc}")
            if case.label is not None and not project.has_ground_truth(record):
                try:
                    project.set_ground_truth(record, case.label, source=str(path))
                    report.ground_truths += 1
                except (VolumeError, StoreError) as exc:
                    raise_if_project_wide(exc)
                    report.errors.append(f"{path}: {exc}")
    finally:
        for leftover in staging.glob("*"):
            leftover.unlink()
        staging.rmdir()
    return report


def export_wsl4mis(project: Project, out_dir: str | os.PathLike, *,
                   volumes: Iterable | None = None, kind: str = "scribble",
                   strategy: str = "default", normalise: bool = True,
                   force: bool = False) -> list[Path]:
    """Write one WSL4MIS volume ``.h5`` per volume: ``image`` (normalised with the WSL4MIS
    rule when ``normalise``), ``label`` (ground truth, if any) and ``scribble`` (the
    ``kind`` annotation in the WSL4MIS convention, if any)."""
    from ..io.wsl4mis import write_wsl4mis_h5

    if kind not in CLASS_KINDS:
        raise StoreError(f"{kind} has no WSL4MIS encoding")
    records = [project.volume(v) for v in volumes] if volumes is not None else project.volumes()
    outputs = _output_folder(project, out_dir, records, force)
    written = []
    for record in records:
        image = project.read_image(record).data
        label = project.ground_truth(record)
        try:
            scribble = to_wsl4mis(project.annotation(record, kind, strategy=strategy).data,
                                  project.num_classes)
        except NotFoundError:
            scribble = None
        target = outputs.path_for(record.name, ".h5", source=record.name)
        written.append(write_wsl4mis_h5(target, image, label, scribble, normalise=normalise))
        outputs.record(target)
    return written


# -- export of annotations as NIfTI ------------------------------------------------------------
def export_annotations(project: Project, out_dir: str | os.PathLike, kind: str, *,
                       strategy: str = "default", encoding: str = "ours",
                       version: int | None = None,
                       volumes: Iterable | None = None, force: bool = False) -> list[Path]:
    """Write ``OUT/NAME.nii.gz`` for every volume with a ``kind`` annotation (latest version,
    or ``version``), on the image grid, in our encoding or the WSL4MIS one. ``NAME`` is the
    volume name made file-name safe; every target is checked before the first write."""
    records = [project.volume(v) for v in volumes] if volumes is not None else project.volumes()
    records = [r for r in records if project.annotations(r, kind=kind, strategy=strategy)]
    outputs = _output_folder(project, out_dir, records, force)
    targets = [outputs.path_for(r.name, ".nii.gz", source=r.name) for r in records]
    written = []
    for record, target in zip(records, targets):
        written.append(project.export_annotation(record, kind, target, strategy=strategy,
                                                 version=version, encoding=encoding))
        outputs.record(target)
    return written


def raise_if_project_wide(exc: Exception) -> None:
    """Per-file import errors are collected in the report; a read-only project, a full disk or
    a corrupt manifest concerns every file, so it stops the import at once."""
    if isinstance(exc, (ReadOnlyProjectError, ProjectDiskError, ManifestError)):
        raise exc


def _output_folder(project: Project, out_dir: str | os.PathLike,
                   records: list[VolumeRecord], force: bool) -> OutputFolder:
    """The guarded output folder of an exporter: never inside the project, never replacing
    an image of the project (copied or referenced)."""
    out = Path(out_dir)
    root = Path(os.path.realpath(project.root))
    real = Path(os.path.realpath(out))
    if real == root or root in real.parents or real in root.parents:
        raise OutputError(f"{out}: the export folder overlaps the project {project.root}; "
                          "choose a folder outside it")
    return OutputFolder(out, inputs=[r.image_path for r in records], force=force)


# -- dispatch ----------------------------------------------------------------------------------
def detect_format(source: str | os.PathLike) -> str:
    """``acdc`` | ``nnunet`` | ``wsl4mis`` | ``folder`` from a source's contents."""
    source = Path(source)
    if source.is_file() and source.suffix == ".h5":
        return "wsl4mis"
    if not source.is_dir():
        raise VolumeError(source, "does not exist or is not a folder")
    if (source / "dataset.json").exists() and (source / "imagesTr").is_dir():
        return "nnunet"
    if (source / "images").is_dir() and (source / "splits.json").exists() and \
            any(ACDC_NAME.match(strip_nifti_suffix(p.name)) for p in _nifti(source / "images")):
        return "acdc"
    if any(source.glob("*.h5")):
        return "wsl4mis"
    return "folder"


def schema_for(source: str | os.PathLike, fmt: str = "auto") -> LabelSchema:
    """The schema a new project importing ``source`` should get (nnU-Net: its
    ``dataset.json``; otherwise the cardiac default)."""
    fmt = detect_format(source) if fmt == "auto" else fmt
    if fmt == "nnunet":
        return nnunet_schema(source)
    return LabelSchema.cardiac()


def import_source(project: Project, source: str | os.PathLike, fmt: str = "auto",
                  **options) -> ImportReport:
    """Import ``source`` with the importer of its format (``auto`` detects it)."""
    fmt = detect_format(source) if fmt == "auto" else fmt
    if fmt == "acdc":
        return import_acdc(project, source, **options)
    if fmt == "nnunet":
        return import_nnunet(project, source, **options)
    if fmt == "wsl4mis":
        return import_wsl4mis(project, source, **options)
    if fmt == "folder":
        return import_folder(project, source, **options)
    raise StoreError(f"unknown format {fmt!r}; formats are {', '.join(FORMATS)}")


__all__ = ["ImportReport", "acdc_tags", "detect_format", "export_annotations",
           "export_nnunet", "export_wsl4mis", "import_acdc", "import_folder",
           "import_nnunet", "import_source", "import_wsl4mis", "nnunet_schema", "schema_for"]
