"""Keyboard shortcuts of the annotate → review flow, declared once (napari key strings).

napari's Labels layer binds the plain digits to its modes (1 erase, 2 paint, 3 polygon,
4 fill, 5 pick, 6 pan/zoom, 7 transform; ``napari.utils.shortcuts``) and the active
layer's keys win over the viewer's, so classes are chosen with **Ctrl+digit** (⌘ on
macOS), which neither napari nor its layers bind. Shift+digit cannot be used: napari
drops Shift from non-letter keys (Shift+1 arrives as "!" on a US layout). Letters with
Shift are ours where napari binds none: Shift+K, Shift+N; and Shift+Enter (plain Enter
completes a polygon). The panels bind them on the viewer with ``overwrite=True`` — these
keys only, never napari's.
"""

from __future__ import annotations

import sys

#: Ctrl+c selects class c (0 = background) for the active annotation or prediction layer.
CLASS_KEYS = {c: f"Control-{c}" for c in range(10)}
#: Annotate: mark the slice shown complete in the sparse layer (or unmark it).
SLICE_COMPLETE = "Shift-K"
#: Review: accept the slice shown (corrected prediction) as a complete sparse slice.
ACCEPT_SLICE = "Shift-Enter"
#: Review: go to the next suggested (most uncertain, not yet complete) slice.
NEXT_SLICE = "Shift-N"


def shown(key: str) -> str:
    """How a key is written for the user: "Ctrl+1" (⌘1 on macOS), "Shift+Enter"."""
    if sys.platform == "darwin":
        key = key.replace("Control-", "⌘")
    return key.replace("Control-", "Ctrl+").replace("Shift-", "Shift+")


def class_keys_text(num_classes: int) -> str:
    """"Ctrl+0…3" for the classes of a schema (at most 0…9)."""
    last = min(num_classes, 10) - 1
    return shown(CLASS_KEYS[0]) + (f"…{last}" if last > 0 else "")


def help_text(num_classes: int) -> str:
    """One line listing the flow's shortcuts (help labels and tooltips)."""
    return (f"Keys (image canvas): {class_keys_text(num_classes)} class (0 = background) · "
            f"{shown(SLICE_COMPLETE)} mark slice complete · {shown(ACCEPT_SLICE)} accept "
            f"slice · {shown(NEXT_SLICE)} next suggested slice")


__all__ = ["ACCEPT_SLICE", "CLASS_KEYS", "NEXT_SLICE", "SLICE_COMPLETE", "class_keys_text",
           "help_text", "shown"]
