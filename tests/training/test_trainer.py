"""Trainer: resume equals uninterrupted, cancel, worker process, crash, DDP, fine-tune."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from napari_weakseg.nets.model_folder import ModelFolderError, load_model
from napari_weakseg.training.config import TrainConfig
from napari_weakseg.training.events import Checkpoint, Finished, Progress, Started, parse_event
from napari_weakseg.training.runner import TrainingRun
from napari_weakseg.training.sources import synthetic_data
from napari_weakseg.training.trainer import Trainer, poly_lr, schedule_progress

SOURCE = {"kind": "synthetic", "subjects": 2, "val_subjects": 1, "shape": [4, 32, 32]}


def tiny_config(**overrides) -> TrainConfig:
    base = dict(method="pce", iterations=12, batch_size=3, size=32, base_width=4,
                val_every=6, checkpoint_every=4, device="cpu", threads=1)
    base.update(overrides)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def data():
    return synthetic_data(subjects=2, val_subjects=1, shape=(4, 32, 32))


def weights(folder):
    net, _ = load_model(folder)
    return {k: v.clone() for k, v in net.state_dict().items()}


def straight_and_resumed(config, data, tmp_path, stop_at: int = 4):
    """Run ``config`` straight into ``tmp_path/a``; into ``tmp_path/b`` cancelled at the
    checkpoint of iteration ``stop_at``, then resumed. Returns the two run folders."""
    Trainer(config, data.train, data.val, data.class_names, tmp_path / "a").run()
    cancel = threading.Event()

    def stop(event):
        if isinstance(event, Checkpoint) and event.iteration == stop_at:
            cancel.set()

    Trainer(config, data.train, data.val, data.class_names, tmp_path / "b", emit=stop,
            cancel=cancel).run()
    Trainer(config, data.train, data.val, data.class_names, tmp_path / "b").run()
    return tmp_path / "a", tmp_path / "b"


@pytest.mark.parametrize("method", ["pce", "full"])
def test_resume_after_cancel_equals_uninterrupted(tmp_path, data, method):
    config = tiny_config(method=method)
    straight = Trainer(config, data.train, data.val, data.class_names, tmp_path / "a").run()
    assert straight.status == "completed" and straight.iteration == 12

    cancel = threading.Event()

    def stop_after_first_checkpoint(event):
        if isinstance(event, Checkpoint) and event.iteration == 4:
            cancel.set()

    first = Trainer(config, data.train, data.val, data.class_names, tmp_path / "b",
                    emit=stop_after_first_checkpoint, cancel=cancel).run()
    assert first.status == "cancelled" and first.iteration == 4
    events = []
    second = Trainer(config, data.train, data.val, data.class_names, tmp_path / "b",
                     emit=events.append).run()
    assert isinstance(events[0], Started) and events[0].start_iteration == 4
    assert second.status == "completed"
    a, b = weights(tmp_path / "a" / "model_last"), weights(tmp_path / "b" / "model_last")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert straight.history == second.history


def test_events_and_model_folder(tmp_path, data):
    events = []
    result = Trainer(tiny_config(), data.train, data.val, data.class_names, tmp_path,
                     emit=events.append).run()
    kinds = [e.type for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert kinds.count("validation") == 2
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].iteration == 12 and progress[-1].eta_s == pytest.approx(0, abs=1e-6)
    assert set(progress[-1].losses) >= {"total", "pce"}
    assert all(parse_event(e.to_json()) == e for e in events)
    net, config = load_model(result.model_dir)
    assert config["classes"] == ["background", "RV", "MYO", "LV"]
    assert config["validation"]["best_mean_dice"] == result.best_mean_dice
    card = (result.model_dir / "README.md").read_text()
    assert "| mean |" in card and "pce" in card


@pytest.mark.parametrize("iteration, elapsed, budget, expected", [
    (0, 0.0, None, 0.0), (50, 999.0, None, 0.5),      # no budget: iterations only
    (50, 10.0, 100.0, 0.5), (10, 60.0, 100.0, 0.6),   # whichever is further along
    (10, 500.0, 100.0, 1.0),                          # budget spent
])
def test_schedule_progress(iteration, elapsed, budget, expected):
    assert schedule_progress(iteration, 100, elapsed, budget) == pytest.approx(expected)


def test_poly_schedule():
    assert poly_lr(0.01, 0.0) == 0.01
    assert poly_lr(0.01, 0.5) == pytest.approx(0.01 * 0.5 ** 0.9)
    assert poly_lr(0.01, 1.0) == 0.0


def test_wrong_architecture_checkpoint_is_refused(tmp_path, data):
    result = Trainer(tiny_config(iterations=2, val_every=2), data.train, data.val,
                     data.class_names, tmp_path / "run").run()
    config_path = result.model_dir / "config.json"
    text = config_path.read_text().replace('"base_width": 4', '"base_width": 8')
    config_path.write_text(text)
    with pytest.raises(ModelFolderError, match="another architecture"):
        load_model(result.model_dir)
    with pytest.raises(ModelFolderError, match="not a model folder"):
        load_model(tmp_path)


def test_fine_tune_from_model_folder(tmp_path, data):
    base = Trainer(tiny_config(iterations=4, val_every=4), data.train, data.val,
                   data.class_names, tmp_path / "base").run()
    tuned = Trainer(tiny_config(iterations=2, val_every=2, init_model=str(base.model_dir)),
                    data.train, data.val, data.class_names, tmp_path / "tuned")
    result = tuned.run()
    assert result.status == "completed"
    with pytest.raises(ValueError, match="differ from the project"):
        Trainer(tiny_config(init_model=str(base.model_dir)), data.train, data.val,
                ["background", "liver"], tmp_path / "other").run()


@pytest.mark.parametrize("overrides,expected_lr", [
    ({}, 0.003),                                  # pCE's 0.03 × the fine-tune scale 0.1
    ({"fine_tune_lr_scale": 0.5}, 0.015),
    ({"lr": 0.02}, 0.02),                         # an explicit rate wins
])
def test_a_fine_tune_starts_at_a_fraction_of_the_methods_rate(tmp_path, data, overrides,
                                                               expected_lr):
    base = Trainer(tiny_config(iterations=2, val_every=2), data.train, data.val,
                   data.class_names, tmp_path / "base").run()
    events = []
    Trainer(tiny_config(iterations=2, val_every=2, init_model=str(base.model_dir),
                        **overrides), data.train, data.val, data.class_names,
            tmp_path / "tuned", emit=events.append).run()
    first = next(e for e in events if isinstance(e, Progress))
    assert first.lr == pytest.approx(expected_lr)


def test_worker_process_cancel_then_resume(tmp_path):
    run = TrainingRun(tmp_path / "run", tiny_config(iterations=400, checkpoint_every=5,
                                                    val_every=1000), SOURCE).start()
    seen = []
    for event in run.events():
        seen.append(event)
        if isinstance(event, Progress) and event.iteration >= 3:
            run.cancel()
    finished = seen[-1]
    assert isinstance(finished, Finished) and finished.status == "cancelled", seen[-1]
    assert 3 <= finished.iteration < 400
    assert run.wait() == 0 and run.can_resume
    resumed = TrainingRun(tmp_path / "run")
    first = None
    resumed.start()
    for event in resumed.events():
        if isinstance(event, Started):
            first = event
            resumed.cancel()
    assert first is not None and first.start_iteration == finished.iteration


def test_failing_run_is_reported_not_raised(tmp_path):
    run = TrainingRun(tmp_path / "bad", tiny_config(), {"kind": "no-such-source"}).start()
    events = list(run.events())
    assert events[-1].type == "failed"
    assert "unknown data source kind" in events[-1].error
    assert run.wait() == 1


def test_killed_process_is_reported(tmp_path):
    run = TrainingRun(tmp_path / "kill", tiny_config(iterations=100000), SOURCE).start()
    events = []
    for event in run.events():
        events.append(event)
        if isinstance(event, Progress):
            run.kill()
    assert events[-1].type == "failed"
    assert "without finishing" in events[-1].error


def test_two_process_ddp_on_cpu(tmp_path):
    run = TrainingRun(tmp_path / "ddp", tiny_config(iterations=6, val_every=6,
                                                    checkpoint_every=3), SOURCE)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         "--nproc_per_node=2", "-m", "napari_weakseg.training.worker", str(run.run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=180)
    finally:  # never leave rank processes behind
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 0, stderr[-3000:]
    events = [parse_event(line) for line in stdout.splitlines()]
    events = [e for e in events if e is not None]
    assert [e.type for e in events].count("started") == 1  # rank 0 reports
    assert events[-1].type == "finished" and events[-1].status == "completed"
    net, _ = load_model(tmp_path / "ddp" / "model_last")
    assert all(torch.isfinite(p).all() for p in net.parameters())
