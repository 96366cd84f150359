"""``weakseg init|add|import|list|annotations|simulate|export-annotations``."""

from __future__ import annotations

import numpy as np
import pytest

from napari_weakseg.cli import main
from napari_weakseg.io import read_labels
from napari_weakseg.store import Project
from napari_weakseg.synthetic import make_cohort, write_cohort
from tests.store.helpers import TINY_SHAPE, TINY_SPACING, tiny_case, write_case


@pytest.fixture
def cohort(tmp_path):
    cases = make_cohort(1, seed=2, shape=TINY_SHAPE, spacing=TINY_SPACING)
    return write_cohort(tmp_path / "cohort", cases), cases


def run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_init_add_list(tmp_path, capsys):
    code, out = run(capsys, "init", tmp_path / "p", "--classes", "background", "liver")
    assert code == 0 and "background, liver" in out
    code, out = run(capsys, "init", tmp_path / "p")
    assert code == 1 and "already exists" in out
    paths = write_case(tmp_path / "src", tiny_case(0))
    Project.create(tmp_path / "q").close()
    code, out = run(capsys, "add", tmp_path / "q", paths["image"], "--tag", "dataset=syn",
                    "--split", "val", "--ground-truth", paths["labels"], "--reference")
    assert code == 0 and "referenced" in out
    code, out = run(capsys, "list", tmp_path / "q", "--split", "val", "--verify")
    assert code == 0 and "dataset=syn split=val" in out and "gt" in out and "image ok" in out
    code, out = run(capsys, "add", tmp_path / "q", tmp_path / "missing.nii.gz")
    assert code == 1 and "missing.nii.gz: file does not exist" in out
    code, out = run(capsys, "list", tmp_path / "nothing")
    assert code == 1 and "not a napari-weakseg project" in out


def test_import_simulate_annotations_export(tmp_path, capsys, cohort):
    folder, cases = cohort
    project = tmp_path / "p"
    code, out = run(capsys, "import", project, folder, "--tag", "dataset=syn")
    assert code == 0 and "created project" in out and "2 volumes added" in out
    code, out = run(capsys, "import", project, folder)
    assert code == 0 and "2 already present" in out
    for kind, extra in [("coarse_pos", []), ("coarse_neg", ["--radius-mm", "8"]),
                        ("partial", ["--classes", "LV", "MYO"]),
                        ("sparse", ["--every", "2", "--slice-classes", "2"]),
                        ("scribble", ["--seed", "3", "--strategy", "sim"])]:
        code, out = run(capsys, "simulate", project, "--kind", kind, *extra)
        assert code == 0 and "for 2 volumes" in out, out
    name = cases[0].name
    code, out = run(capsys, "annotations", project, name)
    assert code == 0
    for text in ("coarse_pos/default v1", "partial/default v1", "classes=[2, 3]",
                 "sparse/default v1", "slices=", "scribble/sim v1", "scribble/default v1"):
        assert text in out
    code, out = run(capsys, "annotations", project, name, "--kind", "scribble", "--restore", "1")
    assert code == 0 and "as version 2" in out
    code, out = run(capsys, "annotations", project, name, "--kind", "scribble", "--restore", "7")
    assert code == 1 and "no version 7" in out
    code, out = run(capsys, "export-annotations", project, "--kind", "scribble", "--out",
                    tmp_path / "ex", "--encoding", "wsl4mis")
    assert code == 0 and "wrote 2" in out
    exported = read_labels(tmp_path / "ex" / f"{name}.nii.gz").data
    assert np.array_equal(exported, read_labels(folder / "scribbles" / f"{name}.nii.gz").data)
    code, out = run(capsys, "export-annotations", project, "--kind", "coarse_neg", "--out",
                    tmp_path / "ex2", "--encoding", "wsl4mis")
    assert code == 1 and "WSL4MIS" in out
    code, out = run(capsys, "list", project, "--tag", "dataset=syn")
    assert code == 0 and "coarse_neg v1" in out and "scribble v2" in out


def test_simulate_partial_needs_classes(tmp_path, capsys, cohort):
    folder, _ = cohort
    run(capsys, "import", tmp_path / "p", folder)
    code, out = run(capsys, "simulate", tmp_path / "p", "--kind", "partial")
    assert code == 2 and "--classes" in out


def test_import_of_the_real_acdc_folder_is_one_command(tmp_path, capsys, acdc_dir):
    # a lean check on a copy of two volumes (the full import is tested in tests/store)
    import json
    import shutil

    src = tmp_path / "acdc"
    names = json.loads((acdc_dir / "splits.json").read_text())["val"][:2]
    for sub in ("images", "labels", "scribbles"):
        (src / sub).mkdir(parents=True)
        for name in names:
            shutil.copy(acdc_dir / sub / f"{name}.nii.gz", src / sub)
    (src / "splits.json").write_text(json.dumps({"train": [], "val": names}))
    code, out = run(capsys, "import", tmp_path / "p", src)
    assert code == 0 and "import (acdc)" in out and "2 annotations and 2 ground truths" in out
    code, out = run(capsys, "list", tmp_path / "p", "--split", "val")
    assert code == 0 and "frame=ED" in out and "frame=ES" in out


def test_init_finishes_an_interrupted_project_and_never_replaces_one(tmp_path, capsys):
    half = tmp_path / "half"  # `weakseg init` killed before it wrote the label schema
    half.mkdir()
    (half / "project.sqlite").write_bytes(b"")
    code, out = run(capsys, "list", half)
    assert code == 1 and "weakseg init" in out and "Traceback" not in out
    code, out = run(capsys, "init", half, "--classes", "background", "liver")
    assert code == 0 and "finished the interrupted project" in out
    paths = write_case(tmp_path / "src", tiny_case(0))
    code, out = run(capsys, "add", half, paths["image"])
    assert code == 0
    before = (half / "project.sqlite").read_bytes()
    code, out = run(capsys, "init", half)
    assert code == 1 and "already exists" in out
    assert (half / "project.sqlite").read_bytes() == before
    code, out = run(capsys, "list", half)
    assert code == 0 and "background, liver" in out and "tiny000" in out


def test_a_damaged_manifest_is_one_line_for_list(tmp_path, capsys):
    Project.create(tmp_path / "p").close()
    manifest = tmp_path / "p" / "project.sqlite"
    manifest.write_bytes(np.random.default_rng(3).bytes(manifest.stat().st_size))
    for command in ("list", "add", "annotations"):
        extra = {"add": ["x.nii.gz"], "annotations": ["vol"]}.get(command, [])
        code, out = run(capsys, command, tmp_path / "p", *extra)
        assert code == 1 and str(manifest) in out and "damaged" in out
        assert len(out.strip().splitlines()) == 1 and "Traceback" not in out
