"""The Qt-free logic behind the panels (no viewer needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from napari_weakseg.store import Project
from napari_weakseg.training.events import Failed, Finished, Progress, Started
from napari_weakseg.widgets import logic


C = 4


def _prediction():
    original = np.zeros((4, 6, 6), np.uint8)
    original[:, 1:4, 1:4] = 3   # LV everywhere
    original[:, 4:, 4:] = 1     # RV everywhere
    edited = original.copy()
    edited[1, 1, 1] = 2         # slice 1: one LV voxel → MYO
    edited[3, 4:, 4:] = 0       # slice 3: RV erased (background)
    return original, edited


@pytest.mark.parametrize("mode, kind, slices, classes", [
    ("corrected_slices", "sparse", [1, 3], None),
    ("current_slice", "sparse", [2], None),
    ("corrected_classes", "partial", None, (1, 2, 3)),
    ("volume", "partial", None, (0, 1, 2, 3)),
])
def test_accepted_annotation_modes(mode, kind, slices, classes):
    original, edited = _prediction()
    accepted = logic.accepted_annotation(edited, original, mode, C, current_slice=2)
    assert accepted.kind == kind
    assert accepted.classes == classes
    if slices is not None:
        assert list(accepted.slices) == slices
        assert all(v == (0, 1, 2, 3) for v in accepted.slices.values())
        for z in range(4):  # declared slices carry the whole slice (background = 1)
            expected = edited[z] + 1 if z in slices else np.zeros_like(edited[z])
            np.testing.assert_array_equal(accepted.data[z], expected)
    else:
        keep = np.isin(edited, classes)
        np.testing.assert_array_equal(accepted.data, np.where(keep, edited + 1, 0))


@pytest.mark.parametrize("mode", ["corrected_slices", "corrected_classes"])
def test_accepting_corrections_without_any_is_refused(mode):
    original, _ = _prediction()
    with pytest.raises(ValueError, match="corrected"):
        logic.accepted_annotation(original.copy(), original, mode, C)


def test_corrected_slices_and_classes():
    original, edited = _prediction()
    assert logic.corrected_slices(original, edited) == [1, 3]
    assert logic.corrected_classes(original, edited) == [1, 2, 3]


class _Existing:
    def __init__(self, data, classes=None, slices=None):
        self.data = data
        self.declared_classes = classes
        self.declared_slices = slices


def test_merge_sparse_keeps_other_declared_slices():
    original, edited = _prediction()
    old = np.zeros_like(original)
    old[0] = 2
    accepted = logic.accepted_annotation(edited, original, "corrected_slices", C)
    merged = logic.merge_accepted(_Existing(old, slices={0: (0, 1)}), accepted)
    assert merged.slices == {0: (0, 1), 1: (0, 1, 2, 3), 3: (0, 1, 2, 3)}
    np.testing.assert_array_equal(merged.data[0], old[0])
    np.testing.assert_array_equal(merged.data[1], edited[1] + 1)


def test_merge_sparse_with_undeclared_import_uses_labelled_slices():
    original, edited = _prediction()
    old = np.zeros_like(original)
    old[2, 0, 0] = 3  # an imported sparse annotation with no declarations: class 2 on z=2
    merged = logic.merge_accepted(_Existing(old), logic.accepted_annotation(
        edited, original, "current_slice", C, current_slice=0))
    assert merged.slices == {0: (0, 1, 2, 3), 2: (2,)}


def test_merge_partial_replaces_the_accepted_classes_only():
    original, edited = _prediction()
    old = np.zeros_like(original)
    old[0, 0, 0] = 4      # LV voxel somewhere else: LV is re-accepted, so it goes
    old[0, 5, 0] = 2      # an RV voxel stays... unless RV is accepted too
    accepted = logic.Accepted("partial", np.where(edited == 3, 4, 0).astype(np.uint8), (3,))
    merged = logic.merge_accepted(_Existing(old, classes=(1,)), accepted)
    assert merged.classes == (1, 3)
    assert merged.data[0, 0, 0] == 0 and merged.data[0, 5, 0] == 2
    np.testing.assert_array_equal(merged.data == 4, edited == 3)


@pytest.mark.parametrize("slices, z, classes, expected", [
    (None, 2, None, {2: None}),
    ({2: None}, 2, None, {}),
    ({1: (1,)}, 0, [3, 1], {0: (1, 3), 1: (1,)}),
])
def test_toggle_slice(slices, z, classes, expected):
    assert logic.toggle_slice(slices, z, classes) == expected


def test_rank_slices_most_uncertain_first_skipping_complete():
    entropy = np.zeros((4, 3, 3), np.float32)
    entropy[1] = 0.9
    entropy[2] = 0.5
    entropy[3, 0, 0] = 0.9
    assert [z for z, _ in logic.rank_slices(entropy)] == [1, 2, 3, 0]
    assert [z for z, _ in logic.rank_slices(entropy, exclude=[1])] == [2, 3, 0]


@pytest.mark.parametrize("purpose, expected", [
    ("correction", [1, 0]),   # slice 1 is the less sure one, though it lacks class 1
    ("scribbles", [0, 1]),    # slice 0 shows every structure
])
def test_rank_slices_by_purpose(purpose, expected):
    probabilities = np.full((3, 2, 4, 4), 0.05)
    probabilities[0] = 0.9
    probabilities[:, 0, 0, 0] = (0.2, 0.7, 0.1)   # class 1, fairly sure
    probabilities[:, 0, 1, 1] = (0.2, 0.1, 0.7)   # class 2, fairly sure
    probabilities[:, 1, 1, 1] = (0.4, 0.1, 0.5)   # class 2 only, unsure
    entropy = -(probabilities * np.log(probabilities)).sum(axis=0)
    ranked = logic.rank_slices(entropy, probabilities=probabilities, purpose=purpose)
    assert [z for z, _ in ranked] == expected
    with pytest.raises(ValueError):
        logic.rank_slices(entropy, probabilities=probabilities, purpose="nope")


def test_fingerprint_tracks_data_and_declarations():
    data = np.zeros((2, 3, 3), np.uint8)
    base = logic.fingerprint(data)
    assert logic.fingerprint(data.copy()) == base
    changed = data.copy()
    changed[0, 0, 0] = 1
    assert logic.fingerprint(changed) != base
    assert logic.fingerprint(data, classes=(1,)) != base
    assert logic.fingerprint(data, slices={0: None}) != base


@pytest.mark.parametrize("seconds, text", [(5, "5 s"), (125, "2 min 05 s"),
                                           (7260, "2 h 01 min"), (math.inf, "–")])
def test_format_eta(seconds, text):
    assert logic.format_eta(seconds) == text


def test_save_layer_annotation_versions(tiny_project):
    with Project.open(tiny_project) as project:
        volume = project.volumes()[0].name
        empty = np.zeros(project.volume(volume).shape, np.uint8)
        assert logic.save_layer_annotation(project, volume, "partial", empty) is None
        painted = empty.copy()
        painted[1, 2:5, 2:5] = 4
        first = logic.save_layer_annotation(project, volume, "partial", painted, classes=(3,))
        assert (first.version, first.declared_classes) == (1, (3,))
        again = logic.save_layer_annotation(project, volume, "partial", painted, classes=(3,))
        assert again.version == 1  # unchanged: no new version
        erased = logic.save_layer_annotation(project, volume, "partial", empty, classes=(3,))
        assert erased.version == 2 and not erased.counts
        sparse = logic.save_layer_annotation(project, volume, "sparse", empty,
                                             slices={2: None})
        assert sparse.declared_slices == {2: (0, 1, 2, 3)}


def test_volume_statuses_and_kinds(tiny_project):
    with Project.open(tiny_project) as project:
        rows = logic.volume_statuses(project)
        assert [r.name for r in rows] == [v.name for v in project.volumes()]
        assert all(r.kinds == ("scribble",) and r.has_truth for r in rows)
        assert [r.split for r in rows] == ["", "", "", "val"]
        assert logic.project_kinds(project) == {"scribble"}


@pytest.mark.parametrize("kinds, expected", [
    ({"scribble"}, ["effdnet", "pce"]),
    ({"coarse_neg"}, ["refineseg"]),
    ({"partial"}, ["disambig", "full", "pce"]),
    (set(), []),
])
def test_method_choices_follow_the_annotation_kinds(kinds, expected):
    choices = logic.method_choices(kinds)
    assert [c.id for c in choices] == expected
    assert all(c.description and c.lr > 0 for c in choices)


def test_model_choices_list_new_project_and_zoo(tiny_project, tiny_model, tmp_path):
    zoo = tmp_path / "zoo"
    (zoo / "acdc-pce").mkdir(parents=True)
    (zoo / "acdc-pce" / "config.json").write_text("{}")
    (zoo / "not-a-model").mkdir()
    with Project.open(tiny_project) as project:
        project.register_model("m1", tiny_model)
        choices = logic.model_choices(project, zoo=zoo)
    assert [(c.source, c.label) for c in choices] == [
        ("new", "New model (random init)"), ("project", "project: m1"),
        ("zoo", "zoo: acdc-pce")]


class _FakeRun:
    """Stands in for training.runner.TrainingRun: replays events."""

    def __init__(self, events):
        self._events = events

    def events(self):
        yield from self._events


def _handle(project, run_dir: Path, events) -> logic.RunHandle:
    run_id = project.create_run("pce", {}, out_dir=run_dir).id
    return logic.RunHandle(_FakeRun(events), run_id, run_dir, run_dir.name, 6, 0, "pce")


def test_training_stream_registers_the_model(tiny_project, tiny_model, tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    (run_dir / "checkpoints").mkdir(parents=True)
    events = [Started(str(run_dir), "pce", 6, 0, "cpu", 12, 1),
              Progress(6, 6, {"total": 0.5}, 0.01, 3.0, 0.0),
              Finished("completed", 6, str(tiny_model), 0.4, 2.0)]
    with Project.open(tiny_project) as project:
        handle = _handle(project, run_dir, events)
    messages = list(logic.training_stream(handle, tiny_project))
    assert [m.type for m in messages[:-1]] == ["started", "progress", "finished"]
    ended = messages[-1]
    assert (ended.status, ended.model_name) == ("completed", "r1")
    assert json.loads((ended.model_path / "config.json").read_text())["classes"]
    with Project.open(tiny_project) as project:
        (model,) = project.models()
        assert model.path == ended.model_path and model.run_id == handle.run_id
        assert project.run(handle.run_id).status == "completed"
        assert project.run(handle.run_id).metrics["best_mean_dice"] == 0.4


@pytest.mark.parametrize("events, error", [
    ([Failed("ValueError: bad data", "Traceback …", "/x/events.jsonl")], "bad data"),
    ([], "without a final event"),
])
def test_training_stream_reports_failures(tiny_project, tmp_path, events, error):
    run_dir = tmp_path / "runs" / "r2"
    run_dir.mkdir(parents=True)
    with Project.open(tiny_project) as project:
        handle = _handle(project, run_dir, events)
    ended = list(logic.training_stream(handle, tiny_project))[-1]
    assert ended.status == "failed" and error in ended.error
    assert ended.log_path and ended.model_path is None
    with Project.open(tiny_project) as project:
        assert project.run(handle.run_id).status == "failed"
        assert project.models() == []


# -- issue 17: validation on held-out accepted slices; the Review tab's ground-truth table --
def _accept_slices(project, volume, zs):
    truth = project.ground_truth(volume)
    data = np.zeros(truth.shape, np.uint8)
    data[zs] = truth[zs] + 1
    project.save_annotation(volume, "sparse", data,
                            declared_slices={z: (0, 1, 2, 3) for z in zs})


def test_validation_summary_holds_out_accepted_slices_without_reference(tiny_project):
    with Project.open(tiny_project) as project:
        assert logic.validation_summary(project) == logic.ValidationSummary(1, 1)
        logic.set_split(project, ["synth001_frame10"], None)  # no reference validation left
        summary = logic.validation_summary(project)
        assert (summary.with_reference, summary.held_out) == (0, 0)  # nothing accepted yet
        assert summary.message().startswith("0 validation volumes")
        _accept_slices(project, "synth000_frame01", [0])
        assert logic.validation_summary(project).held_out == 0  # one slice: not enough
        _accept_slices(project, "synth000_frame10", [1, 2])
        summary = logic.validation_summary(project)
    assert (summary.held_out, summary.held_out_volumes) == (1, 1)
    assert summary.message().startswith("Validation Dice on 1 held-out corrected slice of 1 "
                                        "volume (not used for training)")
    assert summary.curve() == "on 1 held-out corrected slice (not used for training)"
    assert logic.ValidationSummary(1, 1).curve() == "on 1 split=val volume(s)"


def test_score_rows_format_dice_hd95_and_the_mean():
    truth = np.zeros((3, 12, 12), np.uint8)
    truth[:, 2:6, 2:6] = 1
    truth[:, 7:10, 7:10] = 3
    labels = truth.copy()
    labels[:, 7:10, 7:10] = 0  # LV missed
    scores = logic.score_prediction(labels, truth, (10.0, 2.0, 2.0),
                                    ["background", "RV", "MYO", "LV"])
    rows = logic.score_rows(scores)
    assert rows == [("RV", "1.000", "0.0", ""), ("MYO", "1.000", "0.0", "absent in both"),
                    ("LV", "0.000", "–", "missed (not predicted)"),
                    ("mean", "0.667", "0.0", "")]


def test_score_prediction_in_a_separate_process_matches_in_process(monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (4, 24, 24)).astype(np.uint8)
    truth = rng.integers(0, 4, (4, 24, 24)).astype(np.uint8)
    names = ["background", "RV", "MYO", "LV"]
    assert logic.SCORE_IN_SUBPROCESS
    separate = logic.score_prediction(labels, truth, (5.0, 1.5, 1.5), names)
    monkeypatch.setattr(logic, "SCORE_IN_SUBPROCESS", False)
    here = logic.score_prediction(labels, truth, (5.0, 1.5, 1.5), names)
    assert separate == here and set(here) == {"RV", "MYO", "LV"}
    # a worker process that cannot run: scored here, and a new worker next time

    class Broken:
        def submit(self, *args, **kwargs):
            raise BrokenProcessPool("gone")

    monkeypatch.setattr(logic, "SCORE_IN_SUBPROCESS", True)
    monkeypatch.setattr(logic, "_scoring_process", lambda: Broken())
    assert logic.score_prediction(labels, truth, (5.0, 1.5, 1.5), names) == here
    assert logic._scorer is None


def test_scoring_process_runs_at_a_lower_priority_and_stops_at_exit():
    import os

    if not hasattr(os, "nice"):
        pytest.skip("no niceness on this platform")
    scorer = logic._scoring_process()
    assert scorer.submit(os.nice, 0).result() >= os.nice(0) + min(logic.SCORING_NICENESS,
                                                                  19 - os.nice(0))
    logic._stop_scoring_process()
    assert logic._scorer is None
    assert logic._scoring_process() is not scorer  # a new one on the next score
