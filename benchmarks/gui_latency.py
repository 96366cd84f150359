"""How responsive napari stays while WeakSeg works in the background.

Runs a real napari window (use a virtual screen)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/gui_latency.py
    xvfb-run -a ... .venv/bin/python benchmarks/gui_latency.py --acdc ../shared/data/acdc

A ``QTimer`` ticks every 10 ms on napari's event loop; the longest gap between two ticks
is the longest time the viewer could not react (repaint, mouse, keys). Phases: idle, a
training run streaming progress (separate process, events read by a thread), predictions
(model load + whole-volume inference in a thread, then the overlays are added), and an
annotation autosave, the zoo model fine-tuned on napari's WeakSeg sample with the GUI's
defaults (live previews every 15 s: when each preview overlay appears after "Start" and
its mean Dice against the sample's truth), then a batch export from the Export panel.
Also timed: "Start" → the first prediction overlay of a tiny new run. With ``--acdc`` the
zoo fine-tune with previews is repeated on one real ACDC volume (a project importing the
ACDC folder by reference, quick-cpu profile; ``--from-scratch`` adds a new model's Start →
overlay). Targets (issue 17): worst stall < 200 ms and p99 gap < 50 ms over the whole
session, first overlay ≤ 30 s after Start, first overlay with Dice ≥ 0.8 ≤ 60 s. Prints
Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TICK_MS = 10
TARGET_MS = 100.0
#: issue 17's targets: worst stall, p99 gap, Start → first overlay, → first overlay Dice ≥ 0.8
STALL_TARGET_MS, P99_TARGET_MS, FIRST_TARGET_S, GOOD_TARGET_S = 200.0, 50.0, 30.0, 60.0
GOOD_DICE = 0.8


class StallMeter:
    """Records the gaps between ticks of a 10 ms QTimer, per named phase."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.rows: list[dict] = []
        self.session_gaps: list[float] = []   # every gap inside a phase: the whole session
        self._gaps: list[float] = []
        self._last = time.perf_counter()
        self._timer = QTimer()
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()
        self._phase = None
        self._started = 0.0
        #: every gap over STALL_TARGET_MS inside a phase: (phase, seconds into it, ms,
        #: the tick it started from — the key of the tracer's samples)
        self.stalls: list[tuple[str, float, float, float]] = []

    def _tick(self):
        now = time.perf_counter()
        gap = (now - self._last) * 1000.0
        self._gaps.append(gap)
        if self._phase is not None:  # the benchmark's own set-up between phases is not ours
            self.session_gaps.append(gap)
            if gap > STALL_TARGET_MS:
                self.stalls.append((self._phase, self._last - self._started, gap, self._last))
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
        self._phase = None
        return row


class StallTracer:
    """``--trace-stalls``: a thread that, while the event loop has not ticked for more than
    ``threshold_ms``, samples the main thread's Python stack; prints where stalls were."""

    def __init__(self, meter: StallMeter, threshold_ms: float = 120.0,
                 native_ms: float | None = None):
        import threading

        self.meter, self.threshold = meter, threshold_ms / 1000.0
        #: ``--native-stalls MS``: once a stall passes MS, ``py-spy dump --native`` of this
        #: process (Python and C/C++ frames of every thread; needs py-spy and ptrace
        #: rights), once per stall; the main thread's innermost frames are counted
        self.native = None if native_ms is None else native_ms / 1000.0
        self.native_stacks: dict[str, int] = {}
        self.native_dumps: list[str] = []
        self._dumped_for = None
        self.samples: dict[str, int] = {}
        #: stall (the tick it started from) → the main thread's stacks sampled during it
        self.per_stall: dict[float, list[str]] = {}
        #: the tracer thread's own late wake-ups (ms): a stall the tracer shares is
        #: process-wide (GIL or CPU), one it does not share is the main thread's own work
        self.late_ms: list[float] = []
        self.process_wide: dict[str, int] = {}
        self.main = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        import threading
        import traceback

        names = {}
        expected = time.perf_counter() + 0.02
        while not self._stop.wait(0.02):
            now = time.perf_counter()
            late, expected = now - expected, now + 0.02
            if self.meter._phase is not None and late > self.threshold:
                # this thread could not run either: the whole process was held (the GIL
                # kept by a C call in another thread, or no CPU) — record what the other
                # threads were doing as it resumed
                names.update({t.ident: t.name for t in threading.enumerate()})
                for ident, frame in sys._current_frames().items():
                    if ident in (self.main, threading.get_ident()):
                        continue
                    top = [f"{Path(f.filename).name}:{f.lineno} {f.name}"
                           for f in traceback.extract_stack(frame)][-4:]
                    key = (f"[{self.meter._phase}] tracer late {late * 1000:.0f} ms; "
                           f"{names.get(ident, ident)}: " + " < ".join(reversed(top)))
                    self.process_wide[key] = self.process_wide.get(key, 0) + 1
                self.late_ms.append(late * 1000)
            if self.meter._phase is None or \
                    time.perf_counter() - self.meter._last < self.threshold:
                continue
            if self.native is not None and self._dumped_for != self.meter._last and \
                    time.perf_counter() - self.meter._last > self.native:
                self._dumped_for = self.meter._last
                self._native_dump()
            frame = sys._current_frames().get(self.main)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)
            lines = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in stack
                     if "napari_weakseg" in f.filename or "vispy" in f.filename
                     or "/napari/" in f.filename][-6:] or \
                [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in stack][-6:]
            key = f"[{self.meter._phase}] " + " < ".join(reversed(lines))
            self.samples[key] = self.samples.get(key, 0) + 1
            self.per_stall.setdefault(self.meter._last, []).append(" < ".join(
                reversed(lines[-3:])))

    def _native_dump(self) -> None:
        import os
        import shutil
        import subprocess

        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        stalled = (time.perf_counter() - self.meter._last) * 1000
        try:
            text = subprocess.run([spy, "dump", "--native", "--pid", str(os.getpid())],
                                  capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            text = f"py-spy failed: {exc}"
        self.native_dumps.append(f"[{self.meter._phase}] stalled {stalled:.0f} ms\n{text}")
        main = text.split("Thread ")
        block = next((b for b in main if "MainThread" in b.splitlines()[0]), "") \
            if main else ""
        frames = [line.strip() for line in block.splitlines()[1:] if line.strip()][:8]
        key = f"[{self.meter._phase}] " + " < ".join(f.split(" (")[0] for f in frames)
        self.native_stacks[key] = self.native_stacks.get(key, 0) + 1

    def report(self) -> None:
        self._stop.set()
        if self.native is not None:
            print(f"\nThe main thread's innermost native frames, one py-spy dump per stall "
                  f"over {self.native * 1000:.0f} ms ({len(self.native_dumps)} dumps):")
            for key, count in sorted(self.native_stacks.items(), key=lambda kv: -kv[1]):
                print(f"  {count:3d}×  {key}")
            for dump in self.native_dumps[:3]:
                print("\n" + dump)
        print(f"\nThe stalls over {STALL_TARGET_MS:.0f} ms, longest first, with the main "
              f"thread's stack every 20 ms from {self.threshold * 1000:.0f} ms into each:")
        for phase, offset, gap, start in sorted(self.meter.stalls, key=lambda r: -r[2])[:12]:
            print(f"  {gap:6.0f} ms  [{phase}] at {offset:.1f} s")
            for line in self.per_stall.get(start, [])[:12]:
                print(f"             {line}")
        print("\nWhere the main thread was during stalls (20 ms samples):")
        for key, count in sorted(self.samples.items(), key=lambda kv: -kv[1])[:30]:
            print(f"  {count * 20:5d} ms  {key}")
        shared = sorted(self.late_ms, reverse=True)
        print(f"\nStalls the tracer thread shared (process-wide: GIL or CPU): {len(shared)}, "
              f"longest {', '.join(f'{v:.0f}' for v in shared[:8]) or '-'} ms; the other "
              "threads as the process resumed:")
        for key, count in sorted(self.process_wide.items(), key=lambda kv: -kv[1])[:20]:
            print(f"  {count:3d}×  {key}")


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


def mean_dice(labels, truth, classes=(1, 2, 3)) -> float:
    from napari_weakseg.evaluation.metrics import dice

    labels, truth = np.asarray(labels), np.asarray(truth)
    return float(np.mean([dice(labels == c, truth == c) for c in classes
                          if (truth == c).any()]))


def fine_tune_with_previews(meter, widget, label: str, truth, timeout: float,
                            **params) -> dict:
    """Fine-tune the zoo model on the open volume's project with live previews on; record
    when each preview overlay appears and its mean Dice against ``truth``, then the final
    overlay. Returns ``{"first": s, "first_good": s (Dice ≥ 0.8), "previews": [(s, it,
    dice)], "final": s, "final_dice": d}`` (seconds after Start; None = never)."""
    from napari_weakseg.zoo import default_model

    train, review = widget.train_panel, widget.review_panel
    review.auto_check.setChecked(True)
    review.preview_check.setChecked(True)
    review.original = None
    train.set_start_model(default_model())
    train.set_hyperparameters(**params)
    previews: list[tuple[float, int, float]] = []
    seen = {"event": None}
    meter.begin(label)
    started = time.perf_counter()
    train.start_training()

    def watch():
        event = review.preview_event
        if event is not None and event is not seen["event"] and review.preview_layer:
            seen["event"] = event
            previews.append((time.perf_counter() - started, int(event.iteration),
                             mean_dice(review.preview_layer.data, truth)))
        return (train.last_result is not None and not train.is_running
                and (train.last_result.status == "failed" or
                     (review.original is not None and not review._predicting)))

    ok = spin(watch, timeout, poll_ms=50)
    final = time.perf_counter() - started if ok else None
    result = train.last_result
    final_dice = (mean_dice(review.prediction_layer.data, truth)
                  if ok and review.prediction_layer is not None else None)
    good = [t for t, _, d in previews if d >= GOOD_DICE]
    out = {"first": previews[0][0] if previews else None,
           "first_good": good[0] if good else None, "previews": previews,
           "final": final, "final_dice": final_dice,
           "status": result.status if result else "timeout", "model": result.model_path
           if result else None}
    meter.end(f"method {train.method}; {len(previews)} previews; first at "
              f"{_s(out['first'])}, first with Dice ≥ {GOOD_DICE} at {_s(out['first_good'])}; "
              f"final overlay {_s(final)} (Dice {_d(final_dice)}, {out['status']})")
    return out


def _s(seconds) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


def _d(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def export_phase(meter, widget, model, inputs, out: Path, timeout: float = 600) -> str:
    """Batch-export ``inputs`` with ``model`` from the Export panel (its worker thread)."""
    panel = widget.export_panel
    panel.model_edit.setText(str(model))
    panel.input_edit.setText(";".join(str(p) for p in inputs))
    panel.out_edit.setText(str(out))
    meter.begin("export (panel worker, overlays of open images)")
    panel.start()
    spin(lambda: not panel.running, timeout)
    report = panel.report
    note = (f"{report.summary().splitlines()[0]}" if report is not None and
            hasattr(report, "summary") else f"status: {panel.status.text()[:80]}")
    meter.end(note)
    return note


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
    parser.add_argument("--finetune-min", type=float, default=1.5,
                        help="time budget of the zoo fine-tunes with live previews (minutes)")
    parser.add_argument("--from-scratch", action="store_true",
                        help="with --acdc: also time a new model's Start → overlay")
    parser.add_argument("--training-nice", type=int, default=None,
                        help="niceness of the training process (default: the GUI's, "
                             "widgets.logic.TRAINING_NICENESS)")
    parser.add_argument("--trace-stalls", action="store_true",
                        help="sample the main thread's stack during stalls and print it")
    parser.add_argument("--native-stalls", type=float, metavar="MS",
                        help="also take one 'py-spy dump --native' of the process per stall "
                             "longer than MS (py-spy installed, ptrace allowed)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects")
    args = parser.parse_args(argv)
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        print("needs a screen: xvfb-run -a -s '-screen 0 1600x1000x24' "
              ".venv/bin/python benchmarks/gui_latency.py")
        return 2

    if args.training_nice is not None:
        from napari_weakseg.widgets import logic

        logic.TRAINING_NICENESS = args.training_nice
    tmp = Path(tempfile.mkdtemp(prefix="weakseg-latency-"))
    project = make_synthetic_project(tmp, args.shape)
    viewer, widget = open_viewer()
    meter = StallMeter()
    tracer = StallTracer(meter, native_ms=args.native_stalls) \
        if args.trace_stalls or args.native_stalls else None
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

    # 5. the sample: fine-tune the zoo model with live previews (the GUI's defaults), export
    from napari_weakseg.synthetic import make_cohort

    sample_root = tmp / "sample"
    sample_project = make_synthetic_project(sample_root, (10, 128, 128))
    sample_truth = make_cohort(1, frames=(0.0,), shape=(10, 128, 128))[0].ground_truth
    open_volume(widget, sample_project, "synth000_frame01")  # = napari's WeakSeg sample
    live = {"sample": fine_tune_with_previews(
        meter, widget, "sample: fine-tune the zoo, live previews", sample_truth, 1800,
        minutes=args.finetune_min, device="cpu")}
    export_note = None
    if live["sample"]["model"]:
        export_note = export_phase(meter, widget, live["sample"]["model"],
                                   [sample_root / "data" / "images"], tmp / "export")

    overlay_acdc = None
    if args.acdc:
        from napari_weakseg.io import read_labels, read_volume

        acdc_project = make_acdc_project(tmp, args.acdc)
        acdc_name = open_volume(widget, acdc_project)
        image = read_volume(args.acdc / "images" / f"{acdc_name}.nii.gz")
        acdc_truth = read_labels(args.acdc / "labels" / f"{acdc_name}.nii.gz",
                                 like=image.geometry).data
        train.set_profile("quick-cpu")
        live["ACDC"] = fine_tune_with_previews(
            meter, widget, f"ACDC {acdc_name}: fine-tune the zoo, live previews", acdc_truth,
            1800, minutes=args.finetune_min, device="cpu")
        if args.from_scratch:
            profile = {"iterations": 600, "batch_size": 8, "size": 128, "base_width": 8,
                       "val_every": 100, "device": "cpu", "minutes": args.acdc_budget_min}
            train.set_start_model(None)
            overlay_acdc = start_to_overlay(meter, widget,
                                            f"ACDC {acdc_name}: new model, Start → overlay",
                                            1800, **profile)

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
    if overlay_acdc is not None or args.from_scratch:
        print(f"Start → first prediction overlay (ACDC, new model, quick-cpu, budget "
              f"{args.acdc_budget_min:g} min): "
              f"{overlay_acdc if overlay_acdc is None else f'{overlay_acdc:.1f} s'}")
    print("\nLive previews while fine-tuning the zoo model (GUI defaults; seconds after Start; "
          f"targets: first overlay ≤ {FIRST_TARGET_S:.0f} s, first with Dice ≥ {GOOD_DICE} ≤ "
          f"{GOOD_TARGET_S:.0f} s)\n")
    print("| volume | first preview overlay | first with Dice ≥ 0.8 | previews (s: iteration, "
          "Dice) | final overlay | final Dice |")
    print("|---|---:|---:|---|---:|---:|")
    for where, rec in live.items():
        shown = ", ".join(f"{t:.0f}: {it}, {d:.2f}" for t, it, d in rec["previews"][:8])
        print(f"| {where} | {_s(rec['first'])} | {_s(rec['first_good'])} | {shown or '—'} | "
              f"{_s(rec['final'])} | {_d(rec['final_dice'])} |")
    gaps = sorted(meter.session_gaps) or [0.0]
    worst, p99 = gaps[-1], gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))]
    print(f"\nwhole session ({len(gaps)} ticks in the phases above, overlays and export "
          f"included): worst stall {worst:.0f} ms (target < {STALL_TARGET_MS:.0f} ms), p99 gap "
          f"{p99:.1f} ms (target < {P99_TARGET_MS:.0f} ms)")
    if export_note:
        print(f"export: {export_note}")
    if tracer is not None:
        tracer.report()
    viewer.close()
    if args.keep:
        print(f"projects kept in {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
