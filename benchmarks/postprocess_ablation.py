"""Post-processing ablation of an existing model folder on ACDC val (issue 13).

    .venv/bin/python benchmarks/postprocess_ablation.py models/acdc-cine-pce
    .venv/bin/python benchmarks/postprocess_ablation.py MODEL --split val --limit 6 --threads 2

Each volume of the split is predicted ONCE through the shared
:class:`~napari_weakseg.inference.predictor.Predictor` (the model's recorded normaliser and
pre-processing, on the volume's own grid), then post-processed by each name — ``none``,
``largest`` (largest 3D component per class), ``anatomy`` (largest 3D component of the
union of foreground classes — chosen by confident volume — then the cardiac schema's
rules: LV enclosed by MYO), ``anatomy`` without rules and ``anatomy`` with the organ chosen
by size alone — and scored against the reference: 3D Dice per class, the number
of class-volumes whose class is present in the reference but scores Dice < 0.1 ("lost"),
and the LV ejection fraction error (percentage points) over the ED/ES pairs of the split.
Prints a Markdown table. Raw images are read from disk: the Predictor normalises them as
the model records.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ACDC = ROOT.parent / "shared" / "data" / "acdc"
VARIANTS = (("none", "none", True), ("largest", "largest", True),
            ("anatomy", "anatomy", True), ("anatomy, no rules", "anatomy", False),
            ("anatomy, organ by size", "anatomy", True))


def main(argv=None) -> int:
    from napari_weakseg.evaluation.metrics import dice
    from napari_weakseg.inference.predictor import Predictor
    from napari_weakseg.io import read_labels, read_volume
    from napari_weakseg.postprocess import Postprocessing
    from napari_weakseg.schema import LabelSchema
    from napari_weakseg.store.importers import acdc_tags

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--acdc", type=Path, default=DEFAULT_ACDC)
    parser.add_argument("--split", default="val",
                        help="val, train, or inner: the inner-validation patients of the "
                             "train split (benchmarks/acdc.py --inner-val 10, seed 0) — "
                             "where post-processing should be chosen")
    parser.add_argument("--limit", type=int, help="first N volumes of the split")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", type=Path, help="also write the per-volume scores here")
    parser.add_argument("--flip-tta", action=argparse.BooleanOptionalAction, default=None,
                        help="average the prediction over horizontal/vertical flips "
                             "(default: what the model records)")
    args = parser.parse_args(argv)
    if not (args.acdc / "splits.json").exists():
        print(f"ACDC data not found at {args.acdc}", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    splits = json.loads((args.acdc / "splits.json").read_text())
    if args.split == "inner":
        from napari_weakseg.training.sources import inner_val_patients

        patients = sorted({c.split("_")[0] for c in splits["train"]})
        held = set(inner_val_patients(patients, 10, 0))
        names = [c for c in splits["train"] if c.split("_")[0] in held][:args.limit]
    else:
        names = splits[args.split][:args.limit]
    predictor = Predictor(args.model, device=args.device, postprocess="none",
                          flip_tta=args.flip_tta)
    classes = predictor.classes
    rules = LabelSchema.cardiac().rules()
    started = time.perf_counter()
    scores = {label: {} for label, _, _ in VARIANTS}
    volumes_ml = {label: {} for label, _, _ in VARIANTS}
    truth_ml = {}
    for name in names:
        image = read_volume(args.acdc / "images" / f"{name}.nii.gz")
        truth = read_labels(args.acdc / "labels" / f"{name}.nii.gz", like=image.geometry).data
        spacing = image.geometry.spatial_spacing
        prediction = predictor.predict(image.data, spacing)
        raw, probabilities = prediction.raw_labels, prediction.probabilities
        voxel_ml = image.geometry.voxel_volume_ml
        truth_ml[name] = float((truth == classes.index("LV")).sum()) * voxel_ml
        for label, post_name, apply_rules in VARIANTS:
            labels = Postprocessing(post_name, rules, apply_rules)(
                raw, classes, None if label.endswith("by size") else probabilities)
            scores[label][name] = {
                cls: (float(dice(labels == c, truth == c)) if (truth == c).any() else None)
                for c, cls in enumerate(classes) if c}
            volumes_ml[label][name] = float((labels == classes.index("LV")).sum()) * voxel_ml
    seconds = time.perf_counter() - started
    pairs = {}
    for name, tags in acdc_tags(names).items():
        if tags.get("frame") in ("ED", "ES"):
            pairs.setdefault(tags["subject"], {})[tags["frame"]] = name
    pairs = {s: f for s, f in pairs.items() if set(f) == {"ED", "ES"}}

    def ef(ml, pair):
        edv, esv = ml[pair["ED"]], ml[pair["ES"]]
        return (edv - esv) / edv * 100 if edv > 0 else float("nan")

    print(f"\n### Post-processing ablation: {args.model} on ACDC {args.split} ({len(names)} "
          f"volumes, {len(pairs)} ED/ES pairs; {predictor.preprocessing.describe()}; "
          f"flip TTA {'on' if predictor.flip_tta else 'off'}; {seconds:.0f} s)\n")
    fg = classes[1:]
    print("| post-processing | " + " | ".join(f"{c} Dice" for c in fg)
          + " | mean Dice | lost class-volumes (Dice < 0.1) | LV EF error (pts, mean) |")
    print("|---|" + "---|" * (len(fg) + 3))
    for label, _, _ in VARIANTS:
        per_class = {c: [s[c] for s in scores[label].values() if s[c] is not None] for c in fg}
        means = [float(np.mean(v)) for v in per_class.values()]
        lost = sum(v < 0.1 for values in per_class.values() for v in values)
        errors = [abs(ef(volumes_ml[label], p) - ef(truth_ml, p)) for p in pairs.values()]
        print(f"| {label} | " + " | ".join(f"{m:.3f}" for m in means)
              + f" | {np.mean(means):.3f} | {lost} | {np.nanmean(errors):.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"scores": scores, "lv_ml": volumes_ml,
                                         "truth_lv_ml": truth_ml}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
