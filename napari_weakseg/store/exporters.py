"""Export out of a project: the nnU-Net raw layout, WSL4MIS ``.h5`` volumes, and one
annotation per volume as NIfTI. Every output goes through
:class:`~napari_weakseg.io.paths.OutputFolder` (targets checked before the first write,
never inside the project, never replacing one of its images); annotations are converted to
the target's encoding here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import OutputError
from ..io.nifti import write_labels, write_volume
from ..io.paths import OutputFolder, safe_stem
from ..weak.encoding import CLASS_KINDS, to_wsl4mis
from .project import Project
from .records import NotFoundError, StoreError, VolumeRecord


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


__all__ = ["export_annotations", "export_nnunet", "export_wsl4mis"]
