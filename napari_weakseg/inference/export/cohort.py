"""The cohort of a batch export: input discovery (a project, a folder, files; ACDC names
give the cardiac ``subject``/``frame`` tags) and sharding by subject (``--shard i/n`` and the
``torchrun`` ranks).

Project folders among the sources are opened here (the one module of the export that
reads the store; ``tests/test_layering_contracts.py`` lists it as an allowed exception).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import OptionError, OutputError
from ...io.formats import volume_format, volume_name
from ...io.nifti import LABEL_NAME_PATTERN, Volume
from ...runtime import dist_rank, dist_world_size

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ExportItem:
    """One input volume. ``name`` (unique in the cohort) names the outputs; ``tags`` may
    hold ``subject`` and ``frame`` (``ED``/``ES``); ``sha256`` is known for project volumes,
    whose ``reader`` (the project's checked read) replaces a plain file read."""

    name: str
    path: Path
    tags: Mapping[str, str] = field(default_factory=dict)
    sha256: str | None = None
    reader: Callable[[], Volume] | None = field(default=None, compare=False, repr=False)

    @property
    def group(self) -> str:
        """Sharding unit: the subject (keeps ED/ES pairs together), else the name."""
        return self.tags.get("subject") or self.name


@dataclass
class Cohort:
    """The discovered inputs, sorted by name; ``ignored`` says which files were left out
    and why. Close it (or use ``with``) to close the projects it opened."""

    items: list[ExportItem]
    ignored: list[str] = field(default_factory=list)
    projects: list[Any] = field(default_factory=list, repr=False)

    def close(self) -> None:
        for project in self.projects:
            project.close()
        self.projects.clear()

    def __enter__(self) -> Cohort:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def safe_name(name: str) -> str:
    """A file-name-safe stem (letters, digits, ``._-``)."""
    return _SAFE.sub("_", name).strip(".") or "volume"


def discover_inputs(sources: Iterable[str | os.PathLike], *,
                    tags: Mapping[str, str] | None = None) -> Cohort:
    """Inputs of ``sources``: a project folder (its volumes, filtered by ``tags``), a folder
    (its ``.nii``/``.nii.gz`` files, not recursive; files named like labels — ``_gt``,
    ``_seg``, … — are left out and listed in ``ignored``) or single files (a missing or bad
    file stays in the cohort and fails when read, so it is reported).

    Cardiac tags (``subject``, ``frame`` ED/ES) come from the store, else from ACDC-style
    names (``patientNNN_frameFF``, ED = the lower frame number). Raises ``ValueError`` for
    two inputs with the same output name or tag filters without a project.
    """
    from ...store.importers import acdc_tags
    from ...store.manifest import MANIFEST_NAME
    from ...store.project import Project

    items: list[ExportItem] = []
    ignored: list[str] = []
    projects: list[Any] = []
    try:
        for source in sources:
            path = Path(source)
            if path.is_dir() and (path / MANIFEST_NAME).exists():
                project = Project.open(path)
                projects.append(project)
                for record in project.volumes(**dict(tags or {})):
                    items.append(ExportItem(
                        record.name, record.image_path, dict(record.tags), record.sha256,
                        _project_reader(project, record.id)))
            elif path.is_dir():
                for file in sorted(p for p in path.iterdir()
                                   if p.is_file() and volume_format(p) in ("nifti", "sitk")
                                   and not p.name.startswith(".")):
                    if LABEL_NAME_PATTERN.search(file.name):
                        ignored.append(f"{file}: named like a label file; not exported")
                        continue
                    items.append(ExportItem(volume_name(file), file))
            else:
                items.append(ExportItem(volume_name(path), path))
        if tags and not projects:
            raise OptionError("tag filters select volumes of a project; no project was given")
        parsed = acdc_tags(item.name for item in items)
        items = [ExportItem(item.name, item.path, {**parsed.get(item.name, {}), **item.tags},
                            item.sha256, item.reader) for item in items]
        seen: dict[str, ExportItem] = {}
        for item in items:
            key = safe_name(item.name).lower()
            if key in seen:
                raise OutputError(f"{item.path}: its output name {safe_name(item.name)!r} is "
                                 f"also that of {seen[key].path}; export them separately")
            seen[key] = item
    except BaseException:
        for project in projects:
            project.close()
        raise
    items.sort(key=lambda item: item.name)
    return Cohort(items, ignored, projects)


def _project_reader(project, volume_id: int) -> Callable[[], Volume]:
    def read() -> Volume:
        return project.read_image(volume_id)  # checks the SHA-256 and the recorded grid
    return read


# -- sharding ----------------------------------------------------------------------------------
def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (0-based ``i`` < ``n``) → ``(i, n)``; ``ValueError`` otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise OptionError(f"shard must read i/n (e.g. 0/4), got {text!r}")
    index, count = int(match[1]), int(match[2])
    if count < 1 or not 0 <= index < count:
        raise OptionError(f"shard {text!r}: need 0 <= i < n (i is 0-based)")
    return index, count


def resolve_shard(shard: tuple[int, int] | None,
                  environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """The effective ``(index, count)``: ``shard`` split further over the ``torchrun``
    ranks (``RANK``/``WORLD_SIZE`` in ``environ``) when those are set."""
    environ = os.environ if environ is None else environ
    world = dist_world_size(environ)
    rank = dist_rank(environ)
    if not 0 <= rank < world:
        raise OptionError(f"RANK {rank} is outside WORLD_SIZE {world}")
    index, count = shard if shard is not None else (0, 1)
    if count < 1 or not 0 <= index < count:
        raise OptionError(f"shard {index}/{count}: need 0 <= i < n")
    return index * world + rank, count * world


def shard_items(items: Sequence[ExportItem], index: int, count: int) -> list[ExportItem]:
    """The items of shard ``index`` of ``count``: subject groups sorted by key, group ``g``
    to shard ``g mod count``; order within the shard as in ``items``."""
    groups = sorted({item.group for item in items})
    mine = set(groups[index::count])
    return [item for item in items if item.group in mine]


__all__ = ["Cohort", "ExportItem", "discover_inputs", "parse_shard", "resolve_shard",
           "safe_name", "shard_items"]
