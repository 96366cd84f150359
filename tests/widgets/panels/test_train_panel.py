"""Train panel: methods offered, profiles, a run in the background process with live
curves, cancel mid-run and resume, a crashing run reported without taking napari down."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from napari_weakseg.store import Project
from napari_weakseg.widgets.main import WeakSegWidget
from napari_weakseg.widgets.workers import SynchronousExecutor

from .helpers import TINY, save_screenshot


def _docked(make_napari_viewer, qtbot, executor=None):
    viewer = make_napari_viewer(show=True)
    widget = WeakSegWidget(viewer, executor=executor)
    viewer.window.add_dock_widget(widget, name="WeakSeg", area="right")
    viewer.window.resize(1500, 1000)
    qtbot.waitUntil(widget.isVisible, timeout=60000)
    return viewer, widget


@pytest.mark.parametrize("profile, iterations, size, width, batch", [
    ("paper", 60000, 256, 16, 12),
    ("quick-cpu", 600, 128, 8, 8),
    ("cpu", 1000, 128, 8, 8),
])
def test_methods_follow_the_project_and_profiles_fill_the_form(make_napari_viewer, tiny_project,
                                                               profile, iterations, size, width,
                                                               batch):
    viewer = make_napari_viewer()
    widget = WeakSegWidget(viewer, executor=SynchronousExecutor())
    train = widget.train_panel
    assert not train.start_button.isEnabled()  # no project yet
    widget.project_panel.open_project(tiny_project)
    assert train.methods == ["effdnet", "pce"]  # the project has scribbles only
    with pytest.raises(ValueError, match="not offered"):
        train.set_method("refineseg")
    train.set_method("pce")
    assert "Partial cross-entropy" in train.method_info.text()
    train.set_profile(profile)
    config = train.config()
    assert (config.method, config.iterations, config.size, config.base_width,
            config.batch_size, config.lr) == ("pce", iterations, size, width, batch, None)
    assert train.model_combo.currentData().source == "new"
    assert train.start_button.isEnabled() and not train.cancel_button.isEnabled()
    train.set_method("effdnet")  # the quick profile's change is shown and used
    cpu = profile in ("quick-cpu", "cpu")
    assert ("use_fadc=False" in train.method_info.text()) == cpu
    assert train.config().method_options == ({"use_fadc": False} if cpu else {})
    assert train.config().preprocessing == ("spacing" if profile == "cpu" else "resize")


def test_cancel_mid_run_then_resume(make_napari_viewer, tiny_project, qtbot, screenshot_dir):
    viewer, widget = _docked(make_napari_viewer, qtbot)
    widget.project_panel.open_project(tiny_project)
    train = widget.train_panel
    qtbot.waitUntil(lambda: bool(train.methods), timeout=30000)
    train.set_method("pce")
    train.set_hyperparameters(**{**TINY, "iterations": 100000, "val_every": 2})
    widget.show_panel("Train")
    assert train.start_training() is not None
    assert train.cancel_button.isEnabled() and not train.start_button.isEnabled()
    qtbot.waitUntil(lambda: len(train.loss_plot.series.get("total", [])) >= 3, timeout=60000)
    assert train.progress_bar is not None and train.progress_bar.total == 100000
    assert train.dice_plot.series.get("mean")
    save_screenshot(viewer, screenshot_dir / "train_panel_running.png")
    train.cancel_training()
    qtbot.waitUntil(lambda: train.last_result is not None, timeout=60000)
    first = train.last_result
    assert first.status == "cancelled" and first.resumable
    assert train.resume_button.isEnabled() and train.progress_bar is None
    stopped_at = train.loss_plot.series["total"][-1][0]
    with Project.open(tiny_project) as project:
        assert project.run(first.run_id).status == "cancelled"
        assert [m.name for m in project.models()] == [first.model_name]

    handle = train.resume_training()
    qtbot.waitUntil(lambda: handle.start_iteration > 0, timeout=60000)
    assert handle.start_iteration >= stopped_at and handle.run_dir == first.run_dir
    train.cancel_training()
    qtbot.waitUntil(lambda: train.last_result is not None, timeout=60000)
    assert train.last_result.status == "cancelled"
    assert train.loss_plot.series["total"][-1][0] > stopped_at  # the curve went on


def test_a_crashing_run_is_reported_and_napari_keeps_working(make_napari_viewer, tiny_project,
                                                             qtbot, notifications,
                                                             screenshot_dir):
    viewer, widget = _docked(make_napari_viewer, qtbot)
    widget.project_panel.open_project(tiny_project)
    train = widget.train_panel
    qtbot.waitUntil(lambda: bool(train.methods), timeout=30000)
    shutil.rmtree(tiny_project / "images")  # the training process cannot read the data
    train.set_hyperparameters(**TINY)
    widget.show_panel("Train")
    train.start_training()
    qtbot.waitUntil(lambda: train.last_result is not None, timeout=60000)
    ended = train.last_result
    assert ended.status == "failed" and "missing" in ended.error
    (message,) = [m for m in notifications.messages("error") if "training failed" in m]
    assert ended.log_path in message and "Log:" in message
    assert train.start_button.isEnabled() and not train.cancel_button.isEnabled()
    with Project.open(tiny_project) as project:
        assert project.run(ended.run_id).status == "failed"
    # the viewer still works: add a layer, draw it
    viewer.add_image(np.random.default_rng(0).random((32, 32)), name="still alive")
    shot = save_screenshot(viewer, screenshot_dir / "train_panel_failed.png")
    assert shot[..., :3].std() > 10


def test_an_interrupted_run_is_offered_for_resume_after_reopening(make_napari_viewer,
                                                                   tiny_project, qtbot,
                                                                   tmp_path):
    from tests.training.test_project_runs import kill_cli_mid_run

    run_dir = kill_cli_mid_run(tiny_project, tmp_path / "model")  # `weakseg train` killed
    viewer, widget = _docked(make_napari_viewer, qtbot)
    widget.project_panel.open_project(tiny_project)
    train = widget.train_panel
    assert train.resume_button.isEnabled()  # old code: the run stayed "running", no resume
    assert f"Run {run_dir.name} was interrupted" in train.status.text()
    handle = train.resume_training()
    assert handle is not None and handle.run_dir == run_dir and handle.method == "pce"
    qtbot.waitUntil(lambda: handle.start_iteration > 0, timeout=60000)
    train.cancel_training()
    qtbot.waitUntil(lambda: train.last_result is not None, timeout=60000)
    assert train.last_result.status == "cancelled" and train.last_result.resumable
    with Project.open(tiny_project) as project:
        assert project.run(train.last_result.run_id).status == "cancelled"


def test_a_budget_stopped_run_is_offered_for_resume_after_reopening(make_napari_viewer,
                                                                    tiny_project, tiny_model):
    from napari_weakseg.training.events import Finished
    from napari_weakseg.training.project_runs import RunHandle, finalise_run

    run_dir = tiny_project / "runs" / "20240101-000000-pce"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"checkpoint")
    with Project.open(tiny_project) as project:
        run_id = project.create_run("pce", {}, out_dir=run_dir).id

    class NoRun:
        def events(self):
            return iter(())

    outcome = finalise_run(tiny_project, RunHandle(NoRun(), run_id, run_dir, run_dir.name,
                                                   600, 0, "pce"),
                           Finished("budget", 20, str(tiny_model), 0.5, 60.0))
    assert outcome.resumable
    viewer = make_napari_viewer()  # the project reopened later
    widget = WeakSegWidget(viewer, executor=SynchronousExecutor())
    widget.project_panel.open_project(tiny_project)
    train = widget.train_panel
    assert train.resume_button.isEnabled()  # old code: offered once, not after reopening
    assert f"Run {run_dir.name} stopped at its time budget" in train.status.text()
    widget.close_session()


def test_the_dice_curve_says_it_is_computed_on_held_out_slices(make_napari_viewer,
                                                               tiny_project):
    """Issue 17: no split=val volume with a reference, but accepted slices: the curve
    validates on held-out slices, and the Train tab says so."""
    from napari_weakseg.training.events import Started
    from napari_weakseg.widgets import logic

    with Project.open(tiny_project) as project:
        logic.set_split(project, ["synth001_frame10"], None)
        for name, zs in (("synth000_frame01", [0, 1]), ("synth000_frame10", [2])):
            truth = project.ground_truth(name)
            data = np.zeros(truth.shape, np.uint8)
            data[zs] = truth[zs] + 1
            project.save_annotation(name, "sparse", data,
                                    declared_slices={z: (0, 1, 2, 3) for z in zs})
    viewer = make_napari_viewer()
    widget = WeakSegWidget(viewer, executor=SynchronousExecutor())
    widget.project_panel.open_project(tiny_project)
    train = widget.train_panel
    text = train.validation_label.text()
    assert text.startswith("Validation Dice on 1 held-out corrected slice of 1 volume (not "
                           "used for training)")
    assert train.dice_plot.title == ("Validation Dice on 1 held-out corrected slice (not used "
                                     "for training)")
    assert train.dice_plot.empty_text == "no data yet" and train.dice_plot.toolTip() == text
    train.handle = logic.RunHandle(run=None, run_id=None, run_dir=tiny_project,
                                   model_name="x", iterations=10)
    train._on_event(Started(run_dir="x", method="mixed", iterations=10, start_iteration=0,
                            device="cpu", train_slices=8, val_volumes=1))
    assert train.validation_label.text() == text  # the run validates on them
    train._close_progress()
    train.handle = None
