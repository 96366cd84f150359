"""Where training volumes come from: a project (the store) or the synthetic generator.

A *source* is a JSON-serialisable dict so that the training process can rebuild it:

* ``{"kind": "synthetic", "subjects": 4, "val_subjects": 1, "seed": 0, "shape": [Z, Y, X]}``
  — the procedural cardiac phantoms with their example scribbles (tests, the demo);
* ``{"kind": "acdc", "root": "../shared/data/acdc", "supervision": "scribble" | "dense",
  "limit": N}`` — the ACDC folder layout (``images/``, ``scribbles/`` with 4 = unannotated,
  ``labels/``, ``splits.json``): trains on the ``train`` split, validates on ``val``;
* ``{"kind": "project", "path": ..., "train": {tag filters}, "val": {tag filters}}`` —
  a project's annotated volumes (see :func:`project_data`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, OptionError
from ..preprocess import get_normaliser
from .data import TrainingVolume, normalise_intensity  # noqa: F401 (API)


@dataclass
class TrainingData:
    train: list[TrainingVolume]
    val: list[TrainingVolume]
    class_names: list[str]
    description: str
    #: the label schema's anatomical rules (``LabelSchema.rules()``), for post-processing
    rules: dict = field(default_factory=dict)
    #: volumes held out for reporting only, never for choosing (with an inner split ``val``
    #: holds the inner-validation volumes that choose checkpoints, ``report`` the ACDC val
    #: split)
    report: list[TrainingVolume] = field(default_factory=list)


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


def scribble_targets(encoded: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Targets of a scribble in our encoding (0 = unannotated, class + 1)."""
    labels = encoded.astype(np.int64) - 1
    return {"labels": labels, "valid": np.ones(encoded.shape, bool),
            "annotated": np.zeros((encoded.shape[0], num_classes), bool)}


def dense_targets(truth: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    return {"labels": truth.astype(np.int64), "valid": np.ones(truth.shape, bool),
            "annotated": np.ones((truth.shape[0], num_classes), bool)}


def synthetic_data(subjects: int = 4, val_subjects: int = 1, seed: int = 0,
                   shape: tuple[int, int, int] | list[int] = (8, 64, 64),
                   supervision: str = "scribble",
                   normalisation: str | None = None) -> TrainingData:
    """Synthetic cohort: ``subjects`` training subjects (ED + ES) and ``val_subjects``."""
    from ..schema import LabelSchema
    from ..synthetic import make_cohort

    names = LabelSchema.cardiac().names
    shape = tuple(shape)
    spacing = (10.0, 1.5625 * 128 / shape[1], 1.5625 * 128 / shape[2])
    cases = make_cohort(subjects + val_subjects, seed=seed, shape=shape, spacing=spacing)
    volumes = []
    for case in cases:
        targets = (scribble_targets(case.scribble, len(names)) if supervision == "scribble"
                   else dense_targets(case.ground_truth, len(names)))
        volumes.append(TrainingVolume(case.name, get_normaliser(normalisation)(case.image),
                                      targets,
                                      case.ground_truth, case.geometry.spatial_spacing,
                                      case.tags))
    split = 2 * subjects
    return TrainingData(volumes[:split], volumes[split:], names,
                        f"synthetic cardiac phantoms: {subjects} subjects × ED/ES "
                        f"({supervision}), {val_subjects} validation subjects, seed {seed}",
                        LabelSchema.cardiac().rules())


ACDC_SUPERVISION = ("scribble", "dense", "coarse", "coarse-full", "multisource",
                    "multisource-naive", "multisource-partial", "mixed-groups",
                    "scribble+corrections")  # and "sparse-FRACTION"
#: ``mixed-groups``: the supervision of each patient group (patient index mod 4)
MIXED_GROUPS = ("scribble", "coarse", "partial", "sparse")
#: ``scribble+corrections``: patients (the first N of the train split) with accepted slices
CORRECTED_PATIENTS, CORRECTED_SLICES = 10, 3


def check_acdc_supervision(supervision: str) -> None:
    """Raise a ValueError naming the accepted values unless ``supervision`` is one."""
    if supervision in ACDC_SUPERVISION:
        return
    if supervision.startswith("sparse-"):
        try:
            fraction = float(supervision.split("-", 1)[1])
        except ValueError:
            fraction = -1.0
        if 0 < fraction <= 1:
            return
    raise OptionError(f"ACDC supervision must be one of {ACDC_SUPERVISION} or "
                     f"sparse-FRACTION (FRACTION in (0, 1]), got {supervision!r}")


def simulated_acdc_targets(truth: np.ndarray, supervision: str, index: int,
                           num_classes: int) -> dict[str, np.ndarray]:
    """Weak labels simulated from a dense ACDC mask (benchmarks of issues 5 and 7).

    ``coarse`` (RefineSeg protocol): positive masks = per-class erosion of RV/MYO/LV by the
    Morpho-MNIST rule plus background eroded by 4 px; negative masks = "not c" outside a
    3-px dilation of each class. ``coarse-full``: the same, but the positive map labels every
    pixel — the eroded RV/MYO/LV and background everywhere else, so the rim between an eroded
    mask and the true boundary is *mislabelled* background (the systematic under-segmentation
    an annotation head is meant to model; Zhang'20's eroded-label setting).
    ``multisource``: three sources by volume index — source 0 annotates LV + MYO (partial),
    source 1 RV only (partial), source 2 every class on 20 % of the slices (sparse);
    declarations recorded. ``multisource-naive``: the same labels read
    as if every unannotated voxel were background (the naive baseline).
    ``multisource-partial``: sources 0 and 1 only (:func:`acdc_data` drops source 2's
    volumes) — "partial alone" against the mixed partial + sparse set. ``sparse-F``: every
    volume annotated with all classes on a random fraction F of its slices (seeded by the
    volume index; ``sparse-1.0`` = every slice).
    """
    from ..weak.simulate import simulate, simulate_coarse_neg, simulate_coarse_pos
    from ..weak.targets import SimpleAnnotation, build_targets

    shape = truth.shape
    if supervision == "mixed-groups":
        return mixed_group_targets(truth, index, num_classes)
    if supervision in ("coarse", "coarse-full"):
        foreground = simulate_coarse_pos(truth, num_classes, classes=[1, 2, 3])
        background = simulate_coarse_pos(truth, num_classes, classes=[0], radius=4) \
            if supervision == "coarse" else np.uint8(1)  # encoded background
        positive = np.where(foreground > 0, foreground, background)
        negative = simulate_coarse_neg(truth, num_classes)
        annotations = [SimpleAnnotation("coarse_pos", positive),
                       SimpleAnnotation("coarse_neg", negative)]
        return build_targets(annotations, num_classes, shape).as_dict()
    source = index % 3
    if supervision.startswith("sparse-"):
        sim = simulate("sparse", truth, num_classes, fraction=float(supervision[7:]), seed=index)
    elif source == 0:
        sim = simulate("partial", truth, num_classes, keep=[2, 3])
    elif source == 1:
        sim = simulate("partial", truth, num_classes, keep=[1])
    else:
        sim = simulate("sparse", truth, num_classes, fraction=0.2, seed=index)
    if supervision != "multisource-naive":
        annotation = SimpleAnnotation(sim.kind, sim.data, declared_classes=sim.declared_classes,
                                      declared_slices=sim.declared_slices)
        return build_targets([annotation], num_classes, shape).as_dict()
    # naive: unannotated voxels of annotated slices are background
    labels = np.maximum(sim.data.astype(np.int64) - 1, 0)
    valid = np.ones(shape, bool)
    if sim.kind == "sparse":
        declared = np.zeros(shape[0], bool)
        declared[list(sim.declared_slices)] = True
        labels[~declared] = -1
        valid[~declared] = False
    return {"labels": labels, "valid": valid,
            "annotated": np.repeat(valid.reshape(shape[0], -1).any(1)[:, None], num_classes, 1),
            "coarse_pos": np.zeros((0,) + shape, np.int64),
            "coarse_neg": np.zeros((0, num_classes) + shape, bool)}


def mixed_group_targets(truth: np.ndarray, index: int, num_classes: int,
                        scribble: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``mixed-groups`` (issue 16): patient ``index`` mod 4 picks the group —
    0 ``scribble`` (the real manual scribble ``scribble``, our encoding; required there),
    1 ``coarse`` (positive + negative coarse masks as in ``coarse``), 2 ``partial``
    (LV + MYO declared for even ``index // 4``, RV for odd), 3 ``sparse`` (every class on a
    random 20 % of the slices, seeded by ``index``). Every volume gets one positive and one
    negative coarse channel (empty outside the coarse group) and the ``kind`` bitmask."""
    from ..weak.simulate import simulate, simulate_coarse_neg, simulate_coarse_pos
    from ..weak.targets import SimpleAnnotation, build_targets

    group = MIXED_GROUPS[index % 4]
    if group == "scribble":
        if scribble is None:
            raise ValueError("mixed-groups: the scribble group needs the real scribble")
        annotations = [SimpleAnnotation("scribble", scribble)]
    elif group == "coarse":
        foreground = simulate_coarse_pos(truth, num_classes, classes=[1, 2, 3])
        background = simulate_coarse_pos(truth, num_classes, classes=[0], radius=4)
        annotations = [SimpleAnnotation("coarse_pos", np.where(foreground > 0, foreground,
                                                               background)),
                       SimpleAnnotation("coarse_neg", simulate_coarse_neg(truth, num_classes))]
    else:
        sim = (simulate("partial", truth, num_classes,
                        keep=[2, 3] if (index // 4) % 2 == 0 else [1])
               if group == "partial" else
               simulate("sparse", truth, num_classes, fraction=0.2, seed=index))
        annotations = [SimpleAnnotation(sim.kind, sim.data, declared_classes=sim.declared_classes,
                                        declared_slices=sim.declared_slices)]
    return build_targets(annotations, num_classes, truth.shape, pos_strategies=("default",),
                         neg_strategies=("default",)).as_dict(kind=True)


def corrected_targets(truth: np.ndarray, scribble: np.ndarray, num_classes: int,
                      slices: int = CORRECTED_SLICES) -> dict[str, np.ndarray]:
    """The loop case: a real scribble plus ``slices`` accepted corrected slices (``sparse``,
    every class declared, the ground truth on the evenly spaced slices holding the heart)."""
    from ..weak.targets import SimpleAnnotation, build_targets

    heart = np.flatnonzero((truth > 0).reshape(truth.shape[0], -1).any(1))
    heart = heart if len(heart) else np.arange(truth.shape[0])
    chosen = sorted({int(heart[i]) for i in np.linspace(0, len(heart) - 1, slices).round()
                     .astype(int)})
    data = np.zeros(truth.shape, np.uint8)
    data[chosen] = truth[chosen] + 1
    every = tuple(range(num_classes))
    annotations = [SimpleAnnotation("scribble", scribble),
                   SimpleAnnotation("sparse", data, declared_slices={z: every for z in chosen})]
    return build_targets(annotations, num_classes, truth.shape).as_dict(kind=True)


def acdc_data(root: str = "../shared/data/acdc", supervision: str = "scribble",
              limit: int | None = None, val_limit: int | None = None,
              normalisation: str | None = None, inner_val: int = 0,
              inner_seed: int = 0) -> TrainingData:
    """ACDC train split for training, val split for validation (``limit``/``val_limit`` keep
    the first N volumes; ``limit`` counts after the inner-validation patients left). ``supervision``: ``scribble`` (the real manual scribbles), ``dense``
    (the ground truth), or weak labels simulated from it (:func:`simulated_acdc_targets`).

    ``inner_val`` > 0: honest validation — that many *patients* of the train split (both
    frames, drawn with ``inner_seed``) become ``val`` (dense reference, used to choose
    checkpoints and post-processing) and leave training; the ACDC val split goes to
    ``report`` and is never used to choose."""
    import json
    from pathlib import Path

    from ..io import read_labels, read_volume
    from ..schema import LabelSchema
    from ..weak.targets import SimpleAnnotation, build_targets

    root = Path(root)
    splits_path = root / "splits.json"
    if not splits_path.exists():
        raise FileNotFoundError(f"{splits_path}: ACDC splits file not found")
    splits = json.loads(splits_path.read_text())
    names = LabelSchema.cardiac().names
    check_acdc_supervision(supervision)

    def load(case: str, for_training: bool, index: int = 0) -> TrainingVolume:
        image = read_volume(root / "images" / f"{case}.nii.gz")
        truth = read_labels(root / "labels" / f"{case}.nii.gz", like=image.geometry).data
        group = MIXED_GROUPS[index % 4] if supervision == "mixed-groups" else None
        encoded = None
        if for_training and (supervision in ("scribble", "scribble+corrections")
                             or group == "scribble"):
            wsl = read_labels(root / "scribbles" / f"{case}.nii.gz", like=image.geometry).data
            encoded = np.where(wsl == len(names), 0, wsl.astype(np.int64) + 1)
        if for_training and supervision == "scribble":
            targets = scribble_targets(encoded, len(names))
        elif for_training and supervision == "scribble+corrections":
            targets = (corrected_targets(truth, encoded, len(names))
                       if index < CORRECTED_PATIENTS else
                       build_targets([SimpleAnnotation("scribble", encoded)], len(names),
                                     truth.shape).as_dict(kind=True))
        elif for_training and supervision == "mixed-groups":
            targets = mixed_group_targets(truth, index, len(names), encoded)
        elif for_training and supervision != "dense":
            targets = simulated_acdc_targets(truth, supervision, index, len(names))
        else:
            targets = dense_targets(truth, len(names))
        dataset = "acdc"
        if for_training and supervision.startswith("multisource"):
            dataset = f"acdc-source{index % 3}"  # each simulated source is a dataset
        elif for_training and group is not None:
            dataset = f"acdc-{group}"
        return TrainingVolume(case, get_normaliser(normalisation)(image.data), targets, truth,
                              image.geometry.spatial_spacing,
                              {"dataset": dataset, "modality": "cine-MRI"})

    # one index per patient, so both frames of a patient come from the same source
    patients = sorted({c.split("_")[0] for c in splits["train"]})
    train_cases = list(splits["train"])
    if supervision == "multisource-partial":  # the partial sources alone (no sparse source)
        train_cases = [c for c in train_cases if patients.index(c.split("_")[0]) % 3 != 2]
    if inner_val:
        held = set(inner_val_patients(patients, inner_val, inner_seed))
        inner = [c for c in splits["train"] if c.split("_")[0] in held]
        train_cases = [c for c in train_cases if c.split("_")[0] not in held][:limit]
        train = [load(c, True, patients.index(c.split("_")[0])) for c in train_cases]
        val = [load(c, False) for c in inner]
        report = [load(c, False) for c in splits["val"][:val_limit]]
        kind = {'scribble': 'real manual scribbles', 'dense': 'dense labels'}.get(
            supervision, 'weak labels simulated from the ground truth: ' + supervision)
        return TrainingData(train, val, names,
                            f"ACDC train split less {len(held)} inner-validation patients "
                            f"({len(train)} volumes, {kind}); checkpoints chosen on the inner "
                            f"validation ({len(val)} volumes of the train split); reported on "
                            f"the ACDC val split ({len(report)} volumes)",
                            LabelSchema.cardiac().rules(), report)
    train = [load(c, True, patients.index(c.split("_")[0])) for c in train_cases[:limit]]
    val = [load(c, False) for c in splits["val"][:val_limit]]
    return TrainingData(train, val, names,
                        f"ACDC train split ({len(train)} volumes, "
                        f"{ {'scribble': 'real manual scribbles', 'dense': 'dense labels'}.get(supervision, 'weak labels simulated from the ground truth: ' + supervision)}); "
                        f"validation: ACDC val split ({len(val)} volumes)",
                        LabelSchema.cardiac().rules())


def inner_val_patients(patients: list[str], count: int, seed: int = 0) -> list[str]:
    """``count`` patients drawn (seeded) from ``patients``: the inner validation split."""
    if not 0 < count < len(patients):
        raise OptionError(f"inner_val: need 0 < {count} < {len(patients)} patients")
    order = np.random.default_rng(seed).permutation(len(patients))
    return sorted(patients[i] for i in order[:count])


def project_data(source: dict, config=None) -> TrainingData:
    """A project's volumes. Keys of ``source``: ``path``; ``train`` / ``val`` tag filters
    (default: every volume not tagged ``split`` = val/test trains, ``split`` = val
    validates); ``ground_truth_as_training``: train on the stored ground truth (the ``full``
    upper bound in benchmarks — never implied).

    Training volumes are those carrying annotations of the kinds the method learns from;
    validation volumes need a reference mask (ground truth, else a ``dense`` annotation).
    """
    from ..methods import get_method
    from ..store import Project
    from ..weak.targets import dense_targets as dense_volume_targets
    from ..weak.targets import volume_targets

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
        train: list[TrainingVolume] = []
        for record in records:
            if use_truth:
                truth = project.ground_truth(record)
                if truth is None:
                    continue
                targets = dense_volume_targets(truth, project.num_classes)
            else:
                kinds = {a.kind for a in project.annotations(record)}
                if method_kinds is not None:
                    kinds &= set(method_kinds)
                if not kinds:
                    continue
                targets = volume_targets(project, record, kinds=kinds)
            image = project.read_image(record)
            train.append(TrainingVolume(record.name, normalise(image.data),
                                        targets.as_dict(kind=with_kind), None,
                                        image.geometry.spatial_spacing, dict(record.tags)))
        if not train:
            raise InputError(f"{project.root}: no volume carries annotations the method "
                             f"'{getattr(config, 'method', '?')}' learns from "
                             f"({', '.join(sorted(method_kinds or []))})")
        val: list[TrainingVolume] = []
        for record in project.volumes(**val_filter):
            reference = project.ground_truth(record)
            if reference is None and any(a.kind == "dense" for a in project.annotations(record)):
                reference = project.annotation(record, "dense").data.astype(np.int64) - 1
            if reference is None:
                continue
            image = project.read_image(record)
            val.append(TrainingVolume(record.name, normalise(image.data), {},
                                      np.asarray(reference), image.geometry.spatial_spacing,
                                      dict(record.tags)))
        description = (f"project {project.root} ({len(train)} training volumes"
                       f"{', stored ground truth' if use_truth else ''}; "
                       f"{len(val)} validation volumes)")
        return TrainingData(train, val, project.schema.names, description,
                            project.schema.rules())
    finally:
        project.close()


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
