"""Where training volumes come from: a project (the store), or a dataset of
:mod:`napari_weakseg.datasets` (ACDC, the synthetic generator).

A *source* is a JSON-serialisable dict so that the training process can rebuild it:

* ``{"kind": "synthetic", "subjects": 4, "val_subjects": 1, "seed": 0, "shape": [Z, Y, X]}``
  — the procedural cardiac phantoms with their example scribbles (tests, the demo;
  :mod:`napari_weakseg.datasets.synthetic`);
* ``{"kind": "acdc", "root": "../shared/data/acdc", "supervision": "scribble" | "dense",
  "limit": N}`` — the ACDC folder layout (``images/``, ``scribbles/`` with 4 = unannotated,
  ``labels/``, ``splits.json``): trains on the ``train`` split, validates on ``val``
  (:mod:`napari_weakseg.datasets.acdc`);
* ``{"kind": "project", "path": ..., "train": {tag filters}, "val": {tag filters}}`` —
  a project's annotated volumes (see :func:`project_data`).

Every source gives a :class:`~napari_weakseg.datasets.base.TrainingData`. This module keeps
the project source, :func:`load_source`, the method choice for a project's annotation kinds
and :func:`restrict_to_kinds`; the dataset names stay importable from here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..datasets.acdc import (ACDC_SUPERVISION, CORRECTED_PATIENTS, CORRECTED_SLICES,
                             MIXED_GROUPS, acdc_data, check_acdc_supervision,
                             corrected_targets, inner_val_patients, mixed_group_targets,
                             simulated_acdc_targets)
from ..datasets.base import TrainingData, dense_targets, scribble_targets
from ..datasets.synthetic import synthetic_data
from ..errors import InputError, OptionError
from ..preprocess import get_normaliser
from .data import TrainingVolume, default_cache_bytes, memory_mapped
from .data import normalise_intensity  # noqa: F401 (API)


def load_source(source: dict, config=None) -> TrainingData:
    """The volumes of ``source``, normalised by ``config.normalisation`` (default WSL4MIS)."""
    kind = source.get("kind")
    normalisation = getattr(config, "normalisation", None)
    if kind == "synthetic":
        return synthetic_data(**{k: v for k, v in source.items() if k != "kind"},
                              normalisation=normalisation)
    if kind == "acdc":
        return acdc_data(**{k: v for k, v in source.items() if k != "kind"},
                         normalisation=normalisation)
    if kind == "project":
        return project_data(source, config)
    raise OptionError(f"unknown data source kind {kind!r} (expected 'synthetic' or 'project')")


def project_data(source: dict, config=None) -> TrainingData:
    """A project's volumes. Keys of ``source``: ``path``; ``train`` / ``val`` tag filters
    (default: every volume not tagged ``split`` = val/test trains, ``split`` = val
    validates); ``ground_truth_as_training``: train on the stored ground truth (the ``full``
    upper bound in benchmarks — never implied); ``volume_cache``: a folder the caller owns
    (the worker passes ``RUN_DIR/volume_cache``) — once the volumes loaded so far exceed the
    prepared-slice budget (``training.data.default_cache_bytes``), each further volume is
    written there and read memory-mapped, so a large cohort trains in bounded memory;
    ``holdout`` (default true) and ``holdout_seed`` (default 0): see below.

    Training volumes are those carrying annotations of the kinds the method learns from;
    validation volumes need a reference mask (ground truth, else a ``dense`` annotation).
    When no validation volume has one, every 5th accepted slice of the training volumes
    (sparse slices declared complete; at least one, and only with two or more) is held out
    of the training targets and validated on instead (:mod:`.holdout`;
    ``TrainingData.held_out`` lists them, the description says so).
    """
    from ..methods import get_method
    from ..store import Project
    from ..weak.targets import dense_targets as dense_volume_targets
    from ..weak.targets import volume_targets
    from . import holdout

    project = Project.open(source["path"])
    normalise = get_normaliser(getattr(config, "normalisation", None))
    try:
        method_cls = get_method(config.method) if config is not None else None
        method_kinds = method_cls.kinds if method_cls is not None else None
        with_kind = bool(getattr(method_cls, "kind_masks", False))
        train_filter = source.get("train")
        val_filter = source.get("val", {"split": "val"})
        if train_filter is None:
            records = [r for r in project.volumes()
                       if r.tags.get("split") not in ("val", "test")]
        else:
            records = project.volumes(**train_filter)
        use_truth = bool(source.get("ground_truth_as_training"))
        val = _reference_volumes(project, project.volumes(**val_filter), normalise)
        held_out: dict[str, tuple[int, ...]] = {}
        if not val and not use_truth and source.get("holdout", True):
            held_out = holdout.held_out_slices(
                project, records, int(source.get("holdout_seed", holdout.DEFAULT_SEED)))
        train: list[TrainingVolume] = []
        cache = Path(source["volume_cache"]) if source.get("volume_cache") else None
        budget, in_memory = default_cache_bytes(), 0
        for record in records:
            if use_truth:
                truth = project.ground_truth(record)
                if truth is None:
                    continue
                targets = dense_volume_targets(truth, project.num_classes).as_dict(
                    kind=with_kind)
            else:
                kinds = {a.kind for a in project.annotations(record)}
                if method_kinds is not None:
                    kinds &= set(method_kinds)
                targets = volume_targets(project, record, kinds=kinds).as_dict(
                    kind=with_kind) if kinds else None
            zs = held_out.get(record.name)
            if targets is None and not zs:
                continue
            image = project.read_image(record)
            data, spacing = normalise(image.data), image.geometry.spatial_spacing
            if zs and targets is not None:  # trained on its other slices only
                holdout.drop_slices(targets, zs)
                if not targets["valid"].any():  # its only supervision was held out
                    targets = None
            if targets is not None:
                volume = TrainingVolume(record.name, data, targets, None, spacing,
                                        dict(record.tags))
                in_memory += volume.image.nbytes + sum(t.nbytes
                                                       for t in volume.targets.values())
                if cache is not None and in_memory > budget:
                    volume = memory_mapped(volume, cache / f"{len(train):06d}")
                train.append(volume)
                data = volume.image  # memory-mapped when spilled: shared with validation
            if zs:  # validated on its held-out slices only
                val.append(TrainingVolume(record.name, data, {},
                                          _held_out_reference(project, record, zs), spacing,
                                          dict(record.tags)))
        if not train:
            raise InputError(f"{project.root}: no volume carries annotations the method "
                             f"'{getattr(config, 'method', '?')}' learns from "
                             f"({', '.join(sorted(method_kinds or []))})")
        if held_out:
            slices = sum(len(zs) for zs in held_out.values())
            validation = holdout.describe_held_out(slices, len(held_out))
        else:
            validation = f"{len(val)} validation volumes"
        description = (f"project {project.root} ({len(train)} training volumes"
                       f"{', stored ground truth' if use_truth else ''}; {validation})")
        return TrainingData(train, val, project.schema.names, description,
                            project.schema.rules(), held_out=held_out)
    finally:
        project.close()


def _reference_volumes(project, records, normalise) -> list[TrainingVolume]:
    """Validation volumes of ``records`` with a reference mask (ground truth, else a dense
    annotation)."""
    out = []
    for record in records:
        reference = project.ground_truth(record)
        if reference is None and any(a.kind == "dense" for a in project.annotations(record)):
            reference = project.annotation(record, "dense").data.astype(np.int64) - 1
        if reference is None:
            continue
        image = project.read_image(record)
        out.append(TrainingVolume(record.name, normalise(image.data), {},
                                  np.asarray(reference), image.geometry.spatial_spacing,
                                  dict(record.tags)))
    return out


def _held_out_reference(project, record, zs) -> np.ndarray:
    """The reference of a volume's held-out slices (−1 elsewhere) from the sparse
    annotations declaring them complete."""
    from .holdout import complete_declared_slices, slice_reference

    reference = np.full(tuple(record.shape), -1, np.int16)
    for annotation in project.annotations(record, kind="sparse"):
        mine = set(zs) & set(complete_declared_slices(annotation.declared_slices,
                                                      project.num_classes))
        if mine:
            data = project.annotation(record, "sparse", strategy=annotation.strategy).data
            rows = sorted(mine)
            reference[rows] = slice_reference(data, rows)[rows]
    return reference


# --------------------------------------------------------------------------- method choice
#: How the messages name the slices of each kind.
KIND_NOUNS = {"scribble": "scribbled slices", "coarse_pos": "slices with positive coarse masks",
              "coarse_neg": "slices with negative coarse masks",
              "partial": "partially labelled slices", "sparse": "corrected or sparse slices",
              "dense": "densely labelled slices"}
#: Single-kind methods in the order :func:`default_method` prefers them.
PREFERRED_METHODS = ("effdnet", "refineseg", "disambig")


def default_method(kinds) -> str | None:
    """The method to offer first for a project holding annotation ``kinds``: ``mixed``
    when no single specialised method learns from all of them (e.g. scribbles + accepted
    corrected slices, or coarse masks + partial labels); otherwise the one that does
    (``effdnet`` for scribbles, ``refineseg`` for coarse masks, ``full`` for dense masks
    only, ``disambig`` for partial/sparse labels). ``None`` without kinds."""
    from ..methods import get_method

    present = set(kinds)
    if not present:
        return None
    if present == {"dense"}:
        return "full"
    for method_id in PREFERRED_METHODS:
        if present <= set(get_method(method_id).kinds):
            return method_id
    return "mixed"


def _training_records(project):
    return [r for r in project.volumes() if r.tags.get("split") not in ("val", "test")]


def unused_annotations(project, method: str) -> dict[str, int]:
    """Per annotation kind that ``method`` does not learn from, the number of annotated
    slices of the training volumes (those not tagged ``split`` = val/test) carrying it:
    ``{"sparse": 12}`` for EFFDNet after 12 accepted corrected slices. Sparse slices come
    from the declarations, partial/dense annotations count every slice; scribble, coarse
    and undeclared sparse annotations are read to count their marked slices. Empty when
    the method uses everything."""
    from ..methods import get_method

    used = set(get_method(method).kinds)
    out: dict[str, int] = {}
    for record in _training_records(project):
        for annotation in project.annotations(record):
            if annotation.kind in used:
                continue
            if annotation.kind == "sparse" and annotation.declared_slices:
                count = len(annotation.declared_slices)
            elif annotation.kind in ("partial", "dense"):
                count = int(record.shape[0])
            else:
                data = project.annotation(record, annotation.kind,
                                          strategy=annotation.strategy).data
                count = int(np.count_nonzero(data.reshape(data.shape[0], -1).any(1)))
            if count:
                out[annotation.kind] = out.get(annotation.kind, 0) + count
    return out


def unused_message(method: str, unused: dict[str, int]) -> str | None:
    """One line for the Train panel and the CLI, e.g. "effdnet will not use your 12
    corrected or sparse slices (sparse): choose mixed to learn from every annotation";
    ``None`` when nothing is left out."""
    if not unused:
        return None
    parts = [f"{n} {KIND_NOUNS.get(k, k + ' slices')} ({k})" for k, n in sorted(unused.items())]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return (f"{method} will not use your {listed}: choose mixed to learn from every "
            f"annotation")


def restrict_to_kinds(volumes: list[TrainingVolume], kinds) -> list[TrainingVolume]:
    """The volumes as a single-kind method sees them (benchmarks on ``mixed-groups`` /
    ``scribble+corrections`` data, where a project would build targets of the method's
    kinds only): labels and valid slices of the term groups the ``kinds`` feed
    (``weak.targets.KIND_GROUPS``), coarse arrays only if coarse kinds are among them,
    ``annotated`` only with partial/sparse/dense; volumes left without a supervised slice
    are dropped. Volumes without a ``kind`` bitmask are kept as they are."""
    from ..weak.targets import KIND_BITS, KIND_GROUPS

    groups = {KIND_GROUPS[k] for k in kinds}
    bits = sum(KIND_BITS[g] for g in groups)
    label_bits = bits & (KIND_BITS["scribble"] | KIND_BITS["partial"] | KIND_BITS["dense"])
    out = []
    for volume in volumes:
        t = volume.targets
        if "kind" not in t:
            out.append(volume)
            continue
        kind = t["kind"]
        slices = (kind & bits).reshape(kind.shape[0], -1).any(1)
        targets = {"labels": np.where(kind & label_bits, t["labels"], -1),
                   "valid": t["valid"] & slices[:, None, None]}
        if "annotated" in t:
            targets["annotated"] = t["annotated"] if groups & {"partial", "dense"} else \
                np.zeros_like(t["annotated"])
        for key, fill in (("coarse_pos", -1), ("coarse_neg", False)):
            if key in t:
                targets[key] = t[key] if "coarse" in groups else np.full_like(t[key], fill)
        targets["kind"] = kind & bits
        if targets["valid"].any():
            out.append(TrainingVolume(volume.name, volume.image, targets, volume.reference,
                                      volume.spacing, volume.tags))
    return out


__all__ = ["KIND_NOUNS", "PREFERRED_METHODS", "TrainingData", "TrainingVolume",
           "default_method", "dense_targets", "load_source", "normalise_intensity",
           "project_data", "restrict_to_kinds", "scribble_targets", "unused_annotations",
           "unused_message",
           # the datasets (napari_weakseg.datasets), kept importable from here
           "ACDC_SUPERVISION", "CORRECTED_PATIENTS", "CORRECTED_SLICES", "MIXED_GROUPS",
           "acdc_data", "check_acdc_supervision", "corrected_targets", "inner_val_patients",
           "mixed_group_targets", "simulated_acdc_targets", "synthetic_data"]
