"""One error hierarchy for the whole package.

Every error that describes the *user's* situation (a bad file, a bad option, a project or
model folder that cannot be used, an output that would replace something) derives from
:class:`WeakSegError`; ``str(error)`` is one line that names the file or option and the
problem. The CLI prints those as one line; anything else is a bug and gets a traceback.

The classes also derive from :class:`ValueError` (and :class:`NotFoundError` from
:class:`KeyError`) so that callers written against the first API keep working; the CLI does
*not* rely on that: it catches :class:`WeakSegError`, never a bare ``ValueError``.
"""

from __future__ import annotations

from pathlib import Path


class WeakSegError(Exception):
    """Base of every user-facing error; ``str(error)`` is one line."""


class InputError(WeakSegError, ValueError):
    """An input file or value cannot be used (unreadable, hostile, off-grid, out of range)."""


class OptionError(InputError):
    """A command-line or training option is invalid (type, range, unknown name)."""


class UnknownNameError(OptionError, KeyError):
    """A name (method, class, profile) is not known; also a :class:`KeyError`."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OutputError(WeakSegError, ValueError):
    """Writing would replace an input or a file the tool did not create, or escape its
    output folder."""


class ProjectError(WeakSegError, ValueError):
    """A project store operation cannot be done (missing, corrupt, read-only, clash)."""


class ModelError(WeakSegError, ValueError):
    """A model folder cannot be used (missing files, wrong types, NaN weights)."""


class DiskError(WeakSegError, OSError):
    """The disk refused a write (full, read-only, permission); names the path."""


def path_error(path: str | Path | None, problem: str, kind: type[WeakSegError]) -> WeakSegError:
    """``kind("<path>: <problem>")``, or just the problem without a path."""
    return kind(f"{path}: {problem}" if path is not None else problem)
