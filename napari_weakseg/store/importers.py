"""Import datasets into a project (exports are :mod:`.exporters`', re-exported here).

Sources: a folder of NIfTI files (labels/scribbles found by name), the nnU-Net raw layout,
WSL4MIS ``.h5`` volumes, and the ACDC folder of ``../shared/data/acdc`` (images, labels,
scribbles, ``splits.json``). Dense labels become *ground truth* (for evaluation; kept apart
from annotations) unless the caller asks for them as a ``dense`` annotation. Every import is
resumable: a volume already in the project (same name) gets only what it still lacks.
Bad files are reported in the :class:`ImportReport` and skipped, never silently (the
report and these shared steps: :mod:`.import_steps`).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ..io.errors import VolumeError
from ..io.geometry import VolumeGeometry
from ..io.nifti import LABEL_NAME_PATTERN, strip_nifti_suffix, write_volume
from ..schema import LabelSchema
from ..weak.encoding import CLASS_KINDS
from .exporters import export_annotations, export_nnunet, export_wsl4mis
from .import_steps import (ImportReport, add_annotation, add_ground_truth, add_plain_labels,
                           get_or_add, nifti_files, raise_if_project_wide, sibling)
from .project import Project
from .records import NotFoundError, StoreError

ACDC_NAME = re.compile(r"^(?P<subject>patient\d+)_frame(?P<frame>\d+)$")
ACDC_SCRIBBLE_AUTHOR = "ACDC manual scribbles (Valvano et al., IEEE TMI 2021)"
LABEL_SUFFIXES = ("_gt", "_seg", "_label", "_labels", "_mask")
SCRIBBLE_SUFFIXES = ("_scribble", "_scribbles")
FORMATS = ("auto", "acdc", "nnunet", "wsl4mis", "folder")


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
    images = nifti_files(folder / "images")
    names = [strip_nifti_suffix(p.name) for p in images]
    tags = acdc_tags(names)
    report = ImportReport()
    for path, name in zip(images, names):
        volume_tags = dict(tags.get(name, {"dataset": "ACDC"}))
        if name in splits:
            volume_tags["split"] = splits[name]
        record = get_or_add(project, report, path, name=name, copy=copy, tags=volume_tags)
        if record is None:
            continue
        scribble = sibling(folder / "scribbles", name) if (folder / "scribbles").is_dir() \
            else None
        if scribble is not None:
            add_annotation(project, report, record, "scribble", scribble, encoding="wsl4mis",
                           author=ACDC_SCRIBBLE_AUTHOR)
        label = sibling(folder / "labels", name) if (folder / "labels").is_dir() else None
        if label is not None:
            add_ground_truth(project, report, record, label)
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
        for image in nifti_files(folder / "images"):
            name = strip_nifti_suffix(image.name)
            label = sibling(folder / "labels", name) if (folder / "labels").is_dir() else None
            scribble = (sibling(folder / "scribbles", name)
                        if (folder / "scribbles").is_dir() else None)
            entries.append((name, image, label, scribble))
    else:
        files = nifti_files(folder)
        entries = []
        for image in files:
            name = strip_nifti_suffix(image.name)
            if LABEL_NAME_PATTERN.search(image.name):
                continue
            label = next((p for s in LABEL_SUFFIXES if (p := sibling(folder, name + s))), None)
            scribble = next((p for s in SCRIBBLE_SUFFIXES
                             if (p := sibling(folder, name + s))), None)
            entries.append((name, image, label, scribble))
    if not entries:
        raise VolumeError(folder, "no NIfTI images found")
    for name, image, label, scribble in entries:
        record = get_or_add(project, report, image, name=name, copy=copy, tags=dict(tags or {}))
        if record is None:
            continue
        if scribble is not None:
            add_annotation(project, report, record, "scribble", scribble,
                           encoding=scribble_encoding, author=None)
        if label is not None:
            if labels_as == "dense":
                add_plain_labels(project, report, record, "dense", label)
            else:
                add_ground_truth(project, report, record, label)
    return report


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
        record = get_or_add(project, report, case.images[channel], name=case.case_id,
                            copy=copy, tags=volume_tags)
        if record is None or case.label is None:
            continue
        if labels_as == "ground_truth":
            add_ground_truth(project, report, record, case.label)
        elif ignore is not None:
            # nnU-Net: class c → c, ignore → unannotated: the WSL4MIS layout with C = ignore
            if ignore != project.num_classes:
                report.errors.append(f"{case.label}: ignore label {ignore} must be the "
                                     f"highest value ({project.num_classes})")
                continue
            add_annotation(project, report, record, labels_as, case.label,
                           encoding="wsl4mis", author=None)
        else:
            add_plain_labels(project, report, record, labels_as, case.label)
    return report


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
                record = get_or_add(project, report, image_file, name=name, copy=True,
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
            any(ACDC_NAME.match(strip_nifti_suffix(p.name))
                for p in nifti_files(source / "images")):
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
