"""Test-time augmentation, declared by name and recorded in the model (like
:mod:`napari_weakseg.postprocess`).

A model folder's ``config.json`` may record ``"inference": {"tta": "mirror"}``; no entry
is ``none``. Names (:data:`TTA_MODES`):

``none``
    one pass through the network;
``mirror``
    nnU-Net's mirroring in 2D: the probabilities of the slice and of its left-right,
    up-down and both-ways flips (mapped back) are averaged — 4 passes
    (:func:`napari_weakseg.inference.predict._forward_probs`).

Qt-, napari- and torch-free.
"""

from __future__ import annotations

from .errors import OptionError

#: test-time augmentation modes: ``none`` (one pass), ``mirror`` (4 flips averaged)
TTA_MODES = ("none", "mirror")


def check_tta(name) -> str:
    """``name`` if it is one of :data:`TTA_MODES`, else :class:`OptionError`."""
    if name not in TTA_MODES:
        raise OptionError(f"unknown test-time augmentation {name!r} (choose from "
                          f"{', '.join(TTA_MODES)})")
    return name


def recorded_tta(config: dict) -> str:
    """The test-time augmentation a model config records (``inference.tta``; ``none``
    when absent). Raises :class:`OptionError` for a malformed entry."""
    inference = config.get("inference", {})
    if not isinstance(inference, dict):
        raise OptionError(f"expected an object, got {inference!r}")
    return check_tta(inference.get("tta", "none"))


def resolve_tta(tta: str | None, flip_tta: bool | None, default: str) -> str:
    """The effective mode: ``tta`` if given, else the old boolean spelling ``flip_tta``
    (true = ``mirror``, false = ``none``), else ``default``."""
    if tta is not None:
        check_tta(tta)
        if flip_tta is not None and (tta == "mirror") != bool(flip_tta):
            raise OptionError(f"flip_tta={flip_tta} contradicts tta={tta!r}")
        return tta
    if flip_tta is not None:
        return "mirror" if flip_tta else "none"
    return check_tta(default)
