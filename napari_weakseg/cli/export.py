"""``weakseg export``: predictions, maps and measurements for a whole cohort."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from ..errors import OptionError
from ..states import ExportStatus
from ._args import split_assignment


def _shard(text: str) -> tuple[int, int]:
    from ..inference.export import parse_shard

    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers) -> None:
    export = subparsers.add_parser(
        "export", help="export predictions and measurements for a cohort (resumable)",
        description="Predict every volume of a project, a folder or the given files with "
                    "MODEL_DIR; write one label NIfTI per volume on its own grid and header, "
                    "optional probability/uncertainty maps, measurements.csv (per-class mL, "
                    "QC, cardiac ED/ES function), a manifest and a QC report (qc/index.html: "
                    "pictures of flagged and least confident volumes, EF plot, tables). "
                    "Reruns skip what is done; "
                    "bad inputs are reported and skipped (exit code 1). See docs/export.md.")
    export.add_argument("model", type=Path, metavar="MODEL_DIR")
    export.add_argument("inputs", nargs="+", type=Path, metavar="PROJECT|FOLDER|FILE")
    export.add_argument("--out", type=Path, required=True, metavar="DIR")
    export.add_argument("--shard", type=_shard, metavar="i/n",
                        help="export shard i (0-based) of n; under torchrun each rank takes "
                             "its part of it")
    export.add_argument("--force", action="store_true", help="redo volumes already exported")
    export.add_argument("--probabilities", action="store_true",
                        help="also write the softmax probabilities (float32, X×Y×Z×C)")
    export.add_argument("--uncertainty", action="store_true",
                        help="also write the voxel entropy (float32, nats)")
    export.add_argument("--postprocess", choices=("none", "largest", "anatomy"),
                        help="post-processing of the labels (default: the one the model "
                             "records); recorded in the manifest")
    export.add_argument("--largest-component", action="store_true",
                        help="old spelling of --postprocess largest")
    export.add_argument("--fill-holes", action="store_true",
                        help="fill background holes enclosed by one class (per slice)")
    export.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    export.add_argument("--flip-tta", action="store_true",
                        help="average plain and flipped predictions")
    export.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                        help="project volumes with this tag only (repeatable), e.g. split=test")
    export.add_argument("--threads", type=int, help="torch CPU threads")
    export.add_argument("--prefetch", type=int, default=1,
                        help="volumes read ahead while predicting (default 1; 0: off)")
    export.add_argument("--no-qc-report", dest="qc_report", action="store_false",
                        help="do not write the QC report qc/index.html")
    export.add_argument("--qc-lowest", type=int, default=10, metavar="N",
                        help="the QC report also pictures the N volumes of highest mean "
                             "uncertainty (default 10; flagged volumes are always shown)")
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from ..inference.export import ExportOptions, export_cohort

    tags = {}
    for text in args.tag:
        key, value = split_assignment(text, OptionError,
                                      f"--tag expects KEY=VALUE, got {text!r}")
        tags[key] = value
    options = ExportOptions(
        probabilities=args.probabilities, uncertainty=args.uncertainty,
        largest_component=args.largest_component, postprocess=args.postprocess,
        fill_holes=args.fill_holes,
        flip_tta=args.flip_tta, device=args.device, force=args.force, shard=args.shard,
        threads=args.threads, prefetch=args.prefetch, qc_report=args.qc_report,
        qc_lowest=args.qc_lowest)
    cancel = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        def on_interrupt(signum, frame):
            if cancel.is_set():
                raise KeyboardInterrupt
            cancel.set()
            print("\ncancelling after the current volume (Ctrl-C again to stop now)",
                  file=sys.stderr, flush=True)
        previous = signal.signal(signal.SIGINT, on_interrupt)

    def show(event) -> None:
        if event.status in (ExportStatus.EXPORTED, ExportStatus.SKIPPED):
            print(f"[{event.done}/{event.total}] {event.status} {event.name} "
                  f"({event.seconds:.1f} s)", flush=True)

    def message(text: str) -> None:
        if text.startswith(("failed", "ignored", "Traceback")):
            print(text, file=sys.stderr, flush=True)

    try:
        report = export_cohort(args.model, args.inputs, args.out, options,
                               tags=tags or None, progress=show, cancel=cancel,
                               message=message)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    print(report.summary())
    if report.csv_path:
        print(f"measurements: {report.csv_path}")
    if report.qc_path:
        print(f"QC report: {report.qc_path}")
    if report.failed:
        print(f"{len(report.failed)} volumes failed (listed above, in measurements.csv and "
              f"in {args.out / 'export.log'})", file=sys.stderr)
    return report.exit_code
