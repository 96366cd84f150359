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


def register(subparsers) -> None:
    from ..fields import add_arguments
    from ..inference.export.options import ExportOptions

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
    # every ExportOptions flag (--probabilities … --qc-lowest) is declared once with its
    # field (napari_weakseg.fields); not given = the ExportOptions default
    add_arguments(export, ExportOptions)
    export.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                        help="project volumes with this tag only (repeatable), e.g. split=test")
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from ..fields import values_from_args
    from ..inference.export import ExportOptions, export_cohort

    tags = {}
    for text in args.tag:
        key, value = split_assignment(text, OptionError,
                                      f"--tag expects KEY=VALUE, got {text!r}")
        tags[key] = value
    options = ExportOptions(**values_from_args(args, ExportOptions))
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
