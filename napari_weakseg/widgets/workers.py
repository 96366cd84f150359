"""Background execution behind one small interface (allencell's injectable task executor).

Panels never start threads themselves: they hand a function to ``session.executor``.

* :class:`ThreadExecutor` — napari's thread workers (``napari.qt.threading.create_worker``):
  the function runs in a ``QThread``; ``on_item`` / ``on_done`` / ``on_error`` are called on
  the Qt main thread (queued signals), so they may touch widgets and layers.
* :class:`SynchronousExecutor` — runs the function inline and calls the callbacks before
  ``run``/``stream`` return: deterministic widget tests without waiting.

Heavy work (training) never runs in these threads: it runs in the engine's own process; a
thread only reads its event stream (blocked on a pipe, so it holds no GIL while waiting).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from qtpy.QtCore import QEvent, QObject

Callback = Callable[[Any], None] | None


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

    @property
    def done(self) -> bool:
        return self._done

    def quit(self) -> None:
        if not self._done:
            self.worker.quit()


class ThreadExecutor:
    """napari thread workers; callbacks run on the Qt main thread."""

    def __init__(self):
        self._tasks: set[_WorkerTask] = set()

    def _start(self, func, args, kwargs, connect) -> Task:
        from napari.qt.threading import create_worker

        worker = create_worker(func, *args, _start_thread=False, _ignore_errors=True,
                               **kwargs)
        task = _WorkerTask(worker)
        self._tasks.add(task)

        def finished():
            task._done = True
            self._tasks.discard(task)

        for signal_name, callback in connect.items():
            if callback is not None:
                getattr(worker, signal_name).connect(callback)
        worker.finished.connect(finished)
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
        interpreter exit would abort the process). Returns whether they all ended."""
        from qtpy.QtCore import QThreadPool

        if not self._tasks:
            return True
        return QThreadPool.globalInstance().waitForDone(int(timeout * 1000))


__all__ = ["SynchronousExecutor", "Task", "TaskExecutor", "ThreadExecutor"]


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
