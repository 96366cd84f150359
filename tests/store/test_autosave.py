"""The annotation autosaver (store/autosave.py): what it saves, in which order, without Qt.

Orderings between threads are forced with :class:`threading.Event` (no sleeps): a fake
store call blocks until the test releases it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pytest

from napari_weakseg.store import Project
from napari_weakseg.store.autosave import AnnotationAutosaver, SaveJob, Skip, fingerprint
from tests.store.helpers import TINY_SHAPE, tiny_case, write_case

WAIT = 30.0  # seconds: only reached when a test is broken (never a pass/fail timing)
SHAPE = (2, 4, 4)


@dataclass
class FakeProject:
    root: str


@dataclass(frozen=True)
class Record:
    volume: str
    kind: str
    value: int  # the annotation's only non-zero value: which state was saved


class FakeStore:
    """Records every store call; ``gate[value]`` (an Event) holds the call saving that
    state until it is set; ``fail`` (a set of values) makes those calls raise."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.started: dict[int, threading.Event] = {}
        self.gate: dict[int, threading.Event] = {}
        self.fail: set[int] = set()
        self.running = 0
        self.overlapped = False
        self._lock = threading.Lock()

    def __call__(self, project, volume, kind, data, *, classes=None, slices=None,
                 author=None):
        value = int(data.max())
        with self._lock:
            self.running += 1
            self.overlapped |= self.running > 1
        try:
            self.started.setdefault(value, threading.Event()).set()
            gate = self.gate.get(value)
            if gate is not None:
                assert gate.wait(WAIT), "test never released the store call"
            if value in self.fail:
                raise OSError(f"disk full saving {value}")
            self.calls.append((project.root, volume, kind, value, classes, author))
            return Record(volume, kind, value)
        finally:
            with self._lock:
                self.running -= 1

    def values(self, root="p", volume="v1", kind="scribble") -> list[int]:
        return [c[3] for c in self.calls if c[:3] == (root, volume, kind)]


def state(value: int) -> np.ndarray:
    data = np.zeros(SHAPE, np.uint8)
    data[0, 0, 0] = value
    return data


@pytest.fixture
def store():
    return FakeStore()


@pytest.fixture
def saver(store):
    return AnnotationAutosaver(save=store)


PROJECT = FakeProject("p")


def prepare(saver, value, *, key="layer", background=False, project=PROJECT, volume="v1",
            kind="scribble", **kwargs):
    return saver.prepare(key, project, volume, kind, state(value), background=background,
                         **kwargs)


def in_thread(fn, *args) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def target():
        try:
            out["result"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def join(thread):
    thread.join(WAIT)
    assert not thread.is_alive()


# -- what is saved ---------------------------------------------------------------------
@pytest.mark.parametrize("background", [False, True])
@pytest.mark.parametrize("steps, saved", [
    # (value of the layer at each autosave) → values stored, in order
    ([0], []),                       # tracked empty layer, untouched: nothing
    ([0, 0, 0], []),
    ([3], [3]),                      # a change is saved once …
    ([3, 3, 3], [3]),                # … and not again while unchanged
    ([3, 5, 5, 3], [3, 5, 3]),       # every distinct change, undo included
    ([3, 0], [3, 0]),                # erasing everything is a change
])
def test_a_change_is_saved_once_and_nothing_when_unchanged(saver, store, steps, saved,
                                                           background):
    saver.track("layer", fingerprint(state(0)))
    for value in steps:
        job = prepare(saver, value, background=background)
        if isinstance(job, SaveJob):
            saver.finished(job, saver.run(job))
        else:
            assert job is Skip.UNCHANGED
    assert store.values() == saved
    assert not saver.in_flight("layer")


def test_the_job_is_a_snapshot_with_its_declarations(saver, store):
    data = state(2)
    job = saver.prepare("layer", PROJECT, "v1", "partial", data, classes=[1, 3],
                        slices={2: None}, author="ana")
    data[:] = 9  # editing on while the save runs does not change what is saved
    assert (job.seq, job.kind, job.classes, job.slices, job.author) == \
        (1, "partial", (1, 3), {2: None}, "ana")
    assert job.fingerprint == fingerprint(state(2), (1, 3), {2: None})
    assert saver.save(job) == Record("v1", "partial", 2)
    assert store.calls == [("p", "v1", "partial", 2, (1, 3), "ana")]
    assert saver.saved_fingerprint("layer") == job.fingerprint
    # a declaration alone is a change
    assert isinstance(saver.prepare("layer", PROJECT, "v1", "partial", state(2),
                                    classes=(1,)), SaveJob)


def test_track_keeps_what_is_known_and_mark_saved_replaces_it(saver):
    saver.track("layer", fingerprint(state(0)))
    saver.track("layer", fingerprint(state(4)))  # followed already: unchanged
    assert prepare(saver, 0) is Skip.UNCHANGED
    saver.mark_saved("layer", fingerprint(state(4)))  # a stored version put into the layer
    assert prepare(saver, 4) is Skip.UNCHANGED
    assert isinstance(prepare(saver, 0), SaveJob)
    saver.forget("layer")
    assert saver.saved_fingerprint("layer") is None
    assert isinstance(prepare(saver, 4), SaveJob)


# -- a change while a save is running --------------------------------------------------------
def test_a_change_while_a_save_is_in_flight_is_rescheduled_then_saved(saver, store):
    store.gate[3] = threading.Event()
    first = prepare(saver, 3, background=True)
    thread, out = in_thread(saver.run, first)
    assert store.started.setdefault(3, threading.Event()).wait(WAIT)  # first is in the store
    assert saver.in_flight("layer")
    assert prepare(saver, 5, background=True) is Skip.IN_FLIGHT    # caller reschedules
    store.gate[3].set()
    join(thread)
    saver.finished(first, out["result"])
    assert not saver.in_flight("layer")
    second = prepare(saver, 5, background=True)                   # the rescheduled try
    assert isinstance(second, SaveJob) and second.seq > first.seq
    saver.finished(second, saver.run(second))
    assert store.values() == [3, 5]
    assert prepare(saver, 5, background=True) is Skip.UNCHANGED


def test_a_synchronous_save_does_not_wait_for_the_one_in_flight(saver, store):
    background = prepare(saver, 3, background=True)
    flush = prepare(saver, 5)  # window closing: save now
    assert isinstance(flush, SaveJob) and flush.seq > background.seq
    assert saver.save(flush) == Record("v1", "scribble", 5)
    assert saver.in_flight("layer")  # the background job is still to report
    saver.finished(background, saver.run(background))  # older: dropped
    assert background.dropped and store.values() == [5]
    assert saver.saved_fingerprint("layer") == flush.fingerprint
    assert prepare(saver, 5, background=True) is Skip.UNCHANGED


# -- order: an older state never wins -------------------------------------------------------------
@pytest.mark.parametrize("order, stored, dropped", [
    # which job reaches the store first → values stored, in order; was the older dropped?
    ("older first", [3, 5], False),   # the older waits for nothing, the newer follows it
    ("newer first", [5], True),       # the older comes late: dropped, never overwrites
])
def test_an_older_job_finishing_late_never_overwrites_a_newer_one(saver, store, order,
                                                                   stored, dropped):
    older = prepare(saver, 3, background=True)
    newer = prepare(saver, 5)
    first, second = (older, newer) if order == "older first" else (newer, older)
    store.gate[int(first.data.max())] = release = threading.Event()
    thread1, out1 = in_thread(saver.run, first)
    assert store.started.setdefault(int(first.data.max()), threading.Event()).wait(WAIT)
    go = threading.Event()
    thread2, out2 = in_thread(lambda: (go.set(), saver.run(second))[1])
    assert go.wait(WAIT)
    release.set()  # the second waits on the save lock (one save at a time) until now
    join(thread1)
    join(thread2)
    results = {id(first): out1["result"], id(second): out2["result"]}
    assert store.values() == stored and not store.overlapped
    assert older.dropped is dropped and (results[id(older)] is None) is dropped
    assert results[id(newer)] == Record("v1", "scribble", 5)
    # whichever reports first, the newer state is what counts as saved
    for job in (newer, older) if order == "newer first" else (older, newer):
        saver.finished(job, results[id(job)])
    assert saver.saved_fingerprint("layer") == newer.fingerprint
    saver.finished(older, results[id(older)])  # reporting again changes nothing
    assert saver.saved_fingerprint("layer") == newer.fingerprint


def test_the_order_holds_in_a_real_project(tmp_path):
    case = tiny_case(0)
    paths = write_case(tmp_path / "src", case)
    with Project.create(tmp_path / "proj") as project:
        volume = project.add_volume(paths["image"]).name
        saver = AnnotationAutosaver()  # the real store call
        older_state = np.zeros(TINY_SHAPE, np.uint8)
        older_state[1, 2:5, 2:5] = 2
        newer_state = older_state.copy()
        newer_state[2, 6:9, 6:9] = 3
        older = saver.prepare("layer", project, volume, "scribble", older_state,
                              background=True)
        newer = saver.prepare("layer", project, volume, "scribble", newer_state)
        record = saver.save(newer)
        assert record.version == 1
        assert saver.run(older) is None and older.dropped  # late: dropped
        saver.finished(older, None)
        versions = project.annotation_versions(volume, "scribble")
        assert [v.version for v in versions] == [1]
        np.testing.assert_array_equal(project.annotation(volume, "scribble").data,
                                      newer_state)
        assert saver.prepare("layer", project, volume, "scribble", newer_state) \
            is Skip.UNCHANGED
        # the next change is a new version on top of the newer one
        newest = newer_state.copy()
        newest[0, 0, 0] = 2
        assert saver.save(saver.prepare("layer", project, volume, "scribble",
                                        newest)).version == 2


# -- failure ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("background", [False, True])
def test_a_failed_save_is_tried_again(saver, store, background):
    store.fail.add(3)
    job = prepare(saver, 3, background=background)
    with pytest.raises(OSError, match="disk full"):
        if background:
            try:
                saver.run(job)
            except OSError:
                saver.failed(job)  # what the executor's on_error does
                raise
        else:
            saver.save(job)
    assert not saver.in_flight("layer") and store.calls == []
    store.fail.clear()
    again = prepare(saver, 3, background=background)  # not "unchanged", not "in flight"
    assert isinstance(again, SaveJob)
    saver.finished(again, saver.run(again))
    assert store.values() == [3]
    assert prepare(saver, 3, background=background) is Skip.UNCHANGED


# -- keys ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("other", [
    dict(key="layer2", volume="v2"),                     # another volume's layer
    dict(key="layer2", kind="partial"),                  # another kind, same volume
    dict(key="layer2", project=FakeProject("q")),        # another project
])
def test_two_keys_do_not_interfere(saver, store, other):
    store.gate[3] = threading.Event()
    first = prepare(saver, 3, background=True)
    thread, out = in_thread(saver.run, first)
    assert store.started.setdefault(3, threading.Event()).wait(WAIT)
    second = prepare(saver, 4, background=True, **other)  # not blocked by layer's save
    assert isinstance(second, SaveJob) and second.seq > first.seq
    store.gate[3].set()
    join(thread)
    saver.finished(second, saver.run(second))
    assert not second.dropped and saver.in_flight("layer")
    assert not saver.in_flight(other["key"])
    saver.finished(first, out["result"])
    assert not first.dropped  # older, but another target: nothing newer committed for it
    assert [c[3] for c in store.calls] == [3, 4]
    assert saver.saved_fingerprint("layer") == first.fingerprint
    assert saver.saved_fingerprint("layer2") == second.fingerprint
    saver.forget("layer2")  # one layer removed: the other keeps its state
    assert prepare(saver, 3) is Skip.UNCHANGED


@pytest.mark.parametrize("report_older_first", [True, False])
def test_a_dropped_job_does_not_count_as_saved(saver, store, report_older_first):
    """Two keys on one target (a layer removed and added again): the older key's late job
    is dropped, and its state — not in the store — is saved again at the next try."""
    older = prepare(saver, 3, key="old layer", background=True)
    newer = prepare(saver, 5, key="new layer")
    results = {"newer": saver.run(newer), "older": saver.run(older)}
    assert older.dropped and results["older"] is None and store.values() == [5]
    reports = [(older, None), (newer, results["newer"])]
    for job, record in reports if report_older_first else reversed(reports):
        saver.finished(job, record)
    assert saver.saved_fingerprint("old layer") is None
    assert saver.saved_fingerprint("new layer") == newer.fingerprint
    again = prepare(saver, 3, key="old layer", background=True)
    assert isinstance(again, SaveJob)
    saver.finished(again, saver.run(again))
    assert store.values() == [5, 3]


def test_a_forgotten_key_is_not_recorded_by_its_late_save(saver, store):
    job = prepare(saver, 3, background=True)
    saver.forget("layer")  # the layer was removed while its save ran
    saver.finished(job, saver.run(job))
    assert store.values() == [3]  # saved in the store …
    assert saver.saved_fingerprint("layer") is None  # … but not followed any more
    renewed = prepare(saver, 3, background=True)  # a new layer with the same key
    assert isinstance(renewed, SaveJob)
