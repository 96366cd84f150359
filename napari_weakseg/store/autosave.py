"""Autosave of annotations being edited: when to save, in which order, and what won.

:class:`AnnotationAutosaver` is the state machine behind the Annotate panel's autosave,
without Qt, napari or torch: time (the debounce timer) and threads (the executor that runs a
save in the background) belong to the caller. Per *key* (whatever identifies an edited
annotation, e.g. a napari layer) it keeps the fingerprint last saved and whether a
background save is running; per *target* (project root, volume, kind) the sequence number of
the newest save committed, so that an older state finishing late never overwrites a newer
one. One save runs at a time (a :class:`threading.Lock`).

The caller's loop::

    job = autosaver.prepare(key, project, volume, kind, data, classes=..., slices=...,
                            background=True)
    if job is Skip.IN_FLIGHT:
        ...                          # a save of this key is running: try again later
    elif isinstance(job, SaveJob):
        run_in_background(autosaver.run, job,
                          on_done=lambda record: autosaver.finished(job, record),
                          on_error=lambda exc: autosaver.failed(job))

or, on the caller's thread, ``autosaver.save(job)`` (run, then finished/failed).
The store call (:func:`save_layer_annotation`) versions the annotation and never overwrites
anything: a save of an unchanged state adds no version.
"""

from __future__ import annotations

import enum
import threading
import zlib
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["AnnotationAutosaver", "SaveJob", "Skip", "declarations_for", "fingerprint",
           "save_layer_annotation"]


def fingerprint(data: np.ndarray, classes=None, slices=None) -> tuple:
    """Cheap identity of an annotation state (CRC of the voxels + declarations)."""
    array = np.ascontiguousarray(data)
    frozen_slices = None if slices is None else tuple(
        (int(z), None if c is None else tuple(c)) for z, c in sorted(slices.items()))
    return (array.shape, str(array.dtype), zlib.crc32(memoryview(array).cast("B")),
            None if classes is None else tuple(classes), frozen_slices)


def declarations_for(kind: str, classes: Sequence[int] | None,
                     slices: Mapping[int, Sequence[int] | None] | None):
    """The ``declared_classes`` / ``declared_slices`` the store takes for ``kind``."""
    if kind == "partial":
        return (tuple(classes) if classes else None), None
    if kind == "sparse":
        return None, (dict(slices) if slices else None)
    return None, None


def save_layer_annotation(project, volume, kind: str, data: np.ndarray, *,
                          classes: Sequence[int] | None = None,
                          slices: Mapping[int, Sequence[int] | None] | None = None,
                          author: str | None = None):
    """Autosave one annotation layer: a new version when anything changed.

    A layer with nothing painted and nothing declared is not saved unless a version exists
    already (then erasing everything is a change worth keeping). Returns the record of the
    current version, or ``None`` when nothing was saved.
    """
    declared_classes, declared_slices = declarations_for(kind, classes, slices)
    has_history = bool(project.annotation_versions(volume, kind))
    if not has_history and not np.any(data) and not declared_slices:
        return None
    return project.save_annotation(volume, kind, np.asarray(data), author=author,
                                   declared_classes=declared_classes,
                                   declared_slices=declared_slices, if_changed=True,
                                   allow_empty=True)


class Skip(enum.Enum):
    """Why :meth:`AnnotationAutosaver.prepare` handed out no job."""

    #: the state is the one last saved (or first seen): nothing to do
    UNCHANGED = "unchanged"
    #: a background save of this key is running: the caller tries again after it
    IN_FLIGHT = "in_flight"


@dataclass(eq=False)
class SaveJob:
    """One save handed out by :meth:`AnnotationAutosaver.prepare` (a snapshot: the data is
    a copy, so the caller may go on editing while it runs). ``dropped``: set by
    :meth:`AnnotationAutosaver.run` when a newer state of the target was committed first."""

    seq: int
    key: Hashable
    project: Any
    volume: Any
    kind: str
    data: np.ndarray
    classes: tuple[int, ...] | None
    slices: Mapping[int, Sequence[int] | None] | None
    fingerprint: tuple
    background: bool
    author: str | None = None
    dropped: bool = field(default=False, init=False)

    @property
    def target(self) -> tuple:
        """What "newest committed" is counted for: (project root, volume, kind)."""
        return str(getattr(self.project, "root", id(self.project))), self.volume, self.kind


#: the sequence of a fingerprint that did not come from a job (first seen, or put into the
#: annotation from the store): any job finishing later replaces it
_NOT_A_JOB = 0


class AnnotationAutosaver:
    """Which annotation states to save, and the ordered, one-at-a-time saves.

    ``save``: the store call, ``save(project, volume, kind, data, *, classes, slices,
    author)`` returning a record or ``None`` (default :func:`save_layer_annotation`).
    Every method may be called from any thread.
    """

    def __init__(self, save: Callable[..., Any] = save_layer_annotation):
        self._save = save
        self._state_lock = threading.Lock()   # guards the bookkeeping below (short holds)
        self._save_lock = threading.Lock()    # one store call at a time
        self._saved: dict[Hashable, tuple[int, tuple | None]] = {}  # key → (seq, fp saved)
        self._inflight: dict[Hashable, int] = {}  # key → sequence of its background save
        self._seq = 0
        self._committed: dict[tuple, int] = {}  # target → newest committed sequence

    # -- what the caller knows ------------------------------------------------------------
    def track(self, key: Hashable, fp: tuple) -> None:
        """Start following ``key`` whose current state ``fp`` needs no save (an empty new
        layer, a loaded version); a key followed already keeps what it has."""
        with self._state_lock:
            self._saved.setdefault(key, (_NOT_A_JOB, fp))

    def mark_saved(self, key: Hashable, fp: tuple) -> None:
        """``key`` now holds state ``fp``, a version in the store (put into it from there)."""
        with self._state_lock:
            self._saved[key] = (_NOT_A_JOB, fp)

    def forget(self, key: Hashable) -> None:
        """Stop following ``key`` (its layer is gone); a save still running for it finishes
        in the store but is not recorded."""
        with self._state_lock:
            self._saved.pop(key, None)
            self._inflight.pop(key, None)

    def saved_fingerprint(self, key: Hashable) -> tuple | None:
        """The fingerprint last saved (or marked) for ``key``; ``None`` when unknown."""
        with self._state_lock:
            return self._saved.get(key, (_NOT_A_JOB, None))[1]

    def in_flight(self, key: Hashable) -> bool:
        """Whether a background save of ``key`` is running."""
        with self._state_lock:
            return key in self._inflight

    # -- the state machine ------------------------------------------------------------------
    def prepare(self, key: Hashable, project, volume, kind: str, data: np.ndarray, *,
                classes: Sequence[int] | None = None,
                slices: Mapping[int, Sequence[int] | None] | None = None,
                background: bool = False, author: str | None = None) -> SaveJob | Skip:
        """A sequence-numbered save of ``key``'s current state, or why there is none.

        :attr:`Skip.UNCHANGED` when the state is the one last saved; with ``background``,
        :attr:`Skip.IN_FLIGHT` when a background save of ``key`` is running (the caller
        reschedules; a synchronous save — volume switch, close — never waits). ``data`` is
        read (and copied into the job) on the calling thread, which must own it. A
        background job counts as running until :meth:`finished` or :meth:`failed`.
        """
        fp = fingerprint(data, classes, slices)
        with self._state_lock:
            if fp == self._saved.get(key, (_NOT_A_JOB, None))[1]:
                return Skip.UNCHANGED
            if background and key in self._inflight:
                return Skip.IN_FLIGHT
            self._seq += 1
            seq = self._seq
            self._saved.setdefault(key, (_NOT_A_JOB, None))  # followed from now on
            if background:
                self._inflight[key] = seq
        return SaveJob(seq=seq, key=key, project=project, volume=volume, kind=kind,
                       data=np.array(data, copy=True),
                       classes=None if classes is None else tuple(classes),
                       slices=None if slices is None else dict(slices), fingerprint=fp,
                       background=background, author=author)

    def run(self, job: SaveJob):
        """Do the store call of ``job`` (any thread; one at a time). A job older than the
        newest one committed for its target is dropped: returns ``None``, saves nothing."""
        with self._save_lock:
            if job.seq <= self._committed.get(job.target, -1):
                job.dropped = True
                return None
            record = self._save(job.project, job.volume, job.kind, job.data,
                                classes=job.classes, slices=job.slices, author=job.author)
            self._committed[job.target] = job.seq
            return record

    def finished(self, job: SaveJob, record=None) -> None:
        """``job`` ran (``record``: what :meth:`run` returned): its state counts as saved,
        unless it was dropped or a newer job of the key finished first."""
        with self._state_lock:
            self._end(job)
            current = self._saved.get(job.key)
            if not job.dropped and current is not None and job.seq > current[0]:
                self._saved[job.key] = (job.seq, job.fingerprint)

    def failed(self, job: SaveJob) -> None:
        """``job`` raised: nothing is recorded, so the next :meth:`prepare` saves again."""
        with self._state_lock:
            self._end(job)

    def _end(self, job: SaveJob) -> None:
        if job.background and self._inflight.get(job.key) == job.seq:
            del self._inflight[job.key]

    def save(self, job: SaveJob):
        """:meth:`run` then :meth:`finished` on this thread; on an error :meth:`failed`, and
        the error propagates. Returns the record (``None``: nothing saved)."""
        try:
            record = self.run(job)
        except BaseException:
            self.failed(job)
            raise
        self.finished(job, record)
        return record
