"""``weakseg export``: exit codes, resume, shards (``--shard`` and ``torchrun``), tags."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from napari_weakseg.cli import main
from tests.inference.test_export import make_tiny_model, random_image, write_image

NAMES = ["patient001_frame01", "patient001_frame12", "patient002_frame01",
         "patient002_frame09", "single"]
CPU = ["--device", "cpu", "--threads", "1"]  # one thread: steady on a shared CPU


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("cli-model") / "model")


@pytest.fixture
def cohort(tmp_path) -> Path:
    for i, name in enumerate(NAMES):
        write_image(tmp_path / "in" / f"{name}.nii.gz", random_image(i, (2, 24, 20)))
    return tmp_path / "in"


def statuses(out: Path) -> dict[str, str]:
    with open(out / "measurements.csv", newline="") as handle:
        return {row["name"]: row["status"] for row in csv.DictReader(handle)}


def test_export_then_rerun_skips(model, cohort, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["export", str(model), str(cohort), "--out", str(out), *CPU,
            "--uncertainty", "--largest-component", "--fill-holes"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "5 exported, 0 already done, 0 failed of 5 volumes" in first
    assert set(statuses(out).values()) == {"ok"}
    assert len(list((out / "uncertainty").glob("*.nii.gz"))) == 5
    assert main(args) == 0
    assert "0 exported, 5 already done" in capsys.readouterr().out
    assert main(args + ["--force"]) == 0
    assert "5 exported, 0 already done" in capsys.readouterr().out


@pytest.mark.parametrize("bad_bytes, phrase", [(b"garbage", "not a readable NIfTI"),
                                               (b"", "not a readable NIfTI")])
def test_bad_file_gives_exit_code_1_and_the_rest_is_exported(model, cohort, tmp_path, capsys,
                                                            bad_bytes, phrase):
    (cohort / "broken.nii.gz").write_bytes(bad_bytes)
    assert main(["export", str(model), str(cohort), "--out", str(tmp_path / "out"),
                 *CPU]) == 1
    captured = capsys.readouterr()
    assert "failed broken" in captured.err and phrase in captured.err
    assert "1 volumes failed" in captured.err
    table = statuses(tmp_path / "out")
    assert table.pop("broken") == "failed" and set(table.values()) == {"ok"}


def test_shards_cover_the_cohort_once(model, cohort, tmp_path, capsys):
    out = tmp_path / "out"
    done = []
    for index in range(3):
        assert main(["export", str(model), str(cohort), "--out", str(out), *CPU,
                     "--shard", f"{index}/3"]) == 0
        done += [line.split()[2] for line in capsys.readouterr().out.splitlines()
                 if " exported " in line and line.startswith("[")]
    assert sorted(done) == sorted(NAMES)
    assert set(statuses(out).values()) == {"ok"}


@pytest.mark.parametrize("shard", ["3/3", "1", "x/2"])
def test_bad_shard_is_a_usage_error(model, cohort, tmp_path, capsys, shard):
    with pytest.raises(SystemExit) as stop:
        main(["export", str(model), str(cohort), "--out", str(tmp_path / "o"), "--shard", shard])
    assert stop.value.code == 2 and "shard" in capsys.readouterr().err


def test_project_tag_filter(model, tmp_path, capsys):
    from napari_weakseg.store import Project

    with Project.create(tmp_path / "project") as project:
        for i, split in enumerate(["train", "test", "test"]):
            path = write_image(tmp_path / f"v{i}.nii.gz", random_image(i, (2, 16, 16)))
            project.add_volume(path, tags={"split": split})
    out = tmp_path / "out"
    assert main(["export", str(model), str(tmp_path / "project"), "--out", str(out),
                 "--tag", "split=test", *CPU]) == 0
    assert statuses(out) == {"v1": "ok", "v2": "ok"}
    assert main(["export", str(model), str(tmp_path / "v0.nii.gz"), "--out", str(out),
                 "--tag", "split=test"]) == 1
    assert "no project was given" in capsys.readouterr().err


def test_console_entry_point(model, cohort, tmp_path):
    (cohort / "flat.nii.gz").write_bytes(b"")
    result = subprocess.run([sys.executable, "-m", "napari_weakseg", "export", str(model),
                             str(cohort), "--out", str(tmp_path / "out"), "--device", "cpu",
                             "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "5 exported, 0 already done, 1 failed of 6 volumes" in result.stdout


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun not installed")
def test_torchrun_ranks_share_the_cohort(model, cohort, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    out, logs = tmp_path / "out", tmp_path / "logs"
    # each rank's stdout to its own file: two ranks sharing one pipe interleave their lines
    result = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2",
                             "--log-dir", str(logs), "--redirects", "1", "-m",
                             "napari_weakseg", "export", str(model), str(cohort), "--out",
                             str(out), *CPU],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank_logs = sorted(logs.rglob("stdout.log"))
    assert len(rank_logs) == 2
    stdout = "\n".join(log.read_text() for log in rank_logs)
    assert "(shard 0/2 of a 5-volume cohort)" in stdout
    assert "(shard 1/2 of a 5-volume cohort)" in stdout
    exported = [line.split()[2] for line in stdout.splitlines()
                if line.startswith("[") and " exported " in line]
    assert sorted(exported) == sorted(NAMES)
    assert set(statuses(out).values()) == {"ok"}  # rank 0 wrote it after every rank was done
