"""Do the suggested slices deserve attention? Slice-ranking measures on ACDC val (issue 21).

    .venv/bin/python benchmarks/suggest_measures.py models/acdc-cine-pce
    .venv/bin/python benchmarks/suggest_measures.py MODEL --limit 6 \\
        --measures mean_entropy,foreground_entropy,flip_disagreement

Each volume of the split is predicted through the shared ``Predictor`` (the model's
recorded pre- and post-processing; ``flip_disagreement`` adds two flipped passes), every
slice is scored by each measure of ``napari_weakseg.inference.suggest`` and by its 2D Dice
against the reference (mean over the foreground classes present in the prediction or the
truth; 1 where both are empty), and ``suggest.ranking_quality`` tells whether high scores
mark bad slices: Spearman ρ between score and slice Dice over all slices (negative =
good), the mean Dice of each volume's top ``--top-k`` slices (what the Review tab
suggests) against the rest, and the same for the top 20 % of all slices pooled.
Prints a Markdown table; ``--json`` keeps the per-slice scores.
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


def main(argv=None) -> int:
    from napari_weakseg.inference import suggest
    from napari_weakseg.inference.predictor import Predictor
    from napari_weakseg.io import read_labels, read_volume

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--acdc", type=Path, default=DEFAULT_ACDC)
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, help="first N volumes of the split")
    parser.add_argument("--measures", default="mean_entropy,foreground_entropy")
    parser.add_argument("--top-k", type=int, default=2, help="suggested slices per volume")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    measures = [m.strip() for m in args.measures.split(",") if m.strip()]
    for measure in measures:
        if measure not in suggest.MEASURES:
            parser.error(f"unknown measure {measure!r}; measures: "
                         f"{', '.join(suggest.MEASURES)}")
    if not (args.acdc / "splits.json").exists():
        print(f"ACDC data not found at {args.acdc}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    names = json.loads((args.acdc / "splits.json").read_text())[args.split][:args.limit]
    predictor = Predictor(args.model, device="cpu")
    classes = len(predictor.classes)
    with_members = any(suggest.needs_members(m) for m in measures)
    started = time.perf_counter()
    scores = {m: [] for m in measures}
    dice, groups = [], []
    for name in names:
        image = read_volume(args.acdc / "images" / f"{name}.nii.gz", allow_4d=False)
        truth = read_labels(args.acdc / "labels" / f"{name}.nii.gz",
                            like=image.geometry).data
        spacing = image.geometry.spatial_spacing
        members = suggest.flip_members(predictor, image.data, spacing) if with_members \
            else None
        prediction = predictor.predict(image.data, spacing)
        for measure in measures:
            scores[measure] += suggest.slice_scores(measure, prediction, members=members,
                                                    num_classes=classes).tolist()
        dice += suggest.slice_dice(prediction.labels, truth, classes).tolist()
        groups += [name] * truth.shape[0]
    seconds = time.perf_counter() - started
    print(f"\n### Slice-ranking measures: {args.model} on ACDC {args.split} ({len(names)} "
          f"volumes, {len(dice)} slices, mean slice Dice {np.mean(dice):.3f}; {seconds:.0f} s)"
          "\n")
    print(f"| measure | Spearman ρ (score vs slice Dice) | top {args.top_k}/volume Dice | "
          "rest Dice | gap | top 20 % Dice | rest Dice | gap |")
    print("|---|---|---|---|---|---|---|---|")
    table = {}
    for measure in measures:
        per_volume = suggest.ranking_quality(scores[measure], dice, groups=groups,
                                             top_k=args.top_k)
        pooled = suggest.ranking_quality(scores[measure], dice, top_fraction=0.2)
        table[measure] = {"per_volume": per_volume, "pooled": pooled}
        print(f"| {measure} | {per_volume['spearman']:.3f} | {per_volume['top_dice']:.3f} | "
              f"{per_volume['rest_dice']:.3f} | {per_volume['gap']:+.3f} | "
              f"{pooled['top_dice']:.3f} | {pooled['rest_dice']:.3f} | {pooled['gap']:+.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"volumes": names, "groups": groups, "dice": dice,
                                         "scores": scores, "quality": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
