"""``weakseg train``, ``weakseg predict``, ``weakseg evaluate``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train", help="train a model on a project's annotations (in a separate process)",
        description="Train METHOD on the annotated volumes of PROJECT; validate on volumes "
                    "tagged split=val that have a reference mask. Progress streams as it "
                    "runs; Ctrl-C cancels gracefully (a checkpoint is kept; --resume goes on).")
    train.add_argument("project", type=Path)
    train.add_argument("--method", required=True, help="pce, full, effdnet, refineseg, disambig")
    train.add_argument("--profile", default="paper", help="paper (default) or quick-cpu")
    train.add_argument("--iterations", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--size", type=int, help="training slice size (multiple of 16)")
    train.add_argument("--width", type=int, help="U-Net base width")
    train.add_argument("--lr", type=float)
    train.add_argument("--init", help="model folder to fine-tune from")
    train.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N, mps")
    train.add_argument("--val", help='validation volumes as tag filters, e.g. "split=val"')
    train.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="method option (JSON value), repeatable")
    train.add_argument("--minutes", type=float, help="wall-clock budget")
    train.add_argument("--ground-truth", action="store_true",
                       help="train on the stored ground truth (the 'full' upper bound)")
    train.add_argument("--out", type=Path, required=True, help="model folder to write")
    train.add_argument("--run-dir", type=Path, help="run folder (default: PROJECT/runs/…)")
    train.add_argument("--resume", action="store_true", help="go on with --run-dir's run")
    train.set_defaults(handler=run_train)

    predict = subparsers.add_parser(
        "predict", help="predict NIfTI volumes with a model folder",
        description="Write one label NIfTI per input on the input's grid, affine and header.")
    predict.add_argument("model", type=Path)
    predict.add_argument("inputs", nargs="+", type=Path)
    predict.add_argument("--out", type=Path, required=True)
    predict.add_argument("--device", default="auto")
    predict.add_argument("--flip-tta", action="store_true")
    predict.add_argument("--uncertainty", action="store_true",
                         help="also write the per-voxel entropy (float32)")
    predict.add_argument("--largest-component", choices=("auto", "yes", "no"), default="auto",
                         help="keep each class's largest 3D component (auto: as the model's "
                              "config recommends)")
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
        raise ValueError(f"--val expects KEY=VALUE[,KEY=VALUE], got {text!r}")
    return dict(pairs)


class EventPrinter:
    """The CLI's face of the typed events: one line each; progress redraws one line on a
    terminal and is thinned to about ten lines per run in logs and pipes."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.last_tenth = -1

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
            if tenth > self.last_tenth:
                self.last_tenth = tenth
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
    from ..store import Project
    from ..training.config import TrainConfig, profile
    from ..training.project_runs import finalise_run, resume_run, start_run

    with Project.open(args.project) as project:
        if args.resume:
            if not args.run_dir:
                raise ValueError("--resume needs --run-dir")
            handle = resume_run(project, args.run_dir)
        else:
            overrides = {k: v for k, v in {
                "iterations": args.iterations, "batch_size": args.batch_size,
                "size": args.size, "base_width": args.width, "lr": args.lr,
                "init_model": str(args.init) if args.init else None, "device": args.device,
                "max_seconds": args.minutes * 60 if args.minutes else None}.items()
                if v is not None}
            options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)}
            config: TrainConfig = profile(args.profile, method=args.method,
                                          method_options=options, **overrides)
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
        print("\ncancelling: the run saves a checkpoint (go on with --resume --run-dir "
              f"{handle.run_dir})", flush=True)
        handle.run.cancel()
        follow()
    outcome = finalise_run(args.project, handle, final)
    if outcome.model_path is None:
        return 1
    _copy_model(outcome.model_path, args.out)
    print(f"model folder: {args.out} (registered in the project as {outcome.model_name})")
    return 0


def _copy_model(source: Path, target: Path) -> None:
    """Copy a model folder next to its destination, then swap it in."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def run_predict(args: argparse.Namespace) -> int:
    from ..inference.predict import predict_volume
    from ..io import VolumeError, read_volume, strip_nifti_suffix, write_labels, write_volume
    from ..nets.model_folder import load_model
    from ..training.trainer import select_device

    from ..inference.export import keep_largest_component

    device = select_device(args.device)
    net, config = load_model(args.model, device=str(device))
    size = config["preprocessing"]["size"]
    largest = (config.get("postprocessing", {}).get("largest_component", False)
               if args.largest_component == "auto" else args.largest_component == "yes")
    failed = 0
    for path in args.inputs:
        try:
            volume = read_volume(path, allow_4d=False)
        except VolumeError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            failed += 1
            continue
        prediction = predict_volume(net, volume.data, size, device=device,
                                    flip_tta=args.flip_tta)
        labels = prediction.labels
        if largest:
            labels = keep_largest_component(labels, len(config["classes"]))
        stem = strip_nifti_suffix(path.name)
        out = write_labels(args.out / f"{stem}.nii.gz", labels, volume.geometry)
        if args.uncertainty:
            write_volume(args.out / f"{stem}_entropy.nii.gz", prediction.entropy,
                         volume.geometry)
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
        raise ValueError(f"{args.pred_dir}: no file name matches one in {args.gt_dir}")
    for name in sorted(set(gts) - set(preds)):
        print(f"warning: no prediction for {name}", file=sys.stderr)
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
