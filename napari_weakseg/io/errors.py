"""Errors raised by the I/O layer: each names the file and the problem."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError


class VolumeError(InputError):
    """A volume file cannot be used; ``str(error)`` reads ``"<path>: <problem>"``."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class GeometryMismatchError(VolumeError):
    """An array does not lie on the grid (shape or affine) of the volume it belongs to."""
