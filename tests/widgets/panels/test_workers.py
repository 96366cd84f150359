"""The two task executors behave alike: results, streamed items and errors reach the
callbacks on the Qt main thread."""

from __future__ import annotations

import threading

import pytest

from napari_weakseg.widgets.workers import SynchronousExecutor, ThreadExecutor


def _square(x):
    return x * x


def _count(n):
    for i in range(n):
        yield i
    return "done"


def _boom():
    raise ValueError("boom")


@pytest.fixture(params=["sync", "thread"])
def executor(request, qapp):
    return SynchronousExecutor() if request.param == "sync" else ThreadExecutor()


def _settle(executor, qtbot, calls, expected):
    if isinstance(executor, ThreadExecutor):
        qtbot.waitUntil(lambda: len(calls) >= expected, timeout=60000)
        qtbot.waitUntil(lambda: not executor.busy, timeout=60000)


def test_run_returns_on_the_main_thread(executor, qtbot):
    calls = []
    executor.run(_square, 7, on_done=lambda v: calls.append((v, threading.current_thread())))
    _settle(executor, qtbot, calls, 1)
    assert calls == [(49, threading.main_thread())]


def test_stream_yields_in_order_then_returns(executor, qtbot):
    items, returned = [], []
    executor.stream(_count, 4, on_item=items.append, on_done=returned.append)
    _settle(executor, qtbot, returned, 1)
    assert items == [0, 1, 2, 3] and returned == ["done"]


def test_errors_go_to_on_error(executor, qtbot):
    errors = []
    executor.run(_boom, on_error=errors.append)
    _settle(executor, qtbot, errors, 1)
    assert [str(e) for e in errors] == ["boom"]
    assert executor.wait(5.0)


def test_synchronous_executor_raises_without_on_error():
    with pytest.raises(ValueError, match="boom"):
        SynchronousExecutor().run(_boom)
