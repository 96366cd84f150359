"""Model folders: ``config.json`` + ``weights.pt`` (a plain state dict) + ``README.md``.

Weights are always loaded with ``torch.load(..., weights_only=True)``; a state dict that
does not fit the architecture of ``config.json`` is refused with a clear error, and so are
NaN/Inf weights. ``config.json`` is checked field by field when read (:func:`read_config`):
``network`` (an object with positive integer ``base_width``, ``num_classes`` ≥ 2, …),
``classes`` (unique names, as many as the network's outputs), ``preprocessing`` (a pipeline
of :mod:`napari_weakseg.preprocess`) and the optional ``postprocessing``
(:mod:`napari_weakseg.postprocess`) and ``inference`` (``{"tta": "none"|"mirror"}``, the
default test-time augmentation, :mod:`napari_weakseg.tta`); a bad one raises a one-line
:class:`ModelFolderError` naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..io.atomic import atomic_path, write_bytes_atomic

CONFIG = "config.json"
WEIGHTS = "weights.pt"
CARD = "README.md"


class ModelFolderError(ModelError):
    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file, fsync and rename."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_model_folder(folder: str | Path, net, config: dict, card: str,
                      half_precision: bool = False) -> Path:
    """Write a model folder. ``config`` must hold ``network`` (the net's config dict),
    ``classes`` (names), ``preprocessing``; anything else (method, data, metrics) is kept."""
    folder = Path(folder)
    state = {k: (v.half() if half_precision and v.is_floating_point() else v).detach().cpu()
             for k, v in net.state_dict().items()}
    atomic_torch_save(state, folder / WEIGHTS)
    write_bytes_atomic(folder / CONFIG, json.dumps(config, indent=2).encode())
    write_bytes_atomic(folder / CARD, card.encode())
    return folder


def read_config(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / CONFIG
    if not path.exists():
        raise ModelFolderError(folder, f"not a model folder (no {CONFIG})")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFolderError(path, f"invalid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise ModelFolderError(path, f"expected a JSON object, got {type(config).__name__}")
    for key in ("network", "classes", "preprocessing"):
        if key not in config:
            raise ModelFolderError(path, f"missing key {key!r}")
    check_config(config, path)
    return config


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_config(config: dict, path) -> None:
    """Check the types of a model config's fields; :class:`ModelFolderError` naming
    ``path`` and the field otherwise."""
    from ..postprocess import Postprocessing
    from ..preprocess import Preprocessing

    def bad(field: str, problem: str):
        return ModelFolderError(path, f"field {field!r}: {problem}")

    network = config["network"]
    if not isinstance(network, dict):
        raise bad("network", f"expected an object, got {network!r}")
    for key, minimum in (("base_width", 1), ("num_classes", 2), ("in_channels", 1)):
        if key in network and not (_positive_int(network[key]) and network[key] >= minimum):
            raise bad(f"network.{key}", f"expected an integer ≥ {minimum}, got "
                                        f"{network[key]!r}")
    dropout = network.get("dropout")
    if dropout is not None and (not isinstance(dropout, list) or not all(
            isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p < 1
            for p in dropout)):
        raise bad("network.dropout", f"expected a list of probabilities, got {dropout!r}")
    classes = config["classes"]
    if not isinstance(classes, list) or len(classes) < 2 or not all(
            isinstance(c, str) and c for c in classes) or len(set(classes)) != len(classes):
        raise bad("classes", f"expected at least 2 unique class names, got {classes!r}")
    outputs = network.get("num_classes", 4)
    if len(classes) != outputs:
        raise bad("classes", f"{len(classes)} class names for a network with {outputs} "
                             "outputs")
    try:
        Preprocessing.from_config(config["preprocessing"])
    except (ValueError, TypeError) as exc:
        raise bad("preprocessing", str(exc)) from None
    if "postprocessing" in config:
        try:
            Postprocessing.from_config(config["postprocessing"])
        except (ValueError, TypeError, AttributeError) as exc:
            raise bad("postprocessing", str(exc)) from None
    if "inference" in config:
        from ..tta import recorded_tta

        try:
            recorded_tta(config)
        except ValueError as exc:
            raise bad("inference", str(exc)) from None


def model_identity(folder: str | Path) -> str:
    """16 hex digits of SHA-256 over the network/classes/pre-processing config and the
    weight file's bytes (post-processing is an option of the run, not of the model)."""
    folder = Path(folder)
    config = read_config(folder)
    digest = hashlib.sha256(json.dumps(
        {k: config[k] for k in ("network", "classes", "preprocessing")},
        sort_keys=True).encode())
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise ModelFolderError(folder, f"no {WEIGHTS}")
    with open(weights, "rb") as handle:
        digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:16]


def load_model(folder: str | Path, device: str = "cpu"):
    """Rebuild the network of a model folder and load its weights.

    Returns ``(net, config)`` with the net in eval mode on ``device``.
    """
    import torch

    from .unet import build_network

    folder = Path(folder)
    config = read_config(folder)
    try:
        net = build_network(config["network"])
    except ValueError as exc:
        raise ModelFolderError(folder / CONFIG, str(exc)) from exc
    weights = folder / WEIGHTS
    if not weights.exists():
        raise ModelFolderError(folder, f"no {WEIGHTS}")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFolderError(weights, f"cannot be loaded as a plain state dict ({exc})") from exc
    if not isinstance(state, dict):
        raise ModelFolderError(weights, f"expected a state dict, got {type(state).__name__}")
    check_finite(state, weights)
    load_state_checked(net, state, weights)
    return net.to(device).eval(), config


def check_finite(state: dict, source) -> None:
    """Refuse NaN/Inf in the floating-point tensors of a state dict, naming one of them."""
    import torch

    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() \
                and not bool(torch.isfinite(value).all()):
            kind = "NaN" if bool(torch.isnan(value).any()) else "Inf"
            raise ModelFolderError(source, f"weight {key!r} holds {kind} values (a diverged "
                                           "or damaged model)")


def load_state_checked(net, state: dict, source) -> None:
    """Load ``state`` into ``net`` or raise a clear error naming ``source``."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state)
                   if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        details = []
        if wrong:
            details.append("shape mismatch for " + ", ".join(
                f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong[:3]))
        if missing:
            details.append(f"missing {missing[:3]}{' …' if len(missing) > 3 else ''}")
        if unexpected:
            details.append(f"unexpected {unexpected[:3]}{' …' if len(unexpected) > 3 else ''}")
        raise ModelFolderError(source, "checkpoint from another architecture: "
                               + "; ".join(details))
    net.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
