"""Background execution behind one small interface (allencell's injectable task executor).

Panels never start threads themselves: they hand a function to ``session.executor``.

* :class:`ThreadExecutor` — napari's thread workers (``napari.qt.threading.create_worker``):
  the function runs in a ``QThread``; ``on_item`` / ``on_done`` / ``on_error`` are called on
  the Qt main thread (queued signals), so they may touch widgets and layers.
* :class:`SynchronousExecutor` — runs the function inline and calls the callbacks before
  ``run``/``stream`` return: deterministic widget tests without waiting.

Heavy work (training) never runs in these threads: it runs in the engine's own process; a
thread only reads its event stream (blocked on a pipe, so it holds no GIL while waiting).

Qt's own thread pool: napari's workers run in ``QThreadPool.globalInstance()``, whose size
is the number of cores (2 here), and Qt uses the same pool for short internal jobs that the
main thread waits for — e.g. ``QImage`` format conversion while napari's activity
indicator (``QMovie`` of a GIF, scaled smoothly) plays during a training run's progress bar.
With the pool's threads held by our long tasks (the training event stream, a prediction),
that job queued behind them and the event loop stalled for up to 2 s (a native stack per
stall, ``benchmarks/gui_latency.py --native-stalls``: ``QImageReader::read → QImage::scaled →
convertToFormat → QSemaphore::acquire``); with the GIL held by the waiting main thread it
can even deadlock. :func:`ensure_pool_headroom` keeps :data:`POOL_HEADROOM` threads beyond
the cores free for Qt (threads are created on demand only).

Closing: a thread worker still running when the interpreter exits would abort the process
(PyQt deletes the worker's signal object under it: "wrapped C/C++ object of type
WorkerBaseSignals has been deleted", SIGABRT). :meth:`ThreadExecutor.shutdown` waits for
its tasks (bounded), then drops their callbacks; the WeakSeg widget calls it when the
viewer closes, and an ``atexit`` hook calls it for every executor still open (after the
closers registered with :func:`on_exit`, which stop training runs) before PyQt tears down.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from qtpy.QtCore import QEvent, QObject, Qt

Callback = Callable[[Any], None] | None

#: global QThreadPool threads beyond the core count, for Qt's internal jobs while our
#: workers hold threads (see the module docstring)
POOL_HEADROOM = 8


def ensure_pool_headroom() -> int:
    """Raise ``QThreadPool.globalInstance()``'s limit to at least the ideal thread count
    + :data:`POOL_HEADROOM` (never lowers it); returns the limit."""
    from qtpy.QtCore import QThread, QThreadPool

    pool = QThreadPool.globalInstance()
    wanted = QThread.idealThreadCount() + POOL_HEADROOM
    if pool.maxThreadCount() < wanted:
        pool.setMaxThreadCount(wanted)
    return pool.maxThreadCount()


class Task(Protocol):
    @property
    def done(self) -> bool: ...

    def quit(self) -> None: ...


class TaskExecutor(Protocol):
    def run(self, func: Callable[..., Any], *args, on_done: Callback = None,
            on_error: Callback = None, **kwargs) -> Task: ...

    def stream(self, func: Callable[..., Iterator[Any]], *args, on_item: Callback = None,
               on_done: Callback = None, on_error: Callback = None, **kwargs) -> Task: ...

    def wait(self, timeout: float = 30.0) -> bool: ...


class _FinishedTask:
    done = True

    def quit(self) -> None:
        pass


class SynchronousExecutor:
    """Runs tasks inline on the calling thread (tests). Exceptions go to ``on_error``; with
    no ``on_error`` they propagate, so a test never misses one."""

    def run(self, func, *args, on_done=None, on_error=None, **kwargs) -> Task:
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            if on_error is None:
                raise
            on_error(exc)
        else:
            if on_done is not None:
                on_done(result)
        return _FinishedTask()

    def stream(self, func, *args, on_item=None, on_done=None, on_error=None, **kwargs) -> Task:
        def consume():
            generator = func(*args, **kwargs)
            while True:
                try:
                    item = next(generator)
                except StopIteration as stop:
                    return stop.value
                if on_item is not None:
                    on_item(item)

        return self.run(consume, on_done=on_done, on_error=on_error)

    @property
    def busy(self) -> bool:
        return False

    def wait(self, timeout: float = 30.0) -> bool:
        return True


class _WorkerTask:
    def __init__(self, worker):
        self.worker = worker
        self._done = False
        #: set in the worker's thread when its ``run`` is over (a direct connection to
        #: ``finished``): waiting on it needs no Qt event loop
        self.ended = threading.Event()
        self.connections: list[tuple[Any, Callable]] = []

    @property
    def done(self) -> bool:
        return self._done or self.ended.is_set()

    def quit(self) -> None:
        if not self.done:
            self.worker.quit()

    def disconnect(self) -> None:
        for signal, slot in self.connections:
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):  # already gone or never connected
                pass
        self.connections.clear()


#: Seconds :func:`_shutdown_at_exit` waits for running tasks (each executor).
EXIT_TIMEOUT_S = 60.0
_EXECUTORS: weakref.WeakSet = weakref.WeakSet()
_EXIT_CLOSERS: list[Callable[[], None]] = []


def on_exit(callback: Callable[[], None]) -> None:
    """Call ``callback`` at interpreter exit, before the executors are shut down (stop
    long work there: a training run). Hold no strong reference to a widget in it."""
    _EXIT_CLOSERS.append(callback)


class ThreadExecutor:
    """napari thread workers; callbacks run on the Qt main thread."""

    def __init__(self):
        self._tasks: set[_WorkerTask] = set()
        self._closed = False
        _EXECUTORS.add(self)
        ensure_pool_headroom()

    @property
    def closed(self) -> bool:
        return self._closed

    def _callback(self, callback: Callable) -> Callable:
        """``callback`` unless the executor was shut down (its panels are going away)."""
        def call(*args):
            if not self._closed:
                callback(*args)

        return call

    def _start(self, func, args, kwargs, connect) -> Task:
        from napari.qt.threading import create_worker

        if self._closed:  # after shutdown: inline, nobody to call back
            return SynchronousExecutor().run(
                (lambda: list(func(*args, **kwargs))) if "yielded" in connect
                else (lambda: func(*args, **kwargs)), on_error=lambda exc: None)
        worker = create_worker(func, *args, _start_thread=False, _ignore_errors=True,
                               **kwargs)
        task = _WorkerTask(worker)
        self._tasks.add(task)

        def finished():
            task._done = True
            self._tasks.discard(task)

        for signal_name, callback in connect.items():
            if callback is not None:
                slot = self._callback(callback)
                signal = getattr(worker, signal_name)
                signal.connect(slot)
                task.connections.append((signal, slot))
        worker.finished.connect(task.ended.set, Qt.DirectConnection)
        worker.finished.connect(finished)
        task.connections.append((worker.finished, finished))
        worker.start()
        return task

    def run(self, func, *args, on_done=None, on_error=None, **kwargs) -> Task:
        return self._start(func, args, kwargs, {"returned": on_done, "errored": on_error})

    def stream(self, func, *args, on_item=None, on_done=None, on_error=None, **kwargs) -> Task:
        return self._start(func, args, kwargs,
                           {"yielded": on_item, "returned": on_done, "errored": on_error})

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def wait(self, timeout: float = 30.0) -> bool:
        """Block until the running tasks end (window closing: a thread still running at
        interpreter exit would abort the process). Needs no event loop. Returns whether
        they all ended."""
        from qtpy.QtCore import QThreadPool

        deadline = time.monotonic() + timeout
        for task in list(self._tasks):
            if not task.ended.wait(max(0.0, deadline - time.monotonic())):
                return False
        # ``ended`` is set inside the worker's last emits: let its ``run`` return too
        QThreadPool.globalInstance().waitForDone(
            int(1000 * min(1.0, max(0.05, deadline - time.monotonic()))))
        return True

    def shutdown(self, timeout: float = 30.0) -> bool:
        """The panels are going away: wait (bounded) for the running tasks, ask the ones
        still running to quit, then drop every callback (queued results are not delivered
        to deleted widgets). Later tasks run inline. Returns whether all tasks ended."""
        self._closed = True
        ended = self.wait(timeout)
        if not ended:
            for task in list(self._tasks):
                task.quit()  # a stream stops at its next item
            ended = self.wait(min(timeout, 5.0))
        for task in list(self._tasks):
            task.disconnect()
            if task.done:
                self._tasks.discard(task)
        return ended


@atexit.register
def _shutdown_at_exit() -> None:
    """Registered after PyQt's own exit hook, so it runs first: stop and join the tasks
    while their Qt objects still exist."""
    for closer in list(_EXIT_CLOSERS):
        try:
            closer()
        except Exception:
            pass
    for executor in list(_EXECUTORS):
        try:
            executor.shutdown(EXIT_TIMEOUT_S)
        except Exception:
            pass


__all__ = ["SynchronousExecutor", "Task", "TaskExecutor", "ThreadExecutor", "on_exit"]


class WindowCloseFilter(QObject):
    """Calls ``callback(event)`` when the window it is installed on receives its close
    event (panels save pending edits there); widgets already deleted are ignored."""

    def __init__(self, callback):
        super().__init__()
        self._callback = callback

    def eventFilter(self, obj, event):
        if event.type() == QEvent.Close:
            try:
                self._callback(event)
            except RuntimeError:  # widgets already deleted
                pass
        return False


def install_on_window(widget, event_filter: QObject) -> None:
    """Install ``event_filter`` on the top-level window holding ``widget`` (once shown)."""
    window = widget.window()
    if window is not None and window is not widget:
        window.installEventFilter(event_filter)
