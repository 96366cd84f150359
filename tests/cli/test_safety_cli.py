"""No command destroys a user's files: outputs never replace inputs or files the tool did not
write, names never escape their folder, and failures read as one line.

Each case records SHA-256 checksums of every file under the temporary folder before the
command and checks, after it, that nothing the user owned changed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from napari_weakseg.cli import main
from napari_weakseg.errors import OptionError, OutputError
from napari_weakseg.store import Project
from napari_weakseg.store.importers import (export_annotations, export_nnunet, export_wsl4mis,
                                            import_folder)
from napari_weakseg.synthetic import make_cohort, write_cohort


def snapshot(root: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every regular file under ``root`` (symlinks not followed)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def unchanged(before: dict[str, str], after: dict[str, str], ignore=()) -> list[str]:
    """Files of ``before`` that are gone or changed in ``after`` (``ignore``: prefixes)."""
    return [k for k, v in before.items()
            if not any(k.startswith(p) for p in ignore) and after.get(k) != v]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny project, its data and a 2-iteration model folder."""
    root = tmp_path_factory.mktemp("safety")
    write_cohort(root / "data", make_cohort(2, seed=5, shape=(3, 32, 32)))
    with Project.open_or_create(root / "project") as project:
        import_folder(project, root / "data", copy=False)
    code = main(["train", str(root / "project"), "--method", "pce", "--profile", "quick-cpu",
                 "--iterations", "2", "--size", "32", "--width", "4", "--batch-size", "2",
                 "--out", str(root / "model")])
    assert code == 0
    return root


def user_folder(root: Path) -> Path:
    folder = root / "thesis"
    folder.mkdir(exist_ok=True)
    (folder / "chapter1.tex").write_text("years of work")
    return folder


@pytest.mark.parametrize("target, force", [
    ("project", False),         # --out P deleted the project
    ("project", True),          # ... and --force never allows it
    ("thesis", False),          # a folder with the user's files
    ("thesis", True),
    ("file.txt", True),         # a file
    ("project/images", True),   # inside the project
])
def test_train_out_never_replaces_what_it_did_not_write(workspace, target, force, capsys):
    user_folder(workspace)
    (workspace / "file.txt").write_text("notes")
    before = snapshot(workspace)
    argv = ["train", str(workspace / "project"), "--method", "pce", "--profile", "quick-cpu",
            "--iterations", "1", "--size", "32", "--width", "4", "--out",
            str(workspace / target)] + (["--force"] if force else [])
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1 and "error:" in err and len(err.strip().splitlines()) == 1
    # nothing the user had changed; the refusal came before any run was started
    assert unchanged(before, snapshot(workspace)) == []
    with Project.open(workspace / "project") as project:
        assert len(project.runs()) == 1


def test_train_out_replaces_its_own_model_folder_only_with_force(workspace, capsys):
    model = workspace / "model"
    before = snapshot(model)
    argv = ["train", str(workspace / "project"), "--method", "pce", "--profile", "quick-cpu",
            "--iterations", "1", "--size", "32", "--width", "4", "--out", str(model)]
    assert main(argv) == 1
    assert "pass --force" in capsys.readouterr().err
    assert snapshot(model) == before
    copy = workspace / "model-copy"
    assert main(argv[:-1] + [str(copy)]) == 0
    assert main(argv[:-1] + [str(copy), "--force"]) == 0
    config = json.loads((copy / "config.json").read_text())
    assert config["training"]["iterations_done"] == 1
    assert not [p for p in workspace.iterdir() if p.name.startswith(".model-copy")]


def test_predict_never_overwrites_its_input(workspace, capsys):
    image = sorted((workspace / "data" / "images").glob("*.nii.gz"))[0]
    before = snapshot(workspace / "data")
    code = main(["predict", str(workspace / "model"), str(image), "--out", str(image.parent)])
    err = capsys.readouterr().err
    assert code == 1 and "would replace the input" in err
    assert snapshot(workspace / "data") == before
    # --force does not allow it either
    assert main(["predict", str(workspace / "model"), str(image), "--out", str(image.parent),
                 "--force"]) == 1
    assert snapshot(workspace / "data") == before


def test_predict_refuses_two_inputs_with_one_output_name(workspace, tmp_path, capsys):
    image = sorted((workspace / "data" / "images").glob("*.nii.gz"))[0]
    (tmp_path / "a").mkdir()
    other = tmp_path / "a" / image.name
    other.write_bytes(image.read_bytes())
    code = main(["predict", str(workspace / "model"), str(image), str(other), "--out",
                 str(tmp_path / "pred")])
    assert code == 1 and "same file name" in capsys.readouterr().err
    assert not (tmp_path / "pred").exists() or not any((tmp_path / "pred").iterdir())


def test_predict_replaces_its_own_outputs_but_not_foreign_files(workspace, tmp_path, capsys):
    image = sorted((workspace / "data" / "images").glob("*.nii.gz"))[0]
    out = tmp_path / "pred"
    argv = ["predict", str(workspace / "model"), str(image), "--out", str(out)]
    assert main(argv) == 0
    assert main(argv) == 0  # a rerun replaces what the tool wrote
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / image.name).write_bytes(b"someone else's segmentation")
    assert main(argv[:-1] + [str(foreign)]) == 1
    assert "was not written by weakseg" in capsys.readouterr().err
    assert (foreign / image.name).read_bytes() == b"someone else's segmentation"
    assert main(argv[:-1] + [str(foreign), "--force"]) == 0
    assert (foreign / image.name).read_bytes() != b"someone else's segmentation"


HOSTILE_NAMES = ["../../escaped", "/tmp/absolute-escape", "..", ".hidden", "a/b/../../../c"]


@pytest.mark.parametrize("exporter", ["annotations", "nnunet", "wsl4mis"])
def test_exporters_keep_hostile_volume_names_inside_the_output(tmp_path, exporter):
    write_cohort(tmp_path / "data", make_cohort(1, seed=1, shape=(2, 16, 16)))
    with Project.open_or_create(tmp_path / "project") as project:
        import_folder(project, tmp_path / "data", copy=False)
        record = project.volumes()[0]
        for name in HOSTILE_NAMES:
            try:
                added = project.add_volume(record.image_path, copy=True, name=name)
            except Exception:  # the store may refuse odd names itself; fine
                continue
            project.save_annotation(added, "scribble", np.ones(added.shape, np.uint8))
        project.save_annotation(record, "scribble", np.ones(record.shape, np.uint8))
        outside = tmp_path / "out"
        before = snapshot(tmp_path)
        if exporter == "annotations":
            written = export_annotations(project, outside, "scribble")
        elif exporter == "nnunet":
            export_nnunet(project, outside, kind="scribble")
            written = [p for p in outside.rglob("*.nii.gz")]
        else:
            written = export_wsl4mis(project, outside)
    real_out = os.path.realpath(outside)
    for path in written:
        assert os.path.realpath(path).startswith(real_out + os.sep)
    after = snapshot(tmp_path)
    assert unchanged(before, after, ignore=("project/project.sqlite",)) == []
    new = {k for k in set(after) - set(before) if not k.startswith("project/project.sqlite")}
    assert new and all(name.startswith("out" + os.sep) for name in new)
    assert not Path("/tmp/absolute-escape.nii.gz").exists()


def test_export_annotations_refuses_foreign_files_and_the_project_folder(tmp_path, capsys):
    write_cohort(tmp_path / "data", make_cohort(1, seed=1, shape=(2, 16, 16)))
    with Project.open_or_create(tmp_path / "project") as project:
        import_folder(project, tmp_path / "data", copy=False)
        record = project.volumes()[0]
        project.save_annotation(record, "scribble", np.ones(record.shape, np.uint8))
        name = record.name
    out = tmp_path / "mine"
    out.mkdir()
    (out / f"{name}.nii.gz").write_bytes(b"user data")
    assert main(["export-annotations", str(tmp_path / "project"), "--kind", "scribble",
                 "--out", str(out)]) == 1
    assert "not written by weakseg" in capsys.readouterr().err
    assert (out / f"{name}.nii.gz").read_bytes() == b"user data"
    before = snapshot(tmp_path / "project")
    assert main(["export-annotations", str(tmp_path / "project"), "--kind", "scribble",
                 "--out", str(tmp_path / "project" / "images")]) == 1
    assert "overlaps the project" in capsys.readouterr().err
    assert snapshot(tmp_path / "project") == before


@pytest.mark.parametrize("options, message", [
    (["--iterations", "-5"], "iterations"),
    (["--iterations", "0"], "iterations"),
    (["--size", "100"], "multiple of 16"),
    (["--batch-size", "0"], "batch_size"),
    (["--width", "0"], "base_width"),
    (["--lr", "-1"], "lr"),
    (["--lr", "nan"], "lr"),
    (["--minutes", "0"], "max_seconds"),
    (["--device", "gpu7"], "device"),
    (["--option", "no_such=1"], "no_such"),
    (["--option", "use_coarse_pos=\"yes\""], "use_coarse_pos"),
    (["--option", "novalue"], "KEY=VALUE"),
    (["--profile", "turbo"], "unknown profile"),
    (["--init", "/nonexistent/model"], "neither a model folder nor a zoo model"),
])
def test_bad_training_options_fail_fast_in_one_line(workspace, options, message, capsys):
    before = snapshot(workspace / "project")
    argv = ["train", str(workspace / "project"), "--method", "pce", "--profile", "quick-cpu",
            "--iterations", "1", "--size", "32", "--out", str(workspace / "never")]
    code = main(argv + options)
    err = capsys.readouterr().err
    assert code == 1, err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (workspace / "never").exists()
    assert unchanged(before, snapshot(workspace / "project"), ignore=("manifest",)) == []


def test_unknown_method_is_a_one_line_error(workspace, capsys):
    assert main(["train", str(workspace / "project"), "--method", "magic", "--out",
                 str(workspace / "never")]) == 1
    err = capsys.readouterr().err
    assert "unknown method 'magic'" in err and len(err.strip().splitlines()) == 1


def test_config_validate_is_table_driven_too():
    from napari_weakseg.training.config import profile

    profile("quick-cpu", method="effdnet", method_options={"lam": 0.5}).validate(4)
    with pytest.raises(OptionError, match="fadc_box"):
        profile("quick-cpu", method="effdnet",
                method_options={"fadc_box": "everywhere"}).validate(4)


def test_programming_errors_show_a_traceback_and_say_bug(monkeypatch, capsys):
    import napari_weakseg.cli.engine as engine

    def broken(args):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(engine, "run_evaluate", broken)
    code = main(["evaluate", "a", "b"])
    err = capsys.readouterr().err
    assert code == 70
    assert "Traceback" in err and "this is a bug" in err


@pytest.mark.parametrize("error, expected", [
    (OSError(errno.ENOSPC, "No space left on device", "/data/out.nii.gz"), "disk is full"),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/share/x"), "read-only"),
    (PermissionError(errno.EACCES, "Permission denied", "/root/x"), "permission denied"),
])
def test_disk_errors_are_one_line_naming_the_path(monkeypatch, capsys, error, expected):
    import napari_weakseg.cli.engine as engine

    def failing(args):
        raise error

    monkeypatch.setattr(engine, "run_evaluate", failing)
    assert main(["evaluate", "a", "b"]) == 1
    err = capsys.readouterr().err
    assert expected in err and error.filename in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_output_errors_are_weakseg_errors():
    from napari_weakseg.errors import WeakSegError

    assert issubclass(OutputError, WeakSegError) and issubclass(OptionError, WeakSegError)


@pytest.mark.parametrize("change, message", [
    ({"network": None}, "network"),
    ({"classes": ["background", "LV"]}, "classes"),
])
def test_bad_init_model_is_refused_before_the_worker_starts(workspace, tmp_path, change,
                                                             message, capsys):
    parent = tmp_path / "parent"
    parent.mkdir()
    config = json.loads((workspace / "model" / "config.json").read_text())
    config.update(change)
    (parent / "config.json").write_text(json.dumps(config))
    (parent / "weights.pt").write_bytes((workspace / "model" / "weights.pt").read_bytes())
    code = main(["train", str(workspace / "project"), "--method", "pce", "--iterations", "1",
                 "--init", str(parent), "--out", str(tmp_path / "never")])
    err = capsys.readouterr().err
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "never").exists()


def test_without_method_train_uses_the_one_that_learns_every_kind(workspace, tmp_path, capsys):
    code = main(["train", str(workspace / "project"), "--profile", "quick-cpu", "--iterations",
                 "1", "--size", "32", "--width", "4", "--batch-size", "2", "--out",
                 str(tmp_path / "auto")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "method: effdnet" in captured.err  # the project holds scribbles only
    assert json.loads((tmp_path / "auto" / "config.json").read_text())["method"] == "effdnet"
