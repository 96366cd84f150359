"""Durability: writers killed with SIGKILL at random moments, and two concurrent writers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_weakseg.store import Project
from tests.store.helpers import random_annotation, tiny_case, write_case

REPO = Path(__file__).resolve().parents[2]

# A writer: saves annotation versions (and now and then ground truth and a copied volume)
# in a loop, printing what it committed. Content is a pure function of the seed in `note`.
WRITER = r"""
import sys
from napari_weakseg.store import Project
from tests.store.helpers import random_annotation
root, first, count, tag, image = sys.argv[1:6]
first, count = int(first), int(count)
project = Project.open(root)
volume = project.volume("tiny000")
print("ready", flush=True)
for seed in range(first, first + count):
    record = project.save_annotation(volume, "scribble", random_annotation(seed),
                                     author=tag, note=f"seed={seed}")
    print(f"annotation {record.version} {seed}", flush=True)
    if seed % 5 == 0:
        gt = project.set_ground_truth(volume, random_annotation(seed, top=3),
                                      source=f"seed={seed}")
        print(f"gt {gt.version} {seed}", flush=True)
    if seed % 7 == 0:
        project.add_volume(image, copy=True, name=f"{tag}-{seed}")
        print(f"volume {tag}-{seed}", flush=True)
"""


def _start(root: Path, first: int, count: int, tag: str, image: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(first), str(count),
                             tag, str(image)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, env=env)


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


def test_sigkill_at_random_moments_never_loses_or_corrupts_a_version(shared_project):
    root, image = shared_project
    rng = np.random.default_rng(20250509)
    reported = {"annotation": set(), "gt": set(), "volume": set()}
    kills = 20
    for k in range(kills):
        child = _start(root, first=1000 * (k + 1), count=500, tag=f"w{k}", image=image)
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        time.sleep(rng.uniform(0.0, 0.25))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        assert child.returncode == -signal.SIGKILL
        for kind, items in _committed(out.splitlines()).items():
            reported[kind] |= items
    project = _check_consistent(root)
    volume = project.volume("tiny000")
    # everything a writer reported as committed survived the kills
    stored = {(str(v.version), v.note.split("=")[1])
              for v in project.annotation_versions(volume, "scribble")}
    assert reported["annotation"] <= stored
    assert len(stored) >= kills // 2  # the kills did land between saves, not only at start
    if reported["gt"]:
        assert max(int(v) for v, _ in reported["gt"]) <= project.ground_truth_record(volume).version
    if project.has_ground_truth(volume):
        seed = int(project.ground_truth_record(volume).source.split("=")[1])
        assert np.array_equal(project.ground_truth(volume), random_annotation(seed, top=3))
    names = {v.name for v in project.volumes()}
    assert {n for (n,) in reported["volume"]} <= names
    orphans = project.verify().orphans
    print(f"{len(stored)} versions committed over {kills} kills, {len(orphans)} orphan files")
    project.close()


def test_two_processes_write_one_project_concurrently(shared_project):
    root, image = shared_project
    count = 15
    children = [_start(root, first, count, tag, image)
                for first, tag in [(100, "gui"), (200, "cli")]]
    for child in children:
        assert child.stdout.readline().strip() == "ready"
    outputs = [child.communicate(timeout=120) for child in children]
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
