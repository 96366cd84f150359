"""Process-level helpers shared by training, inference and the CLI: the ``torchrun``
rank and world size from the environment, and how seeds are mixed with a step.

Qt-, napari- and torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: the prime seeds are multiplied by before a step (or record id) is added: runs with
#: nearby seeds draw unrelated streams, and a resumed run replays the same draws
SEED_STRIDE = 1_000_003


def mix_seed(seed: int, step: int) -> int:
    """``seed · 1000003 + step``: the seed of one step (an iteration, a volume id)."""
    return int(seed) * SEED_STRIDE + int(step)


def dist_rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's ``RANK`` under ``torchrun`` (0 when unset or empty)."""
    environ = os.environ if environ is None else environ
    return int(environ.get("RANK", "0") or 0)


def dist_world_size(environ: Mapping[str, str] | None = None) -> int:
    """The ``WORLD_SIZE`` under ``torchrun`` (1 when unset or empty)."""
    environ = os.environ if environ is None else environ
    return int(environ.get("WORLD_SIZE", "1") or 1)


__all__ = ["SEED_STRIDE", "dist_rank", "dist_world_size", "mix_seed"]
