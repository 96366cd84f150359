"""The batch export panel in a real napari window (Xvfb): background run with progress,
cancel, errors as notifications, predictions that open aligned with their image."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from napari_weakseg.inference.export import ExportProgress, ExportReport
from napari_weakseg.widgets import export as export_widget
from napari_weakseg.widgets.export import ExportPanel
from tests.inference.test_export import make_tiny_model, random_image, write_image


@pytest.fixture
def notes(monkeypatch):
    """Notifications the panel raised, as (level, text)."""
    seen: list[tuple[str, str]] = []
    for level in ("error", "warning", "info"):
        monkeypatch.setattr(export_widget, f"show_{level}",
                            lambda text, level=level: seen.append((level, text)))
    return seen


def fill(panel: ExportPanel, model, inputs, out, **checks) -> None:
    panel.model_edit.setText(str(model) if model else "")
    panel.input_edit.setText("; ".join(str(p) for p in inputs))
    panel.out_edit.setText(str(out) if out else "")
    panel.device_combo.setCurrentText("cpu")
    for key, value in checks.items():
        panel.checks[key].setChecked(value)


def test_export_runs_in_the_background_with_progress(make_napari_viewer, qtbot, tmp_path,
                                                     notes):
    viewer = make_napari_viewer()
    panel = ExportPanel(viewer)
    model = make_tiny_model(tmp_path / "model")
    inputs = [write_image(tmp_path / "in" / f"v{i}.nii.gz", random_image(i, (2, 24, 20)))
              for i in range(3)]
    bad = tmp_path / "in" / "broken.nii.gz"
    bad.write_bytes(b"not a NIfTI file")
    fill(panel, model, [tmp_path / "in"], tmp_path / "out", uncertainty=True)
    seen = []
    panel._bridge.progressed.connect(seen.append)
    panel.start_button.click()
    # start() returned at once: the export runs in a worker, the Qt loop keeps turning
    assert panel.running and not panel.start_button.isEnabled()
    assert panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not panel.running, timeout=60_000)
    report = panel.report
    assert sorted(report.exported) == ["v0", "v1", "v2"] and list(report.failed) == ["broken"]
    assert panel.progress.maximum() == panel.progress.value() == 4
    assert [e.status for e in seen][0] == "started" and len(seen) == 6
    assert all(isinstance(e, ExportProgress) for e in seen)
    assert "1 failed" in panel.status.text()
    assert [level for level, _ in notes] == ["warning"] and "broken" in notes[0][1]
    assert sorted(p.name for p in (tmp_path / "out" / "uncertainty").iterdir()) == \
        [f"v{i}.nii.gz" for i in range(3)]
    assert panel.start_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_cancel_button_stops_the_run(make_napari_viewer, qtbot, tmp_path, notes, monkeypatch):
    calls = {}

    def fake_export(model, inputs, out, options, *, progress, cancel):
        """Stands in for the core: one volume done, then waits for the Cancel button."""
        calls["options"] = options
        progress(ExportProgress("started", 0, 3))
        progress(ExportProgress("exported", 1, 3, "a"))
        calls["cancelled"] = cancel.wait(timeout=30)
        return ExportReport(Path(out), 3, (0, 1), total=3, exported=["a"],
                            not_done=["b", "c"], cancelled=cancel.is_set())

    monkeypatch.setattr(export_widget, "export_cohort", fake_export)
    panel = ExportPanel(make_napari_viewer())
    fill(panel, tmp_path / "model", [tmp_path / "in"], tmp_path / "out", probabilities=True,
         largest_component=True)
    panel.start_button.click()
    qtbot.waitUntil(lambda: panel.progress.value() == 1, timeout=10_000)
    assert panel.status.text() == "1/3: exported a"
    panel.cancel_button.click()
    assert "Cancelling" in panel.status.text() and not panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not panel.running, timeout=10_000)
    assert calls["cancelled"] is True and panel.report.cancelled
    assert calls["options"].probabilities and calls["options"].largest_component
    assert not calls["options"].fill_holes and calls["options"].device == "cpu"
    assert "cancelled" in panel.status.text() and notes[0][0] == "info"
    assert panel.start_button.isEnabled()


@pytest.mark.parametrize("case, expected", [
    ("no model", "needs a model folder"),
    ("no inputs", "needs inputs"),
    ("bad model folder", "not a model folder"),
    ("no volumes", "no input volumes"),
])
def test_errors_become_notifications(make_napari_viewer, qtbot, tmp_path, notes, case,
                                     expected):
    panel = ExportPanel(make_napari_viewer())
    image = write_image(tmp_path / "in" / "v.nii.gz", random_image(0, (2, 16, 16)))
    model = tmp_path / "not-a-model"
    model.mkdir()
    if case != "bad model folder":
        model = make_tiny_model(tmp_path / "model")
    inputs = {"no inputs": [], "no volumes": [tmp_path / "model"]}.get(case, [image])
    fill(panel, None if case == "no model" else model, inputs, tmp_path / "out")
    panel.start()
    qtbot.waitUntil(lambda: not panel.running, timeout=30_000)
    assert [level for level, _ in notes] == ["error"] and expected in notes[0][1]
    assert panel.start_button.isEnabled()
    assert not (tmp_path / "out").exists()


def test_prediction_opens_aligned_with_its_acdc_image(make_napari_viewer, qtbot, tmp_path,
                                                      notes, acdc_dir):
    viewer = make_napari_viewer()
    source = acdc_dir / "images" / "patient002_frame01.nii.gz"
    image = viewer.open(str(source), plugin="napari-weakseg")[0]
    panel = ExportPanel(viewer)
    fill(panel, make_tiny_model(tmp_path / "model"), [source], tmp_path / "out")
    panel.start()
    qtbot.waitUntil(lambda: not panel.running, timeout=60_000)
    assert panel.report.ok
    added = viewer.layers[f"{image.name} [prediction]"]
    opened = viewer.open(str(tmp_path / "out" / "labels" / source.name),
                         plugin="napari-weakseg")[0]
    for labels in (added, opened):
        assert type(labels).__name__ == "Labels"
        assert labels.data.shape == image.data.shape
        np.testing.assert_allclose(labels.scale, image.scale)
        np.testing.assert_allclose(labels.translate, image.translate)
        np.testing.assert_allclose(labels.extent.world, image.extent.world)
        np.testing.assert_array_equal(labels.metadata["affine"], image.metadata["affine"])
