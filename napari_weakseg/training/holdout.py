"""Validation without ground truth: accepted slices held out of training.

A project whose validation volumes (``split`` = val) carry no reference mask (no ground
truth, no ``dense`` annotation) would train without a Dice curve. Instead, some of its
*accepted* slices — slices of a ``sparse`` annotation declared complete for every
foreground class (Review ▸ Accept "corrected slices" / "current slice", or Annotate ▸ mark
slice complete with every class) — are kept out of the training targets and validated on.

Which slices (:func:`choose_held_out`): every candidate ``(volume name, z)`` gets a score
``u`` in [0, 1) from a hash of ``(seed, volume name, z)``; the ``max(1, n // 5)`` lowest
scores are held out (every 5th accepted slice, at least one), and nothing when the project
has fewer than :data:`MIN_CANDIDATES` such slices. The choice depends only on the slices
present — not on their order, the training seed or the method — and is stable as slices
are added: a held-out slice goes back to training only when a new slice with a lower score
takes its place while the count stays the same.

What the trainer sees (:func:`drop_slices`, :func:`slice_reference`): the held-out slices
carry no supervision of any kind (their ``valid`` is False, labels unknown, no coarse mark,
no declaration), and the validation volume is the whole image with a reference of −1
everywhere but those slices, so :meth:`Trainer.validate` scores only them (Dice per class
over the volume's held-out slices, mean over volumes).

Qt-free; reads the store through the ``Project`` it is given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np

#: The share of the accepted slices held out (every 5th).
HOLDOUT_FRACTION = 0.2
#: No slice is held out of a project with fewer accepted slices.
MIN_CANDIDATES = 2
#: The default seed of the choice (the source key ``holdout_seed`` changes it).
DEFAULT_SEED = 0


def complete_declared_slices(declared_slices: Mapping[int, Iterable[int] | None] | None,
                             num_classes: int) -> list[int]:
    """The slices of a sparse declaration complete for every foreground class (``None``
    classes: every class), sorted."""
    every = set(range(1, num_classes))
    out = []
    for z, classes in (declared_slices or {}).items():
        if classes is None or every <= {int(c) for c in classes}:
            out.append(int(z))
    return sorted(out)


def candidate_slices(project, records) -> list[tuple[str, int]]:
    """``(volume name, z)`` of every accepted (sparse, complete) slice of ``records``.
    Reads annotation records only (no arrays)."""
    out = []
    for record in records:
        for annotation in project.annotations(record, kind="sparse"):
            for z in complete_declared_slices(annotation.declared_slices,
                                              project.num_classes):
                out.append((record.name, z))
    return sorted(set(out))


def slice_score(volume: str, z: int, seed: int = DEFAULT_SEED) -> float:
    """The slice's place in the hold-out order, in [0, 1) (a hash: no RNG state)."""
    digest = hashlib.sha256(f"{int(seed)}\0{volume}\0{int(z)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def choose_held_out(candidates: Iterable[tuple[str, int]], seed: int = DEFAULT_SEED,
                    fraction: float = HOLDOUT_FRACTION) -> dict[str, tuple[int, ...]]:
    """The held-out slices among ``candidates`` as ``{volume name: (z, …)}`` (module
    docstring): ``max(1, ⌊fraction · n⌋)`` of them, none when ``n`` < 2."""
    candidates = sorted(set((str(v), int(z)) for v, z in candidates))
    if len(candidates) < MIN_CANDIDATES:
        return {}
    count = max(1, int(len(candidates) * fraction))
    ranked = sorted(candidates, key=lambda c: (slice_score(c[0], c[1], seed), c))
    out: dict[str, list[int]] = {}
    for volume, z in ranked[:count]:
        out.setdefault(volume, []).append(z)
    return {volume: tuple(sorted(zs)) for volume, zs in sorted(out.items())}


def held_out_slices(project, records=None, seed: int = DEFAULT_SEED
                    ) -> dict[str, tuple[int, ...]]:
    """The slices a run on ``project`` holds out when it has no reference validation
    (``records``: the training volumes; default those not tagged ``split`` = val/test)."""
    if records is None:
        records = [r for r in project.volumes() if r.tags.get("split") not in ("val", "test")]
    return choose_held_out(candidate_slices(project, records), seed)


def drop_slices(targets: dict[str, np.ndarray], zs: Iterable[int]) -> dict[str, np.ndarray]:
    """Remove every supervision of slices ``zs`` from a volume's target dict (the batch
    keys of ``training.data.TrainingVolume``, 3D), in place; returns ``targets``."""
    zs = sorted({int(z) for z in zs})
    if not zs:
        return targets
    fills = {"labels": -1, "valid": False, "annotated": False, "kind": 0}
    for key, fill in fills.items():
        if key in targets:
            targets[key][zs] = fill
    if "coarse_pos" in targets:
        targets["coarse_pos"][:, zs] = -1
    if "coarse_neg" in targets:
        targets["coarse_neg"][:, :, zs] = False
    return targets


def slice_reference(sparse: np.ndarray, zs: Iterable[int]) -> np.ndarray:
    """The validation reference of a volume's held-out slices: on each slice ``z`` of
    ``zs`` the classes of the ``sparse`` annotation (stored encoding: 0 unannotated,
    class + 1; a complete slice's unannotated voxels are background), −1 elsewhere (not
    scored)."""
    sparse = np.asarray(sparse)
    reference = np.full(sparse.shape, -1, np.int16)
    zs = sorted({int(z) for z in zs})
    if zs:
        reference[zs] = np.maximum(sparse[zs].astype(np.int16) - 1, 0)
    return reference


def describe_held_out(slices: int, volumes: int | None = None) -> str:
    """"validation Dice on 3 held-out corrected slices (not used for training)"."""
    where = "" if volumes is None else f" of {volumes} volume{'s' if volumes != 1 else ''}"
    return (f"validation Dice on {slices} held-out corrected slice{'s' if slices != 1 else ''}"
            f"{where} (not used for training)")


__all__ = ["DEFAULT_SEED", "HOLDOUT_FRACTION", "MIN_CANDIDATES", "candidate_slices",
           "choose_held_out", "complete_declared_slices", "describe_held_out", "drop_slices",
           "held_out_slices", "slice_reference", "slice_score"]
