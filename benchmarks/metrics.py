"""Surface-distance metrics: whole-volume distance transforms (before) vs the masks' padded
bounding box (after, ``napari_weakseg.evaluation.metrics``), same values.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/metrics.py [--acdc ../shared/data/acdc]
                                                             [--repeats 3] [--no-large]

Cases: one ACDC ground-truth volume against a perturbed copy of itself (a shifted, eroded
prediction: realistic surfaces), per class; and a synthetic 120×512×512 volume holding two
small overlapping ellipsoids (a lesion-sized structure in a large scan). Prints a Markdown
table: case, class, voxels, seconds before / after (best of ``--repeats``), speed-up, and
whether HD95/ASSD/ASD are bitwise identical.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ACDC = ROOT.parent / "shared" / "data" / "acdc"


def whole_volume_distances(pred, gt, sampling):
    """The implementation before the crop: both transforms on the whole array."""
    from napari_weakseg.evaluation.metrics import _surface

    d_pg = ndimage.distance_transform_edt(~_surface(gt), sampling=sampling)[_surface(pred)]
    d_gp = ndimage.distance_transform_edt(~_surface(pred), sampling=sampling)[_surface(gt)]
    return d_pg, d_gp


def _scores(d_pg, d_gp):
    return (float(np.percentile(np.hstack((d_pg, d_gp)), 95)),
            float(np.mean((d_pg.mean(), d_gp.mean()))), float(d_pg.mean()))


def _best(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def compare(name, label, pred, gt, sampling, repeats):
    from napari_weakseg.evaluation.metrics import _directed_distances

    before, old = _best(lambda: whole_volume_distances(pred, gt, sampling), repeats)
    after, new = _best(lambda: _directed_distances(pred, gt, sampling), repeats)
    same = all(np.array_equal(a, b) for a, b in zip(old, new)) and _scores(*old) == _scores(*new)
    shape = "×".join(map(str, pred.shape))
    return (f"| {name} ({shape}) | {label} | {int(gt.sum())} | {before * 1000:.1f} | "
            f"{after * 1000:.1f} | {before / after:.0f}× | {'yes' if same else 'NO'} |"), same


def acdc_cases(folder: Path):
    from napari_weakseg.io import read_labels

    paths = sorted((folder / "labels").glob("*.nii.gz"))
    if not paths:
        return []
    truth = read_labels(paths[0])
    labels = truth.data
    # a plausible prediction: the truth shifted by one voxel in-plane, each class eroded once
    moved = np.roll(labels, (1, -1), axis=(1, 2))
    cases = []
    for class_id, name in ((1, "RV"), (2, "MYO"), (3, "LV")):
        gt = labels == class_id
        pred = ndimage.binary_erosion(moved == class_id) | ((moved == class_id) & (class_id == 2))
        if gt.any() and pred.any():
            cases.append((f"ACDC {paths[0].name.split('.')[0]}", name, pred, gt,
                          truth.geometry.spatial_spacing))
    return cases


def large_case():
    shape = (120, 512, 512)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]

    def ellipsoid(c, r):
        return ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1

    gt = ellipsoid((60, 250, 260), (12, 40, 35))
    pred = ellipsoid((61, 254, 257), (11, 42, 33))
    return [("synthetic", "lesion", pred, gt, (1.5, 0.7, 0.7))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--acdc", type=Path, default=DEFAULT_ACDC)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-large", action="store_true", help="skip the 120×512×512 case")
    args = parser.parse_args(argv)
    cases = acdc_cases(args.acdc)
    if not cases:
        print(f"(no ACDC labels at {args.acdc}: ACDC rows skipped)", file=sys.stderr)
    if not args.no_large:
        cases += large_case()
    print("| case | class | gt voxels | before (ms) | after (ms) | speed-up | identical |")
    print("|---|---|---|---|---|---|---|")
    ok = True
    for name, label, pred, gt, sampling in cases:
        row, same = compare(name, label, pred, gt, sampling,
                            1 if pred.size > 10_000_000 else args.repeats)
        ok &= same
        print(row, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
