"""Model folders: ``config.json`` + ``weights.pt`` (a plain state dict) + ``README.md``.

Weights are always loaded with ``torch.load(..., weights_only=True)``; a state dict that
does not fit the architecture of ``config.json`` is refused with a clear error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_path, write_bytes_atomic

CONFIG = "config.json"
WEIGHTS = "weights.pt"
CARD = "README.md"


class ModelFolderError(ValueError):
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
    for key in ("network", "classes", "preprocessing"):
        if key not in config:
            raise ModelFolderError(path, f"missing key {key!r}")
    return config


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
    load_state_checked(net, state, weights)
    return net.to(device).eval(), config


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
