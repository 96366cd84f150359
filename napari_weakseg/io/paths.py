"""The output-path guard every writer uses: outputs never replace inputs, never replace a file
the tool did not create, and names taken from files or manifests never escape their folder.

* :func:`safe_stem` turns any name (a volume name from a manifest, a file stem) into one path
  component: no separators, no ``..``, no absolute paths, no control characters.
* :func:`child_path` joins a folder and such a name and checks the result stays inside the
  folder (after resolving symlinks).
* :class:`OutputFolder` is the folder a command writes into. It keeps a ledger
  (``.weakseg-written``) of the files it wrote, so a second run may replace its own earlier
  outputs but nothing else; it refuses a target that is one of the command's inputs, a target
  that two inputs of one run would share, and an existing file it did not write (unless
  ``force``).
* :func:`check_model_output` guards ``train --out``: an existing folder is replaced only when
  it is a model folder the tool wrote *and* ``force`` is given; any other folder is refused.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from ..errors import OutputError
from .atomic import write_bytes_atomic

LEDGER = ".weakseg-written"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Files a model folder written by :func:`napari_weakseg.nets.model_folder.save_model_folder`
#: may hold; a folder with anything else is not "a model folder the tool wrote".
MODEL_FOLDER_FILES = frozenset({"config.json", "weights.pt", "README.md", LEDGER})


def safe_stem(name: str) -> str:
    """One safe path component for ``name``: letters, digits and ``._-`` (others become
    ``_``), no leading dots (so never ``.`` / ``..`` / a hidden file), never empty.

    ``"patient001_frame01"`` → itself; ``"../../x"`` → ``"_.._x"``; ``"/abs/path"`` →
    ``"_abs_path"``.
    """
    stem = _UNSAFE.sub("_", str(name)).lstrip(".")
    return stem or "volume"


def child_path(folder: str | os.PathLike, name: str, suffix: str = "") -> Path:
    """``folder / (safe_stem(name) + suffix)``, refused if it would resolve outside ``folder``
    (e.g. through a symlink planted in the folder)."""
    folder = Path(folder)
    target = folder / f"{safe_stem(name)}{suffix}"
    inside(folder, target)
    return target


def inside(folder: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Return ``target`` if its real path lies under ``folder``'s real path, else raise
    :class:`OutputError`."""
    root = Path(os.path.realpath(folder))
    real = Path(os.path.realpath(target))
    if real != root and root not in real.parents:
        raise OutputError(f"{target}: the name would write outside the output folder {folder}")
    return Path(target)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


class OutputFolder:
    """A folder a command writes into (created on first write).

    ``inputs`` are the command's input files (never replaced). ``force`` allows replacing an
    existing file the tool did not write (never an input, never outside the folder).
    Use :meth:`path_for` to get each output path (it checks), then :meth:`record` after the
    file is written (the ledger lets the next run replace it).
    """

    def __init__(self, root: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (),
                 force: bool = False):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise OutputError(f"{self.root}: the output must be a folder, but this is a file")
        self.inputs = [Path(p) for p in inputs]
        self.force = force
        self._claimed: dict[str, str] = {}
        self._written = self._read_ledger()

    def _read_ledger(self) -> set[str]:
        ledger = self.root / LEDGER
        try:
            names = json.loads(ledger.read_text())
        except (OSError, ValueError):
            return set()
        return {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()

    def path_for(self, name: str, suffix: str = "", *, source: str | os.PathLike = "",
                 subfolder: str = "") -> Path:
        """The checked output path for ``name`` (made safe) + ``suffix``.

        Raises :class:`OutputError` when the path would leave the folder, is one of the
        inputs, was already claimed by another input of this run (``source`` names it), or
        exists and was not written by the tool (unless ``force``).
        """
        folder = self.root / subfolder if subfolder else self.root
        target = child_path(folder, name, suffix)
        inside(self.root, target)
        relative = str(target.relative_to(self.root))
        for item in self.inputs:
            if _same_file(target, item):
                raise OutputError(f"{target}: writing here would replace the input {item}; "
                                  "choose another output folder")
        previous = self._claimed.get(relative)
        if previous is not None and previous != str(source):
            raise OutputError(f"{target}: both {previous} and {source} would be written here "
                              "(same file name); predict them into separate folders")
        if (target.exists() or target.is_symlink()) and relative not in self._written \
                and not self.force:
            raise OutputError(f"{target}: exists and was not written by weakseg; choose "
                              "another output folder or pass --force to replace it")
        if target.is_symlink():
            raise OutputError(f"{target}: is a symbolic link; refusing to write through it")
        self._claimed[relative] = str(source)
        return target

    def record(self, path: str | os.PathLike) -> None:
        """Remember that ``path`` (under the folder) was written by the tool."""
        relative = str(Path(path).relative_to(self.root))
        if relative in self._written:
            return
        self._written |= self._read_ledger()  # what another run added since we read it
        self._written.add(relative)
        self._write_ledger()

    def remove(self, path: str | os.PathLike) -> bool:
        """Delete ``path`` (under the folder) and forget it, if the tool wrote it; a file
        it did not write is left alone (``False``)."""
        target = Path(path)
        relative = str(target.relative_to(self.root))
        self._written |= self._read_ledger()
        if relative not in self._written:
            return False
        target.unlink(missing_ok=True)
        self._written.discard(relative)
        self._write_ledger()
        return True

    def _write_ledger(self) -> None:
        write_bytes_atomic(self.root / LEDGER,
                           json.dumps(sorted(self._written), indent=0).encode())


def is_tool_model_folder(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds only what a model folder written by the tool holds and its
    ``config.json`` parses with ``network`` and ``classes``."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return False
    names = {p.name for p in folder.iterdir()}
    if not names <= MODEL_FOLDER_FILES or "config.json" not in names:
        return False
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "network" in config and "classes" in config


def check_model_output(target: str | os.PathLike, *, force: bool = False,
                       protected: Iterable[str | os.PathLike] = ()) -> Path:
    """Check ``train --out TARGET`` before any training starts.

    A missing target or an empty folder is fine. An existing model folder the tool wrote is
    replaced only with ``force``. Anything else (a file, a project, a folder with the user's
    files) is refused, ``force`` or not. ``protected`` paths (the project, the run folder)
    may not be the target, lie inside it, or contain it.
    """
    target = Path(target)
    real = Path(os.path.realpath(target))
    for item in protected:
        item_real = Path(os.path.realpath(item))
        if real == item_real or real in item_real.parents or item_real in real.parents:
            raise OutputError(f"{target}: the model folder would overlap {item}; choose a "
                              "folder outside it")
    if not (target.exists() or target.is_symlink()):
        return target
    if target.is_symlink():
        raise OutputError(f"{target}: is a symbolic link; choose another model folder")
    if not target.is_dir():
        raise OutputError(f"{target}: exists and is a file; choose another model folder")
    if not any(target.iterdir()):
        return target
    if not is_tool_model_folder(target):
        raise OutputError(f"{target}: exists and is not a model folder written by weakseg; "
                          "choose another model folder (nothing was changed)")
    if not force:
        raise OutputError(f"{target}: a model folder already exists here; pass --force to "
                          "replace it, or choose another folder")
    return target
