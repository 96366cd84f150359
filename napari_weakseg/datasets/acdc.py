"""ACDC as training data: the folder layout of ``../shared/data/acdc`` (``images/``,
``scribbles/`` with 4 = unannotated, ``labels/``, ``splits.json``), its real manual
scribbles or dense labels, and the weak supervision the benchmarks simulate from the dense
masks (coarse, multi-source partial/sparse, sparse fractions, mixed groups, scribbles plus
corrected slices); the inner validation split. Source ``{"kind": "acdc", "root": ...,
"supervision": "scribble" | "dense" | ..., "limit": N}``.
"""

from __future__ import annotations

import numpy as np

from ..errors import OptionError
from ..preprocess import get_normaliser
from ..training.data import TrainingVolume
from .base import TrainingData, dense_targets, scribble_targets


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
    the first N volumes; ``limit`` counts after the inner-validation patients left).
    ``supervision``: ``scribble`` (the real manual scribbles), ``dense`` (the ground
    truth), or weak labels simulated from it (:func:`simulated_acdc_targets`).

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
    held = set(inner_val_patients(patients, inner_val, inner_seed)) if inner_val else set()
    # ``limit``: the first N volumes once the inner-validation patients have left
    train_cases = [c for c in splits["train"] if c.split("_")[0] not in held][:limit]
    if supervision == "multisource-partial":  # the partial sources alone (no sparse source)
        train_cases = [c for c in train_cases if patients.index(c.split("_")[0]) % 3 != 2]
    if inner_val:
        inner = [c for c in splits["train"] if c.split("_")[0] in held]
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
    train = [load(c, True, patients.index(c.split("_")[0])) for c in train_cases]
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
