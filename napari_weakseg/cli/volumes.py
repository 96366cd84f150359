"""``weakseg info`` and ``weakseg sample``: look at volume files (NIfTI, NRRD, MHA/MHD,
DICOM series), make synthetic data."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    info = subparsers.add_parser("info", help="print the geometry of volume files",
                                 description="Print shape, spacing, orientation and value "
                                             "range of each volume (NIfTI, NRRD, MHA/MHD, "
                                             "or a DICOM series folder), or its error.")
    info.add_argument("files", nargs="+", type=Path)
    info.set_defaults(handler=run_info)

    sample = subparsers.add_parser(
        "sample", help="write a synthetic cardiac cine cohort (ACDC layout)",
        description="Write N synthetic subjects × (ED, ES) as images/, labels/ and "
                    "scribbles/ NIfTI folders (scribbles: 4 = unannotated).")
    sample.add_argument("--out", type=Path, required=True)
    sample.add_argument("--subjects", type=int, default=4)
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(handler=run_sample)


def run_info(args: argparse.Namespace) -> int:
    import numpy as np

    from ..io import VolumeError, describe, read_any

    failed = 0
    for path in args.files:
        try:
            volume = read_any(path)
        except VolumeError as exc:
            print(f"error: {exc}")
            failed += 1
            continue
        data = volume.data
        print(f"{describe(volume.geometry)}; dtype {data.dtype}, values "
              f"[{np.min(data):g}, {np.max(data):g}]")
    return 1 if failed else 0


def run_sample(args: argparse.Namespace) -> int:
    from ..synthetic import make_cohort, write_cohort

    cases = make_cohort(args.subjects, seed=args.seed)
    folder = write_cohort(args.out, cases)
    print(f"wrote {len(cases)} synthetic volumes to {folder}")
    return 0


# -- DICOM / NRRD / MHA into a project (``weakseg add`` and ``weakseg import``) ---------------
_KIND_TEXT = {"sitk": "an NRRD/MetaImage file", "dicom": "a DICOM series"}


def add_any_volume(project, image, *, copy: bool = True, name: str | None = None,
                   tags=None):
    """``project.add_volume`` for any volume format: NIfTI as it is; NRRD/MHA/MHD and DICOM
    series are converted to NIfTI on exactly their grid (array, affine, spacing) and copied
    into the project (``copy=False`` is refused for them: there is no NIfTI to reference)."""
    import shutil
    import tempfile

    from ..io import VolumeError, as_nifti, volume_format, volume_name

    kind = volume_format(image)
    if kind in (None, "nifti"):
        return project.add_volume(image, copy=copy, name=name, tags=tags)
    if not copy:
        raise VolumeError(image, f"{_KIND_TEXT[kind]} is "
                                 "converted to NIfTI and copied into the project; --reference "
                                 "applies to NIfTI files only")
    name = name or volume_name(image)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=project.root))
    try:
        nifti = as_nifti(image, staging, name=name)
        try:
            return project.add_volume(nifti, copy=True, name=name, tags=tags)
        except VolumeError as exc:
            if exc.path == str(nifti):
                raise type(exc)(image, exc.problem) from None
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ground_truth_input(path, like=None):
    """What ``project.set_ground_truth`` takes for labels in any format: a NIfTI path as
    it is, else ``(array, geometry)`` read with :func:`~napari_weakseg.io.read_any` (checked
    against ``like``'s grid when given)."""
    from ..io import check_same_grid, read_any, volume_format

    if volume_format(path) in (None, "nifti"):
        return path, None
    volume = read_any(path, allow_4d=False)
    if like is not None:
        check_same_grid(volume.geometry, like, path)
    return volume.data, volume.geometry


def other_format_volumes(source) -> list[tuple[Path, list[Path]]]:
    """``weakseg import`` of a non-NIfTI source: ``[(image, [label files])]`` for a DICOM
    series (folder or file), an NRRD/MHA/MHD file, or a folder holding such files and/or
    DICOM series subfolders (and nothing an existing importer reads: no NIfTI, ``.h5``,
    ``images/``, ``imagesTr/``). ``NAME_gt|_seg|_label(s)|_mask`` files are NAME's labels.
    Empty when the source is for the other importers."""
    from ..io import volume_format, volume_name
    from ..io.nifti import LABEL_NAME_PATTERN

    source = Path(source)
    kind = volume_format(source)
    if kind in ("sitk", "dicom"):
        return [(source, [])]
    if not source.is_dir() or kind is not None:
        return []
    entries = sorted(p for p in source.iterdir() if not p.name.startswith("."))
    if any(p.name in ("images", "imagesTr", "dataset.json", "splits.json")
           or p.suffix == ".h5" or volume_format(p) == "nifti" for p in entries):
        return []
    found = [p for p in entries if (p.is_file() and volume_format(p) == "sitk")
             or (p.is_dir() and volume_format(p) == "dicom")]
    images = [p for p in found if not LABEL_NAME_PATTERN.search(p.name)]
    out = []
    for image in images:
        stem = volume_name(image)
        labels = [p for p in found if p not in images and volume_name(p).startswith(stem)
                  and LABEL_NAME_PATTERN.match(volume_name(p)[len(stem):] + ".")]
        out.append((image, labels))
    return out


def run_import_volumes(args, volumes) -> int:
    """``weakseg import`` of DICOM series / NRRD / MHA volumes (:func:`other_format_volumes`):
    each converted to NIfTI and copied; label files become ground truth."""
    from ..io import VolumeError, volume_name
    from ..schema import LabelSchema
    from ..store import ManifestError, Project, ProjectDiskError, ReadOnlyProjectError
    from ..store.importers import ImportReport

    if args.reference:
        print("weakseg import: error: DICOM/NRRD/MHA volumes are converted to NIfTI and "
              "copied; --reference applies to NIfTI files only")
        return 2
    tags = dict(args.tag)
    report = ImportReport()
    created = not (args.project / "project.sqlite").exists()
    with Project.open_or_create(args.project, LabelSchema.cardiac()) as project:
        project.check_writable()
        if created:
            print(f"created project {project.root} with classes "
                  f"{', '.join(project.schema.names)}")
        existing = {r.name for r in project.volumes()}
        for image, labels in volumes:
            name = volume_name(image)
            try:
                if name in existing:
                    record = project.volume(name)
                    report.existing.append(name)
                else:
                    record = add_any_volume(project, image, copy=True, name=name, tags=tags)
                    report.added.append(name)
                for label in labels[:1]:
                    if project.has_ground_truth(record):
                        break
                    data, geometry = ground_truth_input(label, record.geometry)
                    project.set_ground_truth(record, data, source=str(label),
                                             geometry=geometry)
                    report.ground_truths += 1
            except (ReadOnlyProjectError, ProjectDiskError, ManifestError):
                raise  # the project's situation, not this volume's: stop (one line)
            except VolumeError as exc:
                report.errors.append(str(exc))
            except ValueError as exc:  # store refusals (name clash, labels outside schema)
                report.errors.append(f"{image}: {exc}")
        print(f"import (volumes) of {args.source}: {report.summary()}")
    return 0 if report.ok else 1
