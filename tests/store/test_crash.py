"""Durability: writers killed with SIGKILL at chosen points, and two concurrent writers.

The kill test does not depend on timing: the writer reports each step of every write on a
pipe (``start``, then the stages of an atomic file write and of the manifest transaction,
then the committed version), and the parent kills it either at a stage chosen by a seeded
generator — the writer blocks there until killed — or right after it has reported ``k``
committed versions (the kill then lands somewhere in the next writes). The assertions are
about durability only: nothing reported committed is lost, nothing is corrupt, versions are
contiguous, an interrupted write leaves at most an orphan file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from napari_weakseg.store import Project
from tests.store.helpers import random_annotation, tiny_case, write_case

REPO = Path(__file__).resolve().parents[2]

# A writer: saves annotation versions (and now and then ground truth and a copied volume)
# in a loop, printing what it starts and what it committed. Content is a pure function of
# the seed in `note`. PAUSE = "STAGE:N": block (until killed) at the N-th time STAGE is
# reached; stages: "tmp" (a temporary file written, not renamed), "renamed" (the file under
# its final name, no manifest row), "uncommitted" (rows inserted, COMMIT not run),
# "committed" (COMMIT done, not yet reported).
WRITER = r"""
import contextlib, sys
from napari_weakseg.io import atomic
from napari_weakseg.store import Project, manifest
from tests.store.helpers import random_annotation
root, first, count, tag, image, pause = sys.argv[1:7]
first, count = int(first), int(count)
reached = {}

def stage(name):
    reached[name] = reached.get(name, 0) + 1
    if f"{name}:{reached[name]}" == pause:
        print(f"paused {name}", flush=True)
        sys.stdin.read()  # the parent kills us here (EOF only if it died)
        sys.exit(3)

def hook(function, name):
    def hooked(*args, **kwargs):
        stage(name)
        return function(*args, **kwargs)
    return hooked

atomic.fsync_file = hook(atomic.fsync_file, "tmp")      # before the rename
atomic.fsync_dir = hook(atomic.fsync_dir, "renamed")    # after the rename
real_transaction = manifest.write_transaction

@contextlib.contextmanager
def write_transaction(conn):
    with real_transaction(conn) as c:
        yield c
        stage("uncommitted")
    stage("committed")

manifest.write_transaction = write_transaction
project = Project.open(root)
volume = project.volume("tiny000")
print("ready", flush=True)
for seed in range(first, first + count):
    print(f"start annotation {seed}", flush=True)
    record = project.save_annotation(volume, "scribble", random_annotation(seed),
                                     author=tag, note=f"seed={seed}")
    print(f"annotation {record.version} {seed}", flush=True)
    if seed % 5 == 0:
        print(f"start gt {seed}", flush=True)
        gt = project.set_ground_truth(volume, random_annotation(seed, top=3),
                                      source=f"seed={seed}")
        print(f"gt {gt.version} {seed}", flush=True)
    if seed % 7 == 0:
        print(f"start volume {tag}-{seed}", flush=True)
        project.add_volume(image, copy=True, name=f"{tag}-{seed}")
        print(f"volume {tag}-{seed}", flush=True)
"""


def _start(root: Path, first: int, count: int, tag: str, image: Path,
           pause: str = "none") -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(first), str(count),
                             tag, str(image), pause], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env=env)


def _committed(lines: list[str]) -> dict[str, set]:
    out: dict[str, set] = {"annotation": set(), "gt": set(), "volume": set()}
    for line in lines:
        parts = line.split()
        if parts and parts[0] in out:
            out[parts[0]].add(tuple(parts[1:]))
    return out


def _check_consistent(root: Path) -> Project:
    """Every committed version is complete and readable; versions are contiguous."""
    project = Project.open(root)
    report = project.verify()
    assert report.ok, report
    volume = project.volume("tiny000")
    versions = project.annotation_versions(volume, "scribble")
    assert [v.version for v in versions] == list(range(1, len(versions) + 1))
    for record in versions:
        seed = int(record.note.split("=")[1])
        data = project.annotation(volume, "scribble", version=record.version).data
        assert np.array_equal(data, random_annotation(seed)), record
    for volume in project.volumes():
        assert project.read_image(volume).data.shape == (4, 40, 40)
    # every file not referenced by the manifest is an orphan, never a committed version
    referenced = {v.path for v in project.annotations(all_versions=True)}
    assert referenced.isdisjoint(report.orphans)
    return project


@pytest.fixture
def shared_project(tmp_path):
    paths = write_case(tmp_path / "src", tiny_case(0), labels=False)
    with Project.create(tmp_path / "proj") as project:
        project.add_volume(paths["image"])
    return tmp_path / "proj", paths["image"]


def _kill_schedule(seed: int = 20250509) -> list[tuple[str, int]]:
    """(pause, k): pause at a stage of some write, or (pause "none") kill after k commits.
    Each child's writes start: annotation, ground truth, annotation, volume copy, …"""
    rng = np.random.default_rng(seed)
    schedule = [(f"{stage}:{n}", 0) for stage in ("tmp", "renamed", "uncommitted", "committed")
                for n in sorted(rng.choice(np.arange(1, 5), size=2, replace=False))]
    schedule += [("none", int(k)) for k in rng.integers(1, 5, size=3)]
    rng.shuffle(schedule)
    return schedule


def _run_until_killed(child: subprocess.Popen, pause: str, k: int) -> tuple[list[str], str]:
    """Read the child's reports until it pauses (or has committed ``k`` annotation
    versions), SIGKILL it, and return all of its lines and the stage it was killed at."""
    watchdog = threading.Timer(60, child.kill)  # a hung child fails the test, not the run
    watchdog.start()
    lines, stage, commits = [], "", 0
    try:
        while True:
            line = child.stdout.readline()
            assert line, f"writer ended early: {child.stderr.read()}"
            lines.append(line.strip())
            if line.startswith("paused "):
                stage = line.split()[1]
                break
            if line.startswith("annotation "):
                commits += 1
                if pause == "none" and commits >= k:
                    break
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
    finally:
        watchdog.cancel()
    assert child.returncode == -signal.SIGKILL
    return lines + out.splitlines(), stage


def test_sigkill_at_chosen_points_never_loses_or_corrupts_a_version(shared_project):
    root, image = shared_project
    reported = {"annotation": set(), "gt": set(), "volume": set()}
    interrupted = []  # (stage, kind, key) of the write in flight at a staged kill
    minimum_commits = 0
    for index, (pause, k) in enumerate(_kill_schedule()):
        child = _start(root, first=1000 * (index + 1), count=500, tag=f"w{index}",
                       image=image, pause=pause)
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        lines, stage = _run_until_killed(child, pause, k)
        assert stage == pause.split(":")[0] if pause != "none" else stage == ""
        for kind, items in _committed(lines).items():
            reported[kind] |= items
        if stage:
            _, kind, key = next(line for line in reversed(lines) if line.startswith("start "))\
                .split()
            interrupted.append((stage, kind, key))
        minimum_commits += k

    # the seeded schedule interrupts every kind of write (annotation, ground truth, copy)
    assert {kind for _, kind, _ in interrupted} == {"annotation", "gt", "volume"}
    project = _check_consistent(root)
    volume = project.volume("tiny000")
    stored = {(str(v.version), v.note.split("=")[1])
              for v in project.annotation_versions(volume, "scribble")}
    # everything a writer reported as committed survived the kills
    assert reported["annotation"] <= stored
    assert len(stored) >= minimum_commits
    names = {v.name for v in project.volumes()}
    assert {n for (n,) in reported["volume"]} <= names
    gt_sources = {r[0] for r in project._query("SELECT source FROM ground_truth")}
    if reported["gt"]:
        assert max(int(v) for v, _ in reported["gt"]) <= project.ground_truth_record(volume).version
    if project.has_ground_truth(volume):
        seed = int(project.ground_truth_record(volume).source.split("=")[1])
        assert np.array_equal(project.ground_truth(volume), random_annotation(seed, top=3))
    # a write killed after its COMMIT is kept; one killed before is absent (no partial row)
    seeds = {seed for _, seed in stored}
    for stage, kind, key in interrupted:
        present = {"annotation": key in seeds, "gt": f"seed={key}" in gt_sources,
                   "volume": key in names}[kind]
        assert present == (stage == "committed"), (stage, kind, key)
    # writes killed between their file and their COMMIT left orphans, never committed files;
    # removing them leaves every version intact
    orphans = project.verify().orphans
    assert len(orphans) >= sum(stage in ("tmp", "renamed") for stage, _, _ in interrupted)
    assert sorted(project.remove_orphans(min_age_s=0)) == sorted(orphans)
    project.close()
    _check_consistent(root).close()
    print(f"{len(stored)} versions committed over {len(interrupted)} staged and "
          f"{len(_kill_schedule()) - len(interrupted)} counted kills, {len(orphans)} orphans")


def test_two_processes_write_one_project_concurrently(shared_project):
    root, image = shared_project
    count = 15
    children = [_start(root, first, count, tag, image)
                for first, tag in [(100, "gui"), (200, "cli")]]
    for child in children:
        assert child.stdout.readline().strip() == "ready"
    outputs = [child.communicate(input="", timeout=120) for child in children]
    for child, (out, err) in zip(children, outputs):
        assert child.returncode == 0, err
    project = _check_consistent(root)
    volume = project.volume("tiny000")
    versions = project.annotation_versions(volume, "scribble")
    assert len(versions) == 2 * count
    for tag, first in [("gui", 100), ("cli", 200)]:
        mine = [v for v in versions if v.author == tag]
        assert sorted(int(v.note.split("=")[1]) for v in mine) == list(range(first,
                                                                             first + count))
    gt_versions = [r for r in project._query("SELECT version FROM ground_truth")]
    assert sorted(r[0] for r in gt_versions) == list(range(1, len(gt_versions) + 1))
    assert len(project.volumes()) == 1 + 2 * 2  # seeds 105/112 and 203/210 add volumes
    project.close()
