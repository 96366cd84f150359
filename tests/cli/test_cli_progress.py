"""CLI feedback (issue 17): ``train`` prints progress every few seconds when piped,
``evaluate`` names the volumes without predictions once, ``import`` prints progress."""

from __future__ import annotations

import io

import numpy as np

from napari_weakseg.cli import _progress, engine, main
from napari_weakseg.io import VolumeGeometry, write_volume
from napari_weakseg.training.events import Progress


def test_piped_training_progress_is_printed_every_few_seconds(monkeypatch):
    clock = iter(range(0, 1000, 6))  # 6 s between two progress events
    monkeypatch.setattr(engine.time, "monotonic", lambda: float(next(clock)))
    out = io.StringIO()  # not a TTY: one line per update
    printer = engine.EventPrinter(out)
    for iteration in range(1, 6):  # all within the first tenth of 1000 iterations
        printer(Progress(iteration=iteration, iterations=1000, losses={"total": 1.0}, lr=0.01,
                         it_per_s=0.2, eta_s=100.0))
    lines = out.getvalue().splitlines()
    assert len(lines) == 5 and lines[-1].startswith("[5/1000]")  # old code: only [1/1000]


def test_piped_training_progress_is_thinned_within_seconds(monkeypatch):
    monkeypatch.setattr(engine.time, "monotonic", lambda: 100.0)
    out = io.StringIO()
    printer = engine.EventPrinter(out)
    for iteration in range(1, 101):
        printer(Progress(iteration=iteration, iterations=100, losses={"total": 1.0}, lr=0.01,
                         it_per_s=50.0, eta_s=1.0))
    assert len(out.getvalue().splitlines()) == 11  # 0/10 … 10/10: about ten lines


def test_evaluate_names_missing_predictions_once(tmp_path, capsys):
    geometry = VolumeGeometry.from_spacing((2, 8, 8), (5.0, 1.0, 1.0))
    labels = np.zeros((2, 8, 8), np.uint8)
    labels[:, 2:6, 2:6] = 3
    for i in range(4):
        write_volume(tmp_path / "gt" / f"case{i}.nii.gz", labels, geometry)
    write_volume(tmp_path / "pred" / "case0.nii.gz", labels, geometry)
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1  # old code: one per missing volume
    assert "3 of 4" in warnings[0] and "case1, case2, case3" in warnings[0]


def test_import_prints_progress(tmp_path, capsys, monkeypatch):
    from napari_weakseg.synthetic import make_cohort, write_cohort

    write_cohort(tmp_path / "data", make_cohort(2, shape=(2, 16, 16)))
    monkeypatch.setattr(_progress, "EVERY_S", 0.0)
    assert main(["import", str(tmp_path / "project"), str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "importing" in out and "4 volume(s) added" in out
