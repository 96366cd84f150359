"""Qt's global thread pool keeps room for Qt's own jobs while our workers hold threads:
a smooth QImage scaling on the main thread (what napari's activity GIF does every frame
during a training run) must not wait for — or deadlock with — our long tasks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import threading
    from qtpy.QtCore import QRunnable, QSize, Qt, QThread, QThreadPool
    from qtpy.QtGui import QImage
    from qtpy.QtWidgets import QApplication

    from napari_weakseg.widgets.workers import ThreadExecutor

    app = QApplication([])
    ThreadExecutor()  # what every WeakSeg session creates first
    release = threading.Event()

    class Held(QRunnable):  # a long task of ours: the training event stream, a prediction
        def run(self):
            release.wait()

    pool = QThreadPool.globalInstance()
    for _ in range(QThread.idealThreadCount()):
        pool.start(Held())
    image = QImage(600, 600, QImage.Format_Indexed8)
    image.setColorCount(256)
    image.fill(3)
    image.scaled(QSize(18, 18), Qt.IgnoreAspectRatio, Qt.SmoothTransformation)
    print("scaled", pool.maxThreadCount(), flush=True)
    release.set()
    pool.waitForDone()
""")


def test_qt_image_jobs_never_wait_behind_our_workers():
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    # without the headroom the scaling deadlocks (the main thread holds the GIL while it
    # waits for pool threads that our tasks hold): the timeout only detects that hang
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    line = next(l for l in done.stdout.splitlines() if l.startswith("scaled"))
    from qtpy.QtCore import QThread

    from napari_weakseg.widgets.workers import POOL_HEADROOM

    assert int(line.split()[1]) >= QThread.idealThreadCount() + POOL_HEADROOM
