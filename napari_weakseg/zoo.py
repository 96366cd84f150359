"""Where the model zoo lives: ``$WEAKSEG_MODELS``, else the package data of an installed
wheel (``napari_weakseg/models/NAME/``, found with :mod:`importlib.resources`, so it works
for ``pip install --user``, ``--target`` and venvs alike), else ``models/`` of a source
checkout or editable install (the folder ``setup.py`` copies into the wheel).

A zoo model is any subfolder holding a ``config.json`` (see ``models/README.md``); nothing
here names a particular model. No torch, Qt or napari import.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

ZOO_ENV = "WEAKSEG_MODELS"
PACKAGE = "napari_weakseg"
PACKAGE_FOLDER = "models"


def _packaged() -> Path | None:
    try:
        root = resources.files(PACKAGE) / PACKAGE_FOLDER
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - odd loaders
        return None
    # a wheel installs into a plain folder: the Traversable is a real path
    path = Path(str(root))
    return path if path.is_dir() else None


def _checkout() -> Path | None:
    path = Path(__file__).resolve().parent.parent / "models"
    return path if path.is_dir() else None


def zoo_dir() -> Path:
    """The zoo folder (see the module docstring). When none exists, the package-data
    location a wheel would have (listing it gives no models)."""
    if os.environ.get(ZOO_ENV):
        return Path(os.environ[ZOO_ENV])
    return _packaged() or _checkout() or Path(str(resources.files(PACKAGE))) / PACKAGE_FOLDER


def zoo_models(folder: str | os.PathLike | None = None) -> dict[str, Path]:
    """``{name: model folder}`` of every zoo subfolder with a ``config.json``, by name."""
    root = Path(folder) if folder is not None else zoo_dir()
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir())
            if p.is_dir() and (p / "config.json").is_file()}


def default_model(folder: str | os.PathLike | None = None) -> Path | None:
    """The zoo model new users start from: the one whose ``config.json`` says
    ``"zoo_default": true``, else the first by name; ``None`` for an empty zoo."""
    import json

    models = zoo_models(folder)
    for path in models.values():
        try:
            if json.loads((path / "config.json").read_text()).get("zoo_default") is True:
                return path
        except (OSError, ValueError, AttributeError):
            continue
    return next(iter(models.values()), None)


def zoo_model(name: str) -> Path | None:
    """The zoo model folder called ``name``, or ``None``."""
    return zoo_models().get(name)


__all__ = ["ZOO_ENV", "default_model", "zoo_dir", "zoo_model", "zoo_models"]
