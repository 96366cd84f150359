"""``weakseg demo``: the headless walk through the loop (what runs without a display)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def register(subparsers) -> None:
    demo = subparsers.add_parser(
        "demo", help="run the headless demo (synthetic data → project → fine-tune the zoo "
                     "model on the scribbles → Dice + PNG)",
        description="Generate the synthetic cardiac cohort, import it into a project with "
                    "its scribbles, fine-tune the default zoo model on them with pCE on CPU "
                    "in a separate process (--from-scratch: train from random weights), "
                    "predict the held-out subject, print per-class Dice and write an overlay "
                    "PNG.")
    demo.add_argument("--out", type=Path, default=Path("weakseg-demo"), help="working folder")
    demo.add_argument("--iterations", type=int, default=None,
                      help="training iterations (default: 80 when fine-tuning, 600 from "
                           "scratch)")
    demo.add_argument("--from-scratch", action="store_true",
                      help="train from random weights instead of fine-tuning the zoo model")
    demo.add_argument("--subjects", type=int, default=4, help="synthetic subjects (last = val)")
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from ..evaluation.metrics import evaluate_volume
    from ..inference.predictor import Predictor
    from ..store import Project
    from ..store.importers import import_folder
    from ..synthetic import make_cohort, write_cohort
    from ..training.config import profile
    from ..training.runner import TrainingRun
    from ..zoo import default_model
    from .engine import EventPrinter

    out: Path = args.out
    print(f"1. synthetic cardiac cine cohort ({args.subjects} subjects × ED/ES) → {out / 'data'}")
    cases = make_cohort(args.subjects, seed=0, shape=(8, 96, 96),
                        spacing=(10.0, 2.0, 2.0))
    write_cohort(out / "data", cases)
    print(f"2. project {out / 'project'}: images, scribbles as annotations, truth kept apart")
    project = Project.open_or_create(out / "project")
    try:
        import_folder(project, out / "data", copy=True, tags={"dataset": "synthetic"})
        val_subject = f"synth{args.subjects - 1:03d}"
        for record in project.volumes():
            split = "val" if record.name.startswith(val_subject) else "train"
            project.set_tags(record, split=split, modality="cine-MRI")
        print(f"   {len(project.volumes(split='train'))} training volumes, "
              f"{len(project.volumes(split='val'))} validation volumes")
    finally:
        project.close()
    parent = None if args.from_scratch else default_model()
    iterations = args.iterations or (80 if parent is not None else 600)
    config = profile("quick-cpu", method="pce", iterations=iterations, size=96,
                     val_every=max(iterations // 4, 1), checkpoint_every=max(iterations // 4, 1),
                     init_model=str(parent) if parent is not None else None)
    if parent is not None:
        print(f"3. fine-tuning the zoo model {parent.name} with pCE for {iterations} iterations "
              "(separate process; its pre- and post-processing are kept)")
    else:
        print(f"3. training pCE from scratch for {iterations} iterations (quick CPU profile, "
              "separate process)")
    run = TrainingRun(out / "run", config, {"kind": "project",
                                            "path": str((out / "project").resolve())})
    run.start()
    final = None
    print_event = EventPrinter()
    for event in run.events():
        print_event(event)
        final = event if event.type in ("finished", "failed") else final
    if final is None or final.type != "finished":
        return 1
    print("4. predicting the held-out subject")
    predictor = Predictor(final.model_dir, device="cpu")
    print(f"   {predictor.describe()}")
    val_cases = [c for c in cases if c.name.startswith(val_subject)]
    print("\n| volume | RV | MYO | LV |\n|---|---|---|---|")
    for case in val_cases:
        prediction = predictor.predict(case.image, case.geometry.spatial_spacing)
        scores = evaluate_volume(prediction.labels, case.ground_truth,
                                 case.geometry.spatial_spacing,
                                 classes={1: "RV", 2: "MYO", 3: "LV"})
        print(f"| {case.name} | " + " | ".join(f"{scores[n]['dice']:.3f}"
                                             for n in ("RV", "MYO", "LV")) + " |")
    png = out / "overlay.png"
    write_overlay(png, val_cases[0].image, prediction_for(predictor, val_cases[0]),
                  val_cases[0].ground_truth)
    print(f"\n5. overlay (image | prediction | ground truth, middle slice): {png}")
    return 0


def prediction_for(predictor, case):
    """The labels of a synthetic ``case`` (its own spacing) by a ``Predictor``."""
    return predictor.predict(case.image, case.geometry.spatial_spacing).labels


def write_overlay(path: Path, image: np.ndarray, prediction: np.ndarray,
                  truth: np.ndarray) -> None:
    """Middle slice: grey image | prediction overlay | truth overlay, schema colours."""
    from PIL import Image

    from ..schema import LabelSchema

    z = image.shape[0] // 2
    grey = image[z] / max(float(np.percentile(image[z], 99.5)), 1e-6)
    rgb = np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=-1)
    colours = [np.array(c.color[:3]) for c in LabelSchema.cardiac().classes]

    def overlay(labels):
        out = rgb.copy()
        for c in range(1, len(colours)):
            mask = labels[z] == c
            out[mask] = 0.45 * out[mask] + 0.55 * colours[c]
        return out

    panel = np.concatenate([rgb, overlay(prediction), overlay(truth)], axis=1)
    picture = Image.fromarray((panel * 255).astype(np.uint8))
    picture = picture.resize((picture.width * 3, picture.height * 3), Image.NEAREST)
    from ..io.atomic import atomic_path

    with atomic_path(path, suffix=".tmp" + (path.suffix or ".png")) as tmp:
        picture.save(tmp, format="PNG" if not path.suffix else None)
