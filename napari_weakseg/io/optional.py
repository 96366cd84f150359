"""Optional dependencies: import on first use, or say which extra installs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import WeakSegError


class MissingDependencyError(WeakSegError, ImportError):
    """A feature needs a package that is not installed; the message says how to add it."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the optional package {module!r}, which is not installed "
            f"({exc}); install it with: pip install 'napari-weakseg[{extra}]'") from exc
