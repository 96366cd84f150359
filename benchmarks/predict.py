"""Prediction seconds per ACDC volume (whole volume, back on its own grid).

    .venv/bin/python benchmarks/predict.py [--model models/NAME] [--volumes 10] [--threads N]
        [--flip-tta | --no-flip-tta]

Without ``--model`` a freshly initialised network of each width/size below is timed (speed
does not depend on the weights), through the legacy ``resize`` pipeline; with ``--model`` the
model is run through the default path (``Predictor``: its recorded pre-processing — e.g.
resampling to a target spacing —, post-processing and test-time augmentation, unless
``--flip-tta``/``--no-flip-tta`` says otherwise). Prints a Markdown table: model, input size, seconds per
volume (mean over volumes), slices per second, peak process memory.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ACDC = ROOT.parent / "shared" / "data" / "acdc"


def main(argv=None) -> int:
    import torch

    from napari_weakseg.inference.predict import predict_volume
    from napari_weakseg.io import read_volume
    from napari_weakseg.nets.unet import build_network, default_config
    from napari_weakseg.preprocess import select_device

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--volumes", type=int, default=10)
    parser.add_argument("--acdc", type=Path, default=DEFAULT_ACDC)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--flip-tta", action=argparse.BooleanOptionalAction, default=None,
                        help="mirror test-time augmentation (default: the model's; off for "
                             "untrained networks)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    paths = sorted((args.acdc / "images").glob("*.nii.gz"))[: args.volumes]
    if not paths:
        print(f"no ACDC images at {args.acdc}", file=sys.stderr)
        return 2
    read = [read_volume(p) for p in paths]
    volumes = [v.data for v in read]
    if args.model:  # the default path: the model's recorded pre- and post-processing
        from napari_weakseg.inference.predictor import Predictor

        predictor = Predictor(args.model, str(device), flip_tta=args.flip_tta)
        predictor.load()
        print(f"{args.model}: {predictor.describe()}")
        predictor.predict(volumes[0], read[0].geometry.spatial_spacing)  # warm-up
        start = time.perf_counter()
        for volume in read:
            predictor.predict(volume.data, volume.geometry.spatial_spacing)
        seconds = time.perf_counter() - start
        slices = sum(v.shape[0] for v in volumes)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
        print("| model | pipeline | TTA | s / volume | slices / s | peak RSS GiB |")
        print("|---|---|---|---|---|---|")
        print(f"| {args.model.name} | {predictor.describe()} | "
              f"{predictor.tta} | {seconds / len(volumes):.2f} | "
              f"{slices / seconds:.1f} | {peak:.2f} |")
        return 0
    cases = []  # untrained networks: speed does not depend on the weights
    for width, size in ((16, 256), (16, 128), (8, 128)):
        torch.manual_seed(0)
        net = build_network(default_config(base_width=width)).to(device).eval()
        cases.append((f"untrained width {width}", net, size))
    print(f"device {device}, {len(volumes)} ACDC volumes, mean "
          f"{np.mean([v.shape[0] for v in volumes]):.1f} slices of "
          f"{np.mean([v.shape[1] * v.shape[2] for v in volumes]) ** 0.5:.0f}² px (rms)\n")
    print("| model | input | flip TTA | s / volume | slices / s | peak RSS GiB |")
    print("|---|---|---|---|---|---|")
    for name, net, size in cases:
        predict_volume(net, volumes[0], size, device=device)  # warm-up
        start = time.perf_counter()
        for volume in volumes:
            predict_volume(net, volume, size, device=device, flip_tta=bool(args.flip_tta))
        seconds = time.perf_counter() - start
        slices = sum(v.shape[0] for v in volumes)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
        print(f"| {name} | {size}² | {'yes' if args.flip_tta else 'no'} | "
              f"{seconds / len(volumes):.2f} | {slices / seconds:.1f} | {peak:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
