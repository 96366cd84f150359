"""Simulated scribbles vs the real manual ACDC scribbles (train split), as a Markdown table.

For every class: the fraction of the class's ground-truth pixels that carry a stroke
(coverage), the precision of the stroke pixels against the ground truth, the fraction of
slices containing the class that carry a stroke of it, the mean stroke length per stroked
slice (skeleton pixels), and the median distance of stroke pixels to the class boundary
(px; for background: to the heart), i.e. how centrally strokes are placed.
Data: ``../shared/data/acdc`` relative to the repository root (or ``--acdc``).

    python benchmarks/simulated_vs_manual_scribbles.py [--seed 0] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("background", "RV", "MYO", "LV")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--acdc", type=Path, default=REPO.parent / "shared" / "data" / "acdc")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N train volumes only")
    args = parser.parse_args(argv)

    from scipy import ndimage
    from skimage.morphology import skeletonize

    from napari_weakseg.io import read_labels
    from napari_weakseg.weak.encoding import decode_classes, from_wsl4mis
    from napari_weakseg.weak.simulate import simulate_scribbles

    if not (args.acdc / "splits.json").exists():
        print(f"ACDC data not found at {args.acdc}", file=sys.stderr)
        return 1
    names = json.loads((args.acdc / "splits.json").read_text())["train"][: args.limit]
    C = len(CLASSES)
    stats = {src: {key: np.zeros(C) for key in
                   ("stroke", "correct", "gt", "slices_with_class", "slices_stroked",
                    "skeleton", "stroked_slices_any")}
             for src in ("manual", "simulated")}
    depths: dict = {src: {c: [] for c in range(len(CLASSES))} for src in stats}
    start = time.perf_counter()
    for i, name in enumerate(names):
        gt_volume = read_labels(args.acdc / "labels" / f"{name}.nii.gz")
        gt = gt_volume.data.astype(np.int64)
        spacing = gt_volume.geometry.spacing
        manual = decode_classes(from_wsl4mis(
            read_labels(args.acdc / "scribbles" / f"{name}.nii.gz").data, C))
        simulated = decode_classes(simulate_scribbles(gt, C, seed=args.seed * 100_000 + i,
                                                      spacing=spacing))
        for src, scribble in (("manual", manual), ("simulated", simulated)):
            s = stats[src]
            for c in range(C):
                stroke = scribble == c
                s["stroke"][c] += stroke.sum()
                s["correct"][c] += (stroke & (gt == c)).sum()
                s["gt"][c] += (gt == c).sum()
                has_class = (gt == c).reshape(gt.shape[0], -1).any(axis=1)
                stroked = stroke.reshape(gt.shape[0], -1).any(axis=1)
                s["slices_with_class"][c] += has_class.sum()
                s["slices_stroked"][c] += (has_class & stroked).sum()
                s["stroked_slices_any"][c] += stroked.sum()
                s["skeleton"][c] += sum(int(skeletonize(stroke[z]).sum())
                                        for z in np.flatnonzero(stroked))
                for z in np.flatnonzero(stroked):
                    inside = gt[z] == c  # background: distance to the heart
                    if inside.all():  # a slice without heart
                        continue
                    depths[src][c].append(ndimage.distance_transform_edt(inside)[stroke[z]])
    elapsed = time.perf_counter() - start

    print(f"ACDC train split: {len(names)} volumes, simulated with seed {args.seed} "
          f"({elapsed:.1f} s)\n")
    print("| class | source | labelled px / class px | stroke precision vs GT | "
          "slices with class that are stroked | stroke length per stroked slice (px) | "
          "median distance to class boundary (px) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for c, cname in enumerate(CLASSES):
        for src in ("manual", "simulated"):
            s = stats[src]
            cov = s["stroke"][c] / max(s["gt"][c], 1)
            prec = s["correct"][c] / max(s["stroke"][c], 1)
            sl = s["slices_stroked"][c] / max(s["slices_with_class"][c], 1)
            length = s["skeleton"][c] / max(s["stroked_slices_any"][c], 1)
            depth = np.median(np.concatenate(depths[src][c])) if depths[src][c] else np.nan
            print(f"| {cname} | {src} | {100 * cov:.2f} % | {100 * prec:.2f} % | "
                  f"{100 * sl:.1f} % | {length:.0f} | {depth:.1f} |")
    tot = {src: (sum(stats[src]["stroke"]), sum(stats[src]["gt"])) for src in stats}
    print(f"\nAll classes: manual {100 * tot['manual'][0] / tot['manual'][1]:.2f} % of pixels "
          f"labelled, simulated {100 * tot['simulated'][0] / tot['simulated'][1]:.2f} %.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
