"""A project's runs: a run whose owner died is reported ``interrupted`` and resumes; a run
stopped by its time budget stays resumable after the project is reopened; ``weakseg train
--resume RUN`` needs no ``--method``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from napari_weakseg.cli import main
from napari_weakseg.errors import OptionError, ProjectError
from napari_weakseg.store import Project
from napari_weakseg.training import project_runs
from napari_weakseg.training.events import Finished
from napari_weakseg.training.project_runs import (HEARTBEAT_TIMEOUT_S, OWNER_FILE, RunHandle,
                                                  finalise_run, find_run, list_runs,
                                                  resumable_run, resume_run, run_status)


@pytest.fixture
def project(tmp_path):
    with Project.create(tmp_path / "project") as project:
        yield project


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _run(project, name="20240101-000000-pce", status="running", checkpoint=True,
         owner: dict | None = None, method="pce"):
    run_dir = project.root / "runs" / name
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(
        {"config": {"method": method, "iterations": 50}, "data": {}}))
    if checkpoint:
        (run_dir / "checkpoints" / "last.pt").write_bytes(b"checkpoint")
    record = project.create_run(method, {}, out_dir=run_dir)
    project.update_run(record.id, status=status)
    if owner is not None:
        (run_dir / OWNER_FILE).write_text(json.dumps(owner))
    return project.run(record.id), run_dir


def _owner(pid, host=None, heartbeat=None, worker_pid=None):
    return {"pid": pid, "host": host or socket.gethostname(), "worker_pid": worker_pid,
            "heartbeat": time.time() if heartbeat is None else heartbeat}


def test_a_running_run_whose_owner_died_is_interrupted_and_resumable(project):
    record, run_dir = _run(project, owner=_owner(_dead_pid(), worker_pid=_dead_pid()))
    found = resumable_run(project)  # old code: None, the run stayed "running" forever
    assert found is not None and found.id == record.id and found.status == "interrupted"
    stored = project.run(record.id)  # recorded in the store, with one line saying why
    assert stored.status == "failed" and stored.error.startswith("interrupted:")
    assert "is gone" in stored.error and "\n" not in stored.error
    assert [r.status for r in list_runs(project)] == ["interrupted"]
    assert run_status(stored) == "interrupted"


def test_a_run_whose_owner_lives_is_running_and_not_resumed_twice(project):
    record, run_dir = _run(project, owner=_owner(os.getpid()))
    assert resumable_run(project) is None
    assert [r.status for r in list_runs(project)] == ["running"]
    with pytest.raises(ProjectError, match="still going on"):
        resume_run(project, run_dir)
    assert project.run(record.id).status == "running"


def test_a_live_owner_whose_training_process_ended_long_ago_is_interrupted(project):
    old = time.time() - HEARTBEAT_TIMEOUT_S - 10  # its training ended; no outcome recorded
    _run(project, owner=_owner(os.getpid(), heartbeat=old, worker_pid=_dead_pid()))
    assert resumable_run(project).status == "interrupted"


@pytest.mark.parametrize("age, expected", [(5, "running"), (HEARTBEAT_TIMEOUT_S + 5,
                                                             "interrupted")])
def test_an_owner_on_another_host_is_judged_by_its_heartbeat(project, age, expected):
    _run(project, owner=_owner(1, host="another-host.example", heartbeat=time.time() - age))
    assert [r.status for r in list_runs(project)] == [expected]


def test_a_running_run_without_owner_record_times_out(project):
    record, run_dir = _run(project)
    assert [r.status for r in list_runs(project)] == ["running"]  # its folder just changed
    old = time.time() - HEARTBEAT_TIMEOUT_S - 10
    for path in run_dir.iterdir():
        os.utime(path, (old, old))
    assert [r.status for r in list_runs(project)] == ["interrupted"]


def test_an_interrupted_run_without_checkpoint_is_not_offered(project):
    record, _ = _run(project, checkpoint=False, owner=_owner(_dead_pid()))
    assert resumable_run(project) is None
    assert "no checkpoint" in project.run(record.id).error


def _fake_model(tmp_path) -> Path:
    model = tmp_path / "model-out"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"training": {}}))
    return model


class _NoRun:
    def events(self):
        return iter(())


def test_a_budget_stopped_run_stays_resumable_after_reopening(project, tmp_path):
    record, run_dir = _run(project, status="running", owner=_owner(os.getpid()))
    handle = RunHandle(_NoRun(), record.id, run_dir, run_dir.name, 50, 0, "pce")
    outcome = finalise_run(project.root, handle,
                           Finished("budget", 20, str(_fake_model(tmp_path)), 0.5, 60.0))
    assert outcome.status == "budget" and outcome.resumable and outcome.model_path
    with Project.open(project.root) as reopened:  # old code: not offered any more
        found = resumable_run(reopened)
        assert found is not None and found.id == record.id and found.status == "budget"
        assert reopened.run(record.id).status == "completed"  # it has a model


def test_a_completed_run_is_not_resumable(project, tmp_path):
    record, run_dir = _run(project, owner=_owner(os.getpid()))
    handle = RunHandle(_NoRun(), record.id, run_dir, run_dir.name, 50, 0, "pce")
    finalise_run(project.root, handle,
                 Finished("completed", 50, str(_fake_model(tmp_path)), 0.5, 60.0))
    assert resumable_run(project) is None


def test_find_run_by_folder_name_id_or_newest(project):
    first, first_dir = _run(project, "a-pce", status="cancelled")
    second, second_dir = _run(project, "b-pce", status="cancelled")
    assert find_run(project, "a-pce") == first_dir
    assert find_run(project, str(first.id)) == first_dir
    assert find_run(project, str(first_dir)) == first_dir
    assert find_run(project, None) == second_dir  # the newest resumable run
    with pytest.raises(ProjectError, match="no such run.*resumable: b-pce, a-pce"):
        find_run(project, "nope")


def test_resume_refuses_another_method(project):
    _, run_dir = _run(project, status="cancelled", method="effdnet")
    with pytest.raises(OptionError, match="trains effdnet"):
        resume_run(project, run_dir, method="pce")


def test_cli_resume_needs_no_method_and_explains_in_one_line(project, tmp_path, capsys):
    project.close()
    code = main(["train", str(project.root), "--resume", "nope", "--out",
                 str(tmp_path / "model")])
    err = capsys.readouterr().err
    assert code == 1 and "--method" not in err  # old code: argparse demanded --method
    assert "nope: no such run folder" in err and len(err.strip().splitlines()) == 1
    from napari_weakseg.store import Project

    Project.create(tmp_path / "empty").close()
    code = main(["train", str(tmp_path / "empty"), "--out", str(tmp_path / "model")])
    assert code == 1 and "--method is required" in capsys.readouterr().err


# -- the real thing: kill `weakseg train`, find the run interrupted, resume it by name ----
_CLI = "import sys; from napari_weakseg.cli import main; sys.exit(main(sys.argv[1:]))"


def kill_cli_mid_run(project_dir: Path, out: Path, *extra: str) -> Path:
    """Start ``weakseg train`` in a process, SIGKILL it at its first progress line, wait
    for the orphaned training process to stop; → the run folder."""
    import psutil

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = subprocess.Popen(
        [sys.executable, "-c", _CLI, "train", str(project_dir), "--method", "pce",
         "--profile", "quick-cpu", "--iterations", "100000", "--size", "32", "--width", "4",
         "--batch-size", "2", "--device", "cpu", "--out", str(out), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    try:
        for line in cli.stdout:
            lines.append(line)
            if line.startswith("["):  # a progress line: the run is going on
                break
        else:
            raise AssertionError("no progress:\n" + "".join(lines))
        (run_dir,) = (project_dir / "runs").iterdir()
        owner = json.loads((run_dir / OWNER_FILE).read_text())
        assert owner["pid"] == cli.pid
        cli.send_signal(signal.SIGKILL)
        cli.wait(30)
    finally:
        if cli.poll() is None:
            cli.kill()
        cli.stdout.close()
    try:  # the orphan stops by itself after the current iteration, with a checkpoint
        psutil.Process(owner["worker_pid"]).wait(60)
    except psutil.NoSuchProcess:
        pass
    return run_dir


@pytest.fixture
def tiny_project(tmp_path):
    from napari_weakseg.store.importers import import_folder
    from napari_weakseg.synthetic import make_cohort, write_cohort

    write_cohort(tmp_path / "data", make_cohort(2, seed=3, shape=(3, 32, 32)))
    with Project.create(tmp_path / "project") as project:
        import_folder(project, tmp_path / "data")
        project.set_tags(project.volumes()[-1], split="val")
    return tmp_path / "project"


def test_killed_cli_run_is_interrupted_then_resumed_by_name_without_method(
        tiny_project, tmp_path, capsys):
    run_dir = kill_cli_mid_run(tiny_project, tmp_path / "model", "--minutes", "0.1")
    assert (run_dir / "checkpoints" / "last.pt").exists()
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert events[-1]["type"] == "finished" and events[-1]["status"] == "cancelled"
    stopped_at = events[-1]["iteration"]
    with Project.open(tiny_project) as project:
        (run,) = list_runs(project)
        assert run.status == "interrupted"
        assert project.run(run.id).error.startswith("interrupted: the process that ran it")

    code = main(["train", str(tiny_project), "--resume", run_dir.name,
                 "--out", str(tmp_path / "model")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"resuming pce run {run_dir}" in out
    assert f"iterations {stopped_at}→100000" in out
    assert "budget at iteration" in out  # its 6-second budget ran out
    assert (tmp_path / "model" / "config.json").exists()
    with Project.open(tiny_project) as project:  # reopened: still resumable
        found = resumable_run(project)
        assert found is not None and Path(found.out_dir) == run_dir
        assert found.status == "budget"
        assert project_runs.read_owner(run_dir)["pid"] == os.getpid()
