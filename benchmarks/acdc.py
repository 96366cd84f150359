"""Train one method on ACDC under a time budget and report Dice/HD95 on the val split.

    .venv/bin/python benchmarks/acdc.py pce --minutes 10 [--profile quick-cpu] [--out DIR]
    .venv/bin/python benchmarks/acdc.py full --minutes 10
    .venv/bin/python benchmarks/acdc.py refineseg --minutes 10 [--option ablation='"no_heads"']
    .venv/bin/python benchmarks/acdc.py pce --supervision coarse --minutes 10
    .venv/bin/python benchmarks/acdc.py disambig --minutes 10      # multisource labels
    .venv/bin/python benchmarks/acdc.py full --supervision multisource-naive --minutes 10
    .venv/bin/python benchmarks/acdc.py disambig --sampling uniform --minutes 5
    .venv/bin/python benchmarks/acdc.py disambig --supervision sparse-0.2 --minutes 5
    .venv/bin/python benchmarks/acdc.py mixed --supervision mixed-groups --minutes 10
    .venv/bin/python benchmarks/acdc.py effdnet --supervision mixed-groups --minutes 10
    .venv/bin/python benchmarks/acdc.py mixed --supervision scribble+corrections --minutes 10

Data: ``../shared/data/acdc`` — the train split's real manual scribbles (``pce``,
``effdnet``), dense labels (``full``), or weak labels simulated from them (``refineseg``:
coarse +/−, ``disambig``: three partial/sparse sources; ``--supervision`` overrides, see
``napari_weakseg.training.sources.simulated_acdc_targets``). ``mixed`` (issue 16):
``mixed-groups`` — patients in four groups: real scribbles / coarse +/− / partial / sparse
(``sources.mixed_group_targets``); ``scribble+corrections`` — real scribbles everywhere plus
3 accepted (complete) slices on the first 10 patients' 20 volumes (the loop case). On these
two, a single-kind method trains on the part it can use (``sources.restrict_to_kinds``:
what a project would give it) and ``pce`` on everything; evaluation on the val split (never a test set),
3D per-class Dice, HD95 and ASSD in mm on each volume's own grid. The poly
schedule follows the wall-clock budget (the iteration count is an upper bound from a
measured step time), so the learning rate reaches zero as the budget ends.
Prints a Markdown table; ``--out`` keeps the model folder (usable by ``weakseg predict``);
``benchmarks/acdc_table.py`` puts several runs in one table. The quick-cpu profile drops
EFFDNet's FADC and the self-disambiguation regulariser (``--option use_fadc=true`` /
``entropy_weight=1`` restore them); results and the papers' claims: ``docs/results.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ACDC = ROOT.parent / "shared" / "data" / "acdc"
SUPERVISION = {"pce": "scribble", "effdnet": "scribble", "full": "dense",
               "refineseg": "coarse", "disambig": "multisource", "mixed": "mixed-groups"}
MIXED_SUPERVISION = ("mixed-groups", "scribble+corrections")


def estimate_step_seconds(config, data, method: str) -> float:
    """Median seconds of a few real training steps of this configuration."""
    import tempfile

    from napari_weakseg.training.trainer import Trainer

    probe = replace(config, iterations=4, val_every=10 ** 9, checkpoint_every=10 ** 9,
                    max_seconds=None)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        def clock(event):
            times.append(time.perf_counter())
        Trainer(probe, data.train[:8], [], data.class_names, tmp, emit=clock).run()
    steps = np.diff(times[1:-2]) if len(times) > 4 else [1.0]
    return float(np.median(steps)) if len(steps) else 1.0


def evaluate(model_dir, data, flip_tta=None, largest_component=False, postprocess=None,
             volumes=None):
    """Scores on ``volumes`` (default ``data.val``) through the shared Predictor (the model's pre-processing);
    post-processing ``postprocess``, else ``largest`` / ``none`` by ``largest_component``;
    test-time augmentation by ``flip_tta`` (``None``: what the model records).
    The volumes are normalised already (``acdc_data``: the default normaliser)."""
    from napari_weakseg.evaluation.metrics import evaluate_volume, summarise
    from napari_weakseg.inference.predictor import Predictor

    post = postprocess or ("largest" if largest_component else None)  # None: the model's
    predictor = Predictor(model_dir, device="cpu", postprocess=post, flip_tta=flip_tta)
    results = {}
    for volume in (data.val if volumes is None else volumes):
        labels = predictor.predict(volume.image, volume.spacing, normalised=True).labels
        results[volume.name] = evaluate_volume(
            labels, volume.reference, spacing=volume.spacing,
            classes={i: n for i, n in enumerate(data.class_names) if i})
    return results, summarise(results)


def main(argv=None) -> int:
    from napari_weakseg.training.config import profile
    from napari_weakseg.training.sources import acdc_data
    from napari_weakseg.training.trainer import Trainer

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("method")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--profile", default="quick-cpu")
    parser.add_argument("--size", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, help="training seed (default: the profile's)")
    parser.add_argument("--option", action="append", default=[],
                        help="method option KEY=VALUE (JSON value), repeatable")
    parser.add_argument("--acdc", type=Path, default=DEFAULT_ACDC)
    parser.add_argument("--out", type=Path, help="run folder to keep (model in OUT/model)")
    parser.add_argument("--limit", type=int, help="use only the first N training volumes")
    parser.add_argument("--lr", type=float, help="base learning rate (default: the method's; "
                        "a fine-tune's default is scaled, see TrainConfig.fine_tune_lr_scale)")
    parser.add_argument("--init", type=Path, metavar="MODEL",
                        help="fine-tune from this model folder (e.g. models/acdc-cine-effdnet); "
                             "size, width and pre-/post-processing come from it")
    parser.add_argument("--flip-tta", action=argparse.BooleanOptionalAction, default=None,
                        help="mirror test-time augmentation on/off (default: what the model "
                             "records)")
    parser.add_argument("--largest-component", action="store_true",
                        help="also report scores after keeping each class's largest 3D component")
    parser.add_argument("--evaluate", type=Path, metavar="RUN_DIR",
                        help="only evaluate RUN_DIR/model (no training)")
    parser.add_argument("--supervision", help="scribble, dense, coarse, coarse-full, "
                        "multisource, multisource-naive, multisource-partial, sparse-FRACTION, "
                        "mixed-groups, scribble+corrections "
                        "(default: by method)")
    parser.add_argument("--sampling", choices=["slices", "uniform", "mdc", "hierarchical",
                                               "kinds"],
                        help="how training draws slices (default: the method's)")
    parser.add_argument("--preprocessing", choices=["resize", "spacing"],
                        help="resize slices whole (default) or resample to a target spacing "
                             "(the train split's median unless --target-spacing) and take "
                             "centred patches")
    parser.add_argument("--target-spacing", type=float, nargs=2, metavar=("Y_MM", "X_MM"))
    parser.add_argument("--postprocess", choices=["none", "largest", "anatomy"],
                        help="also report scores with this post-processing")
    parser.add_argument("--inner-val", type=int, default=10, metavar="PATIENTS",
                        help="honest validation: this many train-split patients (seeded "
                             "draw) choose the checkpoint; the ACDC val split only reports "
                             "(default 10; 0 = choose on the val split, the old, optimistic "
                             "protocol)")
    parser.add_argument("--inner-seed", type=int, default=0)
    parser.add_argument("--max-iterations", type=int,
                        help="upper bound of the iterations (default: from a measured step "
                             "time, which a busy machine overestimates)")
    parser.add_argument("--intensity-augmentation", action="store_true", default=None,
                        help="appearance augmentation (gamma, contrast, bias, blur, noise, "
                             "low resolution)")
    args = parser.parse_args(argv)
    if not (args.acdc / "splits.json").exists():
        print(f"ACDC data not found at {args.acdc}", file=sys.stderr)
        return 2
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)}
    overrides = {k: v for k, v in {"size": args.size, "base_width": args.width,
                                   "batch_size": args.batch, "threads": args.threads,
                                   "sampling": args.sampling, "seed": args.seed,
                                   "preprocessing": args.preprocessing,
                                   "target_spacing": args.target_spacing,
                                   "intensity_augmentation": args.intensity_augmentation,
                                   "init_model": str(args.init) if args.init else None,
                                   "lr": args.lr,
                                   }.items()
                 if v is not None}
    config = profile(args.profile, method=args.method, device=args.device,
                     method_options=options, **overrides)
    if args.init:
        from napari_weakseg.training.trainer import inherit_from_parent

        config = inherit_from_parent(config)
    t0 = time.time()
    supervision = args.supervision or SUPERVISION.get(args.method, "scribble")
    if args.evaluate:
        data = acdc_data(args.acdc, "dense", limit=0, normalisation=config.normalisation)
        run_dir, iterations = args.evaluate, "?"
        config_of = __import__("json").loads((run_dir / "model" / "config.json").read_text())
        iterations = config_of["training"]["iterations_done"]
        config = replace(config, size=config_of["training"]["size"],
                         base_width=config_of["training"]["base_width"],
                         batch_size=config_of["training"]["batch_size"])
        budget_text = "evaluation only"
    else:
        data = acdc_data(args.acdc, supervision, limit=args.limit,
                         normalisation=config.normalisation, inner_val=args.inner_val,
                         inner_seed=args.inner_seed)
        if supervision in MIXED_SUPERVISION and args.method != "mixed":
            from napari_weakseg.methods import get_method
            from napari_weakseg.training.sources import restrict_to_kinds

            data.train = restrict_to_kinds(data.train, get_method(args.method).kinds)
        load_s = time.time() - t0
        step = estimate_step_seconds(config, data, args.method)
        budget = args.minutes * 60
        # an upper bound: the schedule follows the time budget (TrainConfig.max_seconds)
        iterations = args.max_iterations or max(20, int(budget * 2.0 / step))
        # about eight validations of the 20 volumes, never so often that they eat the budget
        every = max(iterations // 16, 25)
        config = replace(config, iterations=iterations, max_seconds=budget,
                         val_every=every, checkpoint_every=every)
        run_dir = args.out or Path("runs") / f"acdc-{args.method}-{int(time.time())}"
        print(f"{args.method}: {len(data.train)} train / {len(data.val)} "
              f"{'inner-validation' if data.report else 'val'} volumes loaded in "
              f"{load_s:.0f} s; step {step:.3f} s → {iterations} iterations in "
              f"{args.minutes:g} min ({config.size}², batch {config.batch_size}, width "
              f"{config.base_width}); run {run_dir}", flush=True)

        def log(event):
            if event.type in ("validation", "finished"):
                print("  ", event.to_json(), flush=True)

        result = Trainer(config, data.train, data.val, data.class_names, run_dir, emit=log,
                         data_description=data.description, rules=data.rules).run()
        iterations = result.iteration
        budget_text = f"{args.minutes:g} min budget"
    from napari_weakseg.evaluation.metrics import write_csv, write_json

    report = getattr(data, "report", None) or data.val
    if args.evaluate:  # chosen when the run trained: its config says on what
        chooser = (f"what the run's training used ({config_of['training'].get('data', '?')})")
    elif report is not data.val:
        chooser = ("an inner validation split of the train patients "
                   f"({len(data.val)} volumes, seed {args.inner_seed})")
    else:
        chooser = f"the same split it reports (ACDC val, {len(data.val)} volumes: optimistic)"
    print(f"\ncheckpoint chosen on {chooser}")
    variants = [(" (the model's recorded post-processing)", False)] + ([(" + largest component", True)] if args.largest_component else [])
    if args.postprocess:
        variants.append((f" + post-processing {args.postprocess}", args.postprocess))
    for label, largest in variants:
        post = largest if isinstance(largest, str) else None
        results, summary = evaluate(run_dir / "model", data, args.flip_tta, largest is True,
                                    postprocess=post, volumes=report)
        suffix = f"_{post}" if post else ("_lcc" if largest else "")
        write_json(run_dir / f"val_metrics{suffix}.json", results, summary)
        write_csv(run_dir / f"val_metrics{suffix}.csv", results, summary)
        extras = "".join(f", {k}={json.dumps(v)}" for k, v in config.method_options.items()) + \
            (f", sampling {args.sampling}" if args.sampling else "") + \
            (f", seed {args.seed}" if args.seed is not None else "")
        print(f"\n### {args.method} ({supervision}{extras}){label} on ACDC val ({len(report)} "
              f"volumes), {budget_text}, {iterations} iterations, {config.size}², width "
              f"{config.base_width}, batch {config.batch_size}\n")
        print("| class | Dice | HD95 (mm) | ASSD (mm) |")
        print("|---|---|---|---|")
        for name in data.class_names[1:]:
            row = summary["per_class"][name]
            print(f"| {name} | {row['dice']['mean']:.3f} ± {row['dice']['std']:.3f} | "
                  f"{row['hd95_mm']['mean']:.1f} | {row['assd_mm']['mean']:.1f} |")
        overall = summary["overall"]
        print(f"| mean | {overall['dice']['mean']:.3f} | {overall['hd95_mm']['mean']:.1f} | "
              f"{overall['assd_mm']['mean']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
