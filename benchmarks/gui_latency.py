"""How responsive napari stays while WeakSeg works in the background.

Runs a real napari window (use a virtual screen)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/gui_latency.py
    xvfb-run -a ... .venv/bin/python benchmarks/gui_latency.py --acdc ../shared/data/acdc

A ``QTimer`` ticks every 10 ms on napari's event loop; the longest gap between two ticks
is the longest time the viewer could not react (repaint, mouse, keys). Phases: idle, a
training run streaming progress (separate process, events read by a thread), predictions
(model load + whole-volume inference in a thread, then the overlays are added), and an
annotation autosave. Also timed: "Start" → the first prediction overlay (tiny training
run, then the automatic prediction). With ``--acdc`` the same is done on one real ACDC
volume (project importing the ACDC folder by reference, quick-cpu profile with a time
budget). Target: no stall above 100 ms. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

TICK_MS = 10
TARGET_MS = 100.0


class StallMeter:
    """Records the gaps between ticks of a 10 ms QTimer, per named phase."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.rows: list[dict] = []
        self._gaps: list[float] = []
        self._last = time.perf_counter()
        self._timer = QTimer()
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()
        self._phase = None
        self._started = 0.0

    def _tick(self):
        now = time.perf_counter()
        self._gaps.append((now - self._last) * 1000.0)
        self._last = now

    def begin(self, name: str) -> None:
        self._phase = name
        self._gaps = []
        self._last = time.perf_counter()
        self._started = self._last

    def end(self, note: str = "") -> dict:
        gaps = sorted(self._gaps) or [0.0]
        row = {"phase": self._phase, "seconds": time.perf_counter() - self._started,
               "ticks": len(self._gaps), "max_ms": gaps[-1],
               "p99_ms": gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))],
               "median_ms": statistics.median(gaps),
               "over": sum(g > TARGET_MS for g in gaps), "note": note}
        self.rows.append(row)
        return row


def spin(condition, timeout: float, poll_ms: int = 20) -> bool:
    """Run the Qt event loop until ``condition()`` or ``timeout`` seconds."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    deadline = time.perf_counter() + timeout
    result = {"ok": False}

    def check():
        if condition():
            result["ok"] = True
            loop.quit()
        elif time.perf_counter() > deadline:
            loop.quit()

    timer = QTimer()
    timer.setInterval(poll_ms)
    timer.timeout.connect(check)
    timer.start()
    check()
    if not result["ok"] and time.perf_counter() <= deadline:
        loop.exec_()
    timer.stop()
    return result["ok"]


def make_synthetic_project(root: Path, shape) -> Path:
    from napari_weakseg.store import Project
    from napari_weakseg.store.importers import import_folder
    from napari_weakseg.synthetic import make_cohort, write_cohort

    write_cohort(root / "data", make_cohort(2, shape=tuple(shape)))
    with Project.create(root / "project") as project:
        import_folder(project, root / "data")
        project.set_tags(project.volumes()[-1], split="val")
    return root / "project"


def make_acdc_project(root: Path, acdc: Path) -> Path:
    from napari_weakseg.store import Project
    from napari_weakseg.store.importers import import_acdc

    with Project.create(root / "acdc-project") as project:
        report = import_acdc(project, acdc)  # references the images, copies nothing
        print(f"ACDC import: {report.summary().splitlines()[0]}", flush=True)
    return root / "acdc-project"


def open_viewer():
    import napari

    from napari_weakseg.widgets.main import WeakSegWidget

    viewer = napari.Viewer(title="gui latency", show=True)
    widget = WeakSegWidget(viewer)
    viewer.window.add_dock_widget(widget, name="WeakSeg", area="right")
    viewer.window.resize(1400, 900)
    return viewer, widget


def open_volume(widget, project: Path, volume: str | None = None) -> str:
    panel = widget.project_panel
    panel.open_project(project)
    spin(lambda: bool(panel.volume_names()), 120)  # the table fills in the background
    name = volume or panel.volume_names()[0]
    panel.open_volume(name)
    assert spin(lambda: widget.session.volume is not None, 120), "volume did not open"
    spin(lambda: bool(widget.train_panel.methods), 120)
    return name


def start_to_overlay(meter, widget, label: str, timeout: float, **params) -> float | None:
    """Start a run; time until the automatic prediction overlay is shown."""
    train, review = widget.train_panel, widget.review_panel
    review.auto_check.setChecked(True)
    review.original = None
    train.set_method("pce")
    train.set_hyperparameters(**params)
    meter.begin(label)
    started = time.perf_counter()
    train.start_training()
    ok = spin(lambda: (train.last_result is not None and not train.is_running
                       and (train.last_result.status == "failed" or
                            (review.original is not None and not review._predicting))),
              timeout)
    seconds = time.perf_counter() - started
    result = train.last_result
    note = (f"Start → overlay {seconds:.1f} s" if ok and result.status != "failed"
            else f"no overlay ({result.error if result else 'timeout'})")
    meter.end(note)
    return seconds if ok and result and result.status != "failed" else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(10, 224, 224),
                        help="synthetic volume shape Z Y X (default: ACDC-like 10×224×224)")
    parser.add_argument("--train-seconds", type=float, default=20.0,
                        help="how long to watch a training run stream progress")
    parser.add_argument("--predictions", type=int, default=3)
    parser.add_argument("--acdc", type=Path, help="ACDC folder: also time one real volume")
    parser.add_argument("--acdc-budget-min", type=float, default=1.0,
                        help="training time budget on ACDC (minutes)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects")
    args = parser.parse_args(argv)
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        print("needs a screen: xvfb-run -a -s '-screen 0 1600x1000x24' "
              ".venv/bin/python benchmarks/gui_latency.py")
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="weakseg-latency-"))
    project = make_synthetic_project(tmp, args.shape)
    viewer, widget = open_viewer()
    meter = StallMeter()
    spin(lambda: False, 2.0)  # let napari settle (first paints, plugin discovery)
    name = open_volume(widget, project)
    train, review, annotate = widget.train_panel, widget.review_panel, widget.annotate_panel

    meter.begin("idle viewer")
    spin(lambda: False, 3.0)
    meter.end()

    # 1. Start → first overlay on the synthetic project (tiny run)
    tiny = {"iterations": 30, "batch_size": 4, "size": 64, "base_width": 8, "val_every": 15,
            "device": "cpu"}
    overlay_synthetic = start_to_overlay(meter, widget, "tiny run: Start → overlay", 300,
                                         **tiny)

    # 2. a run streaming progress (no automatic prediction), then cancelled
    review.auto_check.setChecked(False)
    train.set_hyperparameters(iterations=100000, batch_size=8, size=128, base_width=8,
                              val_every=50)
    meter.begin("training streams progress")
    train.start_training()
    spin(lambda: train.last_event is not None and train.last_event.type == "progress", 120)
    first_progress = time.perf_counter()
    spin(lambda: False, args.train_seconds)
    events = train.loss_plot.series.get("total", [])
    meter.end(f"{len(events)} progress events; run started in "
              f"{first_progress - meter._started:.1f} s")
    meter.begin("cancel → run recorded")
    train.cancel_training()
    spin(lambda: not train.is_running, 120)
    meter.end(f"status {train.last_result.status if train.last_result else '?'}")

    # 3. predictions (thread) with the model of the tiny run
    model = train.last_result.model_path or review.model_path
    for i in range(args.predictions):
        review.original = None
        meter.begin("prediction (model load + infer + overlay)" if i == 0
                    else "prediction (repeat)")
        review.predict(model)
        spin(lambda: review.original is not None and not review._predicting, 300)
        meter.end(f"{review.predict_seconds:.2f} s in the worker thread")

    # 4. annotation autosave in the background
    annotate.set_kind("scribble")
    layer = annotate.start_annotating()
    layer.brush_size = 8
    before = len(annotate.versions("scribble"))
    layer.paint((1, 100, 100), 2)  # napari's own painting and repaint are not ours to measure
    spin(lambda: False, 0.3)  # (the save waits for the edits to settle: 1.5 s)
    meter.begin("annotation autosave (after a stroke)")
    spin(lambda: len(annotate.versions("scribble")) > before, 30)
    meter.end()

    overlay_acdc = None
    if args.acdc:
        acdc_project = make_acdc_project(tmp, args.acdc)
        acdc_name = open_volume(widget, acdc_project)
        profile = {"iterations": 600, "batch_size": 8, "size": 128, "base_width": 8,
                   "val_every": 100, "device": "cpu", "minutes": args.acdc_budget_min}
        train.set_profile("quick-cpu")
        overlay_acdc = start_to_overlay(meter, widget,
                                        f"ACDC {acdc_name}: Start → overlay", 1800, **profile)

    print(f"\nnapari event loop, {TICK_MS} ms timer; volume {name} {tuple(args.shape)}; "
          f"{os.cpu_count()} CPU cores\n")
    print("| phase | seconds | ticks | median gap ms | p99 gap ms | max gap ms | "
          f"gaps > {TARGET_MS:.0f} ms | note |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for row in meter.rows:
        print(f"| {row['phase']} | {row['seconds']:.1f} | {row['ticks']} | "
              f"{row['median_ms']:.1f} | {row['p99_ms']:.1f} | {row['max_ms']:.1f} | "
              f"{row['over']} | {row['note']} |")
    print(f"\nStart → first prediction overlay (synthetic {tuple(args.shape)}, 30 it.): "
          f"{overlay_synthetic if overlay_synthetic is None else f'{overlay_synthetic:.1f} s'}")
    if args.acdc:
        print(f"Start → first prediction overlay (ACDC, quick-cpu, budget "
              f"{args.acdc_budget_min:g} min): "
              f"{overlay_acdc if overlay_acdc is None else f'{overlay_acdc:.1f} s'}")
    worst = max(row["max_ms"] for row in meter.rows)
    print(f"\nworst stall {worst:.0f} ms (target ≤ {TARGET_MS:.0f} ms)")
    viewer.close()
    if args.keep:
        print(f"projects kept in {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
