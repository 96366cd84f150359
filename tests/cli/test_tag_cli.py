"""``weakseg tag`` (issue 17): the split, and any tag, from the command line."""

from __future__ import annotations

import pytest

from napari_weakseg.cli import main
from napari_weakseg.store import Project
from tests.widgets.panels.helpers import build_tiny_project


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return build_tiny_project(tmp_path_factory.mktemp("tag"))


def test_set_and_unset_the_split(project, capsys):
    assert main(["tag", str(project), "synth000_frame01", "synth000_frame10",
                 "--set", "split=val"]) == 0
    assert "split=val: 2 volume(s)" in capsys.readouterr().out
    with Project.open(project) as opened:
        assert {v.name for v in opened.volumes(split="val")} == {
            "synth000_frame01", "synth000_frame10", "synth001_frame10"}
    assert main(["tag", str(project), "--all", "--unset", "split"]) == 0
    with Project.open(project) as opened:
        assert not opened.volumes(split="val")
        assert all("split" not in v.tags for v in opened.volumes())


def test_bad_requests_are_one_line_errors(project, capsys):
    assert main(["tag", str(project), "nope", "--set", "split=val"]) == 1
    assert "no volume named nope" in capsys.readouterr().err
    assert main(["tag", str(project), "synth000_frame01", "--set", "split=holdout"]) == 1
    assert "split must be one of" in capsys.readouterr().err
    assert main(["tag", str(project), "synth000_frame01"]) == 1
    assert "nothing to do" in capsys.readouterr().err
    assert main(["tag", str(project), "--set", "split=val"]) == 1
    assert "--all" in capsys.readouterr().err
