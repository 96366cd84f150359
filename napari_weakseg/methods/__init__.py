"""Training objectives, one per module, found by their ``id`` (see :mod:`.base`)."""

from __future__ import annotations

import importlib
import pkgutil

from ..errors import UnknownNameError
from .base import ANNOTATION_KINDS, LossOutput, Method, OptimizerSpec

__all__ = ["ANNOTATION_KINDS", "LossOutput", "Method", "OptimizerSpec", "available_methods",
           "get_method"]


def available_methods() -> dict[str, type[Method]]:
    """Every :class:`Method` subclass defined in this package, by ``id``.

    Modules are imported on demand (they import torch), so napari starts fast.
    """
    found: dict[str, type[Method]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Method) and obj.id \
                    and obj.__module__ == module.__name__:
                found[obj.id] = obj
    return found


def get_method(method_id: str) -> type[Method]:
    methods = available_methods()
    try:
        return methods[method_id]
    except KeyError:
        raise UnknownNameError(f"unknown method {method_id!r}; available: {sorted(methods)}") from None
