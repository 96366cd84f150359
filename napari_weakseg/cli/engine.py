"""``weakseg train``, ``weakseg predict``, ``weakseg evaluate``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ..errors import InputError, OptionError


def register(subparsers) -> None:
    from ..fields import add_arguments
    from ..tta import TTA_MODES
    from ..training.config import TrainConfig

    train = subparsers.add_parser(
        "train", help="train a model on a project's annotations (in a separate process)",
        description="Train METHOD on the annotated volumes of PROJECT; validate on volumes "
                    "tagged split=val that have a reference mask. Progress streams as it "
                    "runs; Ctrl-C cancels gracefully (a checkpoint is kept; --resume goes on).")
    train.add_argument("project", type=Path)
    train.add_argument("--method", help="pce, full, effdnet, refineseg, disambig, mixed (every "
                       "kind at once); default: the method that learns from every annotation "
                       "kind in the project (mixed when it holds several); with --resume the "
                       "run's recorded method and options are used")
    train.add_argument("--profile", default=None,
                       help="cpu (the default without a CUDA GPU), paper (the default with "
                            "one), or quick-cpu")
    # --iterations --batch-size --size --width --lr --val-every --device --threads --init
    # --minutes --preprocessing --target-spacing --normalisation --postprocess: declared once
    # with TrainConfig's fields (napari_weakseg.fields); not given = the profile's value
    add_arguments(train, TrainConfig)
    train.add_argument("--val", help='validation volumes as tag filters, e.g. "split=val"')
    train.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="method option (JSON value), repeatable")
    train.add_argument("--ground-truth", action="store_true",
                       help="train on the stored ground truth (the 'full' upper bound)")
    train.add_argument("--out", type=Path, required=True,
                       help="model folder to write (an existing model folder is replaced only "
                            "with --force; any other existing folder is refused)")
    train.add_argument("--force", action="store_true",
                       help="replace an existing model folder written by weakseg at --out")
    train.add_argument("--run-dir", type=Path, help="run folder (default: PROJECT/runs/…)")
    train.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN",
                       help="go on with a cancelled, failed, interrupted or budget-stopped run "
                            "from its checkpoint: RUN is its folder, its name under "
                            "PROJECT/runs or its id (default: --run-dir, else the newest "
                            "resumable run); method and options come from the run")
    train.set_defaults(handler=run_train)

    predict = subparsers.add_parser(
        "predict", help="predict NIfTI volumes with a model folder",
        description="Write one label NIfTI per input on the input's grid, affine and header.")
    predict.add_argument("model", type=Path)
    predict.add_argument("inputs", nargs="+", type=Path)
    predict.add_argument("--out", type=Path, required=True,
                         help="output folder (never an input's folder file; earlier "
                              "predictions written by weakseg there are replaced)")
    predict.add_argument("--force", action="store_true",
                         help="replace existing files in --out that weakseg did not write")
    predict.add_argument("--device", default="auto")
    predict.add_argument("--tta", choices=TTA_MODES,
                         help="test-time augmentation (default: the one the model records): "
                              "mirror = average the image and its 3 flips (4 passes), "
                              "none = one pass")
    predict.add_argument("--flip-tta", action="store_true", default=None,
                         help="old spelling of --tta mirror")
    predict.add_argument("--uncertainty", action="store_true",
                         help="also write the per-voxel entropy (float32)")
    predict.add_argument("--postprocess", choices=("none", "largest", "anatomy"),
                         help="post-processing (default: the one the model records; "
                              "anatomy = the largest 3D component of all foreground classes, "
                              "then the label schema's rules; largest = per class)")
    predict.add_argument("--largest-component", choices=("auto", "yes", "no"), default="auto",
                         help="old spelling: yes = --postprocess largest, no = none, auto = "
                              "the model's")
    predict.set_defaults(handler=run_predict)

    evaluate = subparsers.add_parser(
        "evaluate", help="Dice/HD95/ASSD of predictions against reference masks",
        description="Match PRED_DIR and GT_DIR NIfTI files by name; per-class 3D Dice, HD95 "
                    "and ASSD in mm; writes metrics.json and metrics.csv.")
    evaluate.add_argument("pred_dir", type=Path)
    evaluate.add_argument("gt_dir", type=Path)
    evaluate.add_argument("--out", type=Path, help="folder for metrics.json / metrics.csv")
    evaluate.add_argument("--classes", help="class names, comma separated (default: ACDC)")
    evaluate.set_defaults(handler=run_evaluate)


def _tag_filter(text: str | None) -> dict | None:
    if not text:
        return None
    pairs = [item.split("=", 1) for item in text.split(",")]
    if any(len(p) != 2 for p in pairs):
        raise OptionError(f"--val expects KEY=VALUE[,KEY=VALUE], got {text!r}")
    return dict(pairs)


def resolve_model(name_or_path: str | Path) -> str:
    """A model folder path, or the name of a zoo model (``acdc-cine-...``) → its folder."""
    from ..zoo import zoo_model, zoo_models

    path = Path(name_or_path)
    if path.exists():
        return str(path)
    found = zoo_model(str(name_or_path))
    if found is None:
        raise OptionError(f"--init {name_or_path}: neither a model folder nor a zoo model "
                          f"(zoo: {', '.join(zoo_models()) or 'empty'})")
    return str(found)


def parse_options(items: list[str]) -> dict:
    """``["lam=0.5", "fadc_box=all"]`` → ``{"lam": 0.5, "fadc_box": "all"}``: values are
    JSON, and a value that is not JSON is taken as a string."""
    options = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"--option {item!r}: expected KEY=VALUE")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        options[key.strip()] = value
    return options


#: Seconds between two progress lines of ``weakseg train`` written to a pipe or a log.
PIPE_PROGRESS_EVERY_S = 5.0


class EventPrinter:
    """The CLI's face of the typed events: one line each; progress redraws one line on a
    terminal and is thinned to about ten lines per run in logs and pipes, plus one every
    :data:`PIPE_PROGRESS_EVERY_S` seconds so a piped run is never silent for long."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.last_tenth = -1
        self.last_line = 0.0  # time of the last progress line (pipes: one every few s)

    def __call__(self, event) -> None:
        out = self.stream
        kind = event.type
        if kind == "progress":
            losses = " ".join(f"{k} {v:.4f}" for k, v in event.losses.items())
            line = (f"[{event.iteration}/{event.iterations}] {losses}  lr {event.lr:.2e}  "
                    f"{event.it_per_s:.2f} it/s  ETA {event.eta_s / 60:.1f} min")
            if self.tty:
                print("\r" + line, end="", file=out, flush=True)
                return
            tenth = event.iteration * 10 // max(event.iterations, 1)
            now = time.monotonic()
            if tenth > self.last_tenth or now - self.last_line >= PIPE_PROGRESS_EVERY_S:
                self.last_tenth = max(tenth, self.last_tenth)
                self.last_line = now
                print(line, file=out, flush=True)
        elif kind == "validation":
            dice = " ".join(f"{k} {v:.3f}" for k, v in event.dice.items())
            print(f"\n  validation @ {event.iteration}: {dice}  mean {event.mean_dice:.3f}"
                  f"{'  (best)' if event.best else ''}", file=out, flush=True)
        elif kind == "started":
            print(f"training {event.method} on {event.device}: {event.train_slices} slices, "
                  f"{event.val_volumes} validation volumes, iterations "
                  f"{event.start_iteration}→{event.iterations}", file=out, flush=True)
        elif kind == "log":
            print(event.message, file=out, flush=True)
        elif kind == "finished":
            print(f"\n{event.status} at iteration {event.iteration} in {event.seconds:.0f} s; "
                  f"best validation mean Dice {event.best_mean_dice}", file=out, flush=True)
        elif kind == "failed":
            print(f"\ntraining failed: {event.error}\n{event.traceback}", file=out, flush=True)


def run_train(args: argparse.Namespace) -> int:
    from ..fields import values_from_args
    from ..store import Project
    from ..training.config import TrainConfig, default_profile, profile
    from ..io.paths import check_model_output
    from ..training.project_runs import finalise_run, start_run

    protected = [args.project] + ([args.run_dir] if args.run_dir else [])
    check_model_output(args.out, force=args.force, protected=protected)
    with Project.open(args.project) as project:
        if args.resume is not None:
            handle = _resume(project, args)
            protected.append(handle.run_dir)
            check_model_output(args.out, force=args.force, protected=protected)
        else:
            if not args.method:
                from ..training.sources import default_method

                args.method = default_method({a.kind for a in project.annotations()})
                if not args.method:
                    raise OptionError("--method is required: the project holds no "
                                      "annotations to choose one from (or --resume [RUN])")
                print(f"method: {args.method} (learns from every annotation kind in the "
                      "project; --method overrides)", file=sys.stderr)
            overrides = values_from_args(args, TrainConfig)  # the flags given
            if overrides.get("init_model"):
                overrides["init_model"] = resolve_model(overrides["init_model"])
            else:
                overrides.pop("init_model", None)
            options = parse_options(args.option)
            config: TrainConfig = profile(args.profile or default_profile(), method=args.method,
                                          method_options=options, **overrides)
            config.validate(project.num_classes)
            _warn_unused(project, config.method, args.ground_truth)
            source = {"kind": "project", "path": str(project.root.resolve()),
                      "ground_truth_as_training": args.ground_truth}
            if args.val:
                source["val"] = _tag_filter(args.val)
            handle = start_run(project, config, source=source, run_dir=args.run_dir)
    final = None
    print_event = EventPrinter()

    def follow():
        nonlocal final
        for event in handle.run.events():
            print_event(event)
            if event.type in ("finished", "failed"):
                final = event

    try:
        follow()
    except KeyboardInterrupt:
        print("\ncancelling: the run saves a checkpoint (go on with: weakseg train "
              f"{args.project} --resume {handle.run_dir.name} --out {args.out})", flush=True)
        handle.run.cancel()
        follow()
    outcome = finalise_run(args.project, handle, final)
    if outcome.model_path is None:
        return 1
    check_model_output(args.out, force=args.force, protected=protected)  # may have changed
    _copy_model(outcome.model_path, args.out)
    print(f"model folder: {args.out} (registered in the project as {outcome.model_name})")
    return 0


def _warn_unused(project, method: str, ground_truth: bool) -> None:
    """Say which annotations a single-kind method leaves out (stderr, one line)."""
    from ..training.sources import unused_annotations, unused_message

    if ground_truth:
        return
    message = unused_message(method, unused_annotations(project, method))
    if message:
        print(f"note: {message}", file=sys.stderr, flush=True)


def _resume(project, args: argparse.Namespace):
    """``--resume [RUN]``: the run's folder, started again from its checkpoint with the
    method and options recorded in its ``run.json``."""
    from ..fields import given_flags
    from ..training.config import TrainConfig
    from ..training.project_runs import find_run, resume_run

    if args.resume and args.run_dir and \
            find_run(project, args.resume).resolve() != Path(args.run_dir).resolve():
        raise OptionError(f"--resume {args.resume} and --run-dir {args.run_dir} name "
                          "different runs")
    run_dir = find_run(project, args.resume or args.run_dir)
    ignored = [flag for flag, value in (
        *given_flags(args, TrainConfig), ("--val", args.val), ("--option", args.option),
        ("--ground-truth", args.ground_truth)) if value]
    if ignored:
        print(f"note: --resume goes on with the run's recorded options; ignoring "
              f"{', '.join(ignored)}", file=sys.stderr)
    handle = resume_run(project, run_dir, method=args.method)
    print(f"resuming {handle.method} run {run_dir}", flush=True)
    return handle


def _copy_model(source: Path, target: Path) -> None:
    """Copy a model folder into a fresh temporary sibling, then swap it in; an existing
    target (checked by :func:`~napari_weakseg.io.paths.check_model_output`) is moved aside
    and removed only after the new folder is in place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        copy = staging / "model"
        shutil.copytree(source, copy)
        old = None
        if target.exists():
            old = staging / "previous"
            target.rename(old)
        copy.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run_predict(args: argparse.Namespace) -> int:
    from ..inference.predictor import Predictor
    from ..io import VolumeError, read_any, volume_name, write_labels, write_volume
    from ..io.paths import OutputFolder

    postprocess = args.postprocess
    if args.largest_component != "auto":
        alias = "largest" if args.largest_component == "yes" else "none"
        if postprocess not in (None, alias):
            raise OptionError(f"--largest-component {args.largest_component} contradicts "
                              f"--postprocess {postprocess}")
        postprocess = alias
    predictor = Predictor(args.model, device=args.device, postprocess=postprocess,
                          flip_tta=args.flip_tta, tta=args.tta)
    predictor.load()
    print(predictor.describe())
    outputs = OutputFolder(args.out, inputs=args.inputs, force=args.force)
    for path in args.inputs:  # refuse every clash before the first prediction is written
        stem = volume_name(path)
        outputs.path_for(stem, ".nii.gz", source=path)
        if args.uncertainty:
            outputs.path_for(f"{stem}_entropy", ".nii.gz", source=path)
    failed = 0
    for path in args.inputs:
        try:
            volume = read_any(path, allow_4d=False)  # NIfTI, NRRD, MHA/MHD, DICOM series
        except VolumeError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            failed += 1
            continue
        prediction = predictor.predict(volume.data, volume.geometry.spatial_spacing)
        labels = prediction.labels
        stem = volume_name(path)
        out = write_labels(outputs.path_for(stem, ".nii.gz", source=path), labels,
                           volume.geometry)
        outputs.record(out)
        if args.uncertainty:
            entropy = write_volume(outputs.path_for(f"{stem}_entropy", ".nii.gz", source=path),
                                   prediction.entropy, volume.geometry)
            outputs.record(entropy)
        print(f"{path} → {out}")
    return 1 if failed else 0


def run_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.metrics import evaluate_volume, summarise, write_csv, write_json
    from ..io import read_labels, strip_nifti_suffix
    from ..schema import LabelSchema

    names = args.classes.split(",") if args.classes else LabelSchema.cardiac().names
    classes = {i: n for i, n in enumerate(names) if i}
    preds = {strip_nifti_suffix(p.name): p for p in sorted(args.pred_dir.glob("*.nii*"))}
    gts = {strip_nifti_suffix(p.name): p for p in sorted(args.gt_dir.glob("*.nii*"))}
    common = sorted(set(preds) & set(gts))
    if not common:
        raise InputError(f"{args.pred_dir}: no file name matches one in {args.gt_dir}")
    missing = sorted(set(gts) - set(preds))
    if missing:  # one line, not one per file
        shown = ", ".join(missing[:8]) + (f" … ({len(missing) - 8} more)" if len(missing) > 8
                                          else "")
        print(f"warning: {len(missing)} of {len(gts)} reference volume(s) have no prediction "
              f"in {args.pred_dir} and are not evaluated: {shown}", file=sys.stderr)
    results = {}
    for name in common:
        gt = read_labels(gts[name])
        pred = read_labels(preds[name], like=gt.geometry)
        results[name] = evaluate_volume(pred.data, gt.data, spacing=gt.geometry.spatial_spacing,
                                        classes=classes)
    summary = summarise(results)
    out = args.out or args.pred_dir
    write_json(out / "metrics.json", results, summary)
    write_csv(out / "metrics.csv", results, summary)
    print(f"{len(common)} volumes\n\n| class | Dice | HD95 (mm) | ASSD (mm) |\n|---|---|---|---|")
    for name, row in summary["per_class"].items():
        print(f"| {name} | {row['dice']['mean']:.3f} ± {row['dice']['std']:.3f} | "
              f"{row['hd95_mm']['mean']:.2f} | {row['assd_mm']['mean']:.2f} |")
    print(f"\nmetrics written to {out / 'metrics.json'} and {out / 'metrics.csv'}")
    return 0
