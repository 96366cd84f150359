"""Progress lines for long CLI commands that work when piped (one line per update)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

#: Seconds between two progress lines.
EVERY_S = 3.0


@contextlib.contextmanager
def import_progress(project, what: str, total: int | None = None, stream=None,
                    every_s: float | None = None) -> Iterator[None]:
    """Print ``what: N[/TOTAL] volume(s) added (T s)`` every ``every_s`` seconds while the
    block adds volumes to ``project`` (counted through its ``add_volume``)."""
    out = stream or sys.stdout
    every_s = EVERY_S if every_s is None else every_s
    started = last = time.monotonic()
    count = 0
    add_volume = project.add_volume

    def counting(*args, **kwargs):
        nonlocal count, last
        record = add_volume(*args, **kwargs)
        count += 1
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            of = f"/{total}" if total else ""
            print(f"{what}: {count}{of} volume(s) added ({now - started:.0f} s)", file=out,
                  flush=True)
        return record

    print(f"{what}…", file=out, flush=True)
    project.add_volume = counting
    try:
        yield
    finally:
        try:
            del project.add_volume  # the class's method again
        except AttributeError:
            pass
