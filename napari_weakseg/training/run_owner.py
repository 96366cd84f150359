"""Who owns a run: the process that starts or resumes it (the CLI or napari) reads the
training process's events and records the outcome in the store. It writes
``RUN_DIR/owner.json`` — its pid and host, the training process's pid, and a heartbeat
refreshed every :data:`HEARTBEAT_INTERVAL_S` seconds while the training process lives
(:class:`Heartbeat`). :func:`owner_state` tells whether a ``running`` run's owner (or its
training process) may still be going on: on the owner's host from the processes, elsewhere
from the heartbeat's age (:data:`HEARTBEAT_TIMEOUT_S`). :func:`lower_priority` lowers the
training process's CPU priority. How a run whose owner is gone is reported and recorded:
:mod:`.project_runs`.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

#: The run-folder file naming the process that owns a run (see the module docstring).
OWNER_FILE = "owner.json"
#: Seconds between two heartbeats of a run's owner.
HEARTBEAT_INTERVAL_S = 10.0
#: A ``running`` run whose owner is on another host (or cannot be checked) and whose
#: heartbeat is older than this is reported as ``interrupted``.
HEARTBEAT_TIMEOUT_S = 120.0


def lower_priority(pid: int, increment: int) -> bool:
    """Lower a child process's CPU priority (POSIX; a no-op elsewhere)."""
    if not hasattr(os, "setpriority"):
        return False
    try:
        current = os.getpriority(os.PRIO_PROCESS, pid)
        os.setpriority(os.PRIO_PROCESS, pid, min(19, current + increment))
        return True
    except OSError:
        return False


def _hostname() -> str:
    return socket.gethostname()


def _process_started(pid: int | None) -> float | None:
    """The start time of process ``pid`` (to tell it from a later process that reuses the
    pid), or ``None`` when it cannot be read."""
    if not pid:
        return None
    try:
        import psutil

        return float(psutil.Process(int(pid)).create_time())
    except Exception:
        return None


def process_alive(pid: int | None, started: float | None = None) -> bool | None:
    """Whether process ``pid`` (started at ``started``, when known) still runs on this host:
    ``False`` for no such process, a zombie, or another process that reuses the pid;
    ``None`` when it cannot be told."""
    if not pid:
        return False
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            process = psutil.Process(int(pid))
            if process.status() == psutil.STATUS_ZOMBIE:
                return False
            if started is not None and abs(process.create_time() - float(started)) > 1.0:
                return False
            return True
        except psutil.NoSuchProcess:
            return False
        except Exception:  # AccessDenied and the like: it exists
            return True
    if os.name == "nt":  # os.kill(pid, 0) would terminate it on Windows
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return None
    return True


def _write_json_atomic(path: Path, data: dict) -> None:
    from ..io.atomic import write_json_atomic

    write_json_atomic(path, data)


def read_owner(run_dir: str | os.PathLike) -> dict | None:
    """The run folder's owner record (``pid``, ``host``, ``worker_pid``, ``heartbeat``…),
    or ``None``."""
    try:
        data = json.loads((Path(run_dir) / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Heartbeat:
    """This process owns the run in ``run_dir``: writes ``owner.json`` now and refreshes its
    heartbeat every ``interval`` seconds (a daemon thread) until :meth:`stop`, or until the
    training ``process`` has ended (then the owner is expected to record the outcome at once;
    one that does not becomes ``interrupted`` after :data:`HEARTBEAT_TIMEOUT_S`)."""

    def __init__(self, run_dir: str | os.PathLike, process=None,
                 interval: float = HEARTBEAT_INTERVAL_S):
        self.path = Path(run_dir) / OWNER_FILE
        self.process = process
        self.interval = interval
        pid = os.getpid()
        worker_pid = getattr(process, "pid", None)
        self.info = {"pid": pid, "host": _hostname(), "pid_started": _process_started(pid),
                     "worker_pid": worker_pid, "worker_started": _process_started(worker_pid),
                     "started": time.time()}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last = 0.0
        self.beat(force=True)
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat {self.path.parent}",
                                        daemon=True)
        self._thread.start()

    def beat(self, force: bool = False) -> None:
        """Refresh the heartbeat (at most once a second unless ``force``)."""
        now = time.time()
        with self._lock:
            if self._stop.is_set() or (not force and now - self._last < 1.0):
                return
            self._last = now
            try:
                _write_json_atomic(self.path, {**self.info, "heartbeat": now})
            except OSError:  # the run folder went away: nothing to keep fresh
                pass

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            process = self.process
            if process is not None and getattr(process, "poll", None) and \
                    process.poll() is not None:
                return
            self.beat(force=True)

    def stop(self) -> None:
        self._stop.set()


def owner_state(record, now: float | None = None) -> tuple[bool, str]:
    """``(alive, why)`` for a ``running`` store row: whether its owner (or its training
    process) may still be going on, and a phrase that says why (for messages)."""
    now = time.time() if now is None else now
    run_dir = Path(record.out_dir) if record.out_dir else None
    owner = read_owner(run_dir) if run_dir is not None else None
    if owner is None:  # a run started before owners were recorded, or a half-started one
        stamps = []
        if run_dir is not None:
            for name in ("events.jsonl", "worker.log", "run.json"):
                try:
                    stamps.append((run_dir / name).stat().st_mtime)
                except OSError:
                    pass
        last = max(stamps, default=None)
        if last is not None and now - last < HEARTBEAT_TIMEOUT_S:
            return True, f"its folder changed {now - last:.0f} s ago"
        return False, ("no record of the process that ran it and no activity for "
                       f"{HEARTBEAT_TIMEOUT_S:.0f} s")
    age = now - float(owner.get("heartbeat") or 0.0)
    pid, host = owner.get("pid"), owner.get("host")
    fresh = age < HEARTBEAT_TIMEOUT_S
    if host == _hostname():
        worker = process_alive(owner.get("worker_pid"), owner.get("worker_started"))
        leader = process_alive(pid, owner.get("pid_started"))
        if worker is not False:
            if worker is None and not fresh:
                return False, f"no heartbeat for {age:.0f} s"
            return True, f"training process {owner.get('worker_pid')} is running"
        if leader is False:
            return False, f"the process that ran it (pid {pid} on {host}) is gone"
        if not fresh:
            return False, (f"the training process ended and pid {pid} recorded no outcome "
                           f"for {age:.0f} s")
        return True, f"pid {pid} on {host} is recording its outcome"
    if fresh:
        return True, f"pid {pid} on {host} sent a heartbeat {age:.0f} s ago"
    return False, f"no heartbeat from pid {pid} on {host} for {age:.0f} s"
