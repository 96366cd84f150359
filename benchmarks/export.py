"""Batch export throughput and peak memory on the largest ACDC volumes.

    .venv/bin/python benchmarks/export.py [--model DIR] [--count 40] [--device cpu]
                                          [--threads N] [--configs labels,no-prefetch,all]

Takes the ``--count`` largest volumes (by voxel count) of ``../shared/data/acdc/images`` and
exports them with ``--model`` — by default a freshly initialised (untrained) width-16 U-Net
with the paper's 256² input, which costs what a trained one costs but predicts nothing
useful (the output says so). Each configuration runs in its own process into a fresh
temporary folder, so its peak memory is its own. Prints a Markdown table: volumes per
minute (wall clock of the whole export, model loading included), median seconds per volume,
the process's peak resident memory and, on CUDA, the peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ACDC_IMAGES = Path(os.environ.get("WEAKSEG_SHARED", ROOT.parent / "shared")) / "data" / "acdc" \
    / "images"
CONFIGS = {
    "labels": ("labels only, prefetch 1", {}),
    "no-prefetch": ("labels only, no prefetch", {"prefetch": 0}),
    "all": ("labels + probabilities + uncertainty + LCC + fill holes",
            {"probabilities": True, "uncertainty": True, "largest_component": True,
             "fill_holes": True}),
}


def largest_volumes(folder: Path, count: int) -> list[Path]:
    """The ``count`` NIfTI files of ``folder`` with the most voxels (header only)."""
    import nibabel as nib

    sized = [(int(np.prod(nib.load(p).shape)), p.name, p)
             for p in folder.glob("*.nii*")]
    return [p for _, _, p in sorted(sized, reverse=True)[:count]]


def fresh_model(folder: Path) -> Path:
    import torch

    from napari_weakseg.nets.model_folder import save_model_folder
    from napari_weakseg.nets.unet import build_network, default_config
    from napari_weakseg.schema import LabelSchema

    torch.manual_seed(0)
    network = default_config(base_width=16)
    config = {"network": network, "classes": LabelSchema.cardiac().names,
              "preprocessing": {"normalisation": "wsl4mis-p99-minmax", "size": [256, 256],
                                "slice_axis": "z", "resize": "bilinear"}}
    return save_model_folder(folder, build_network(network), config,
                             "# untrained width-16 U-Net (benchmark only)\n")


def run_one(args) -> None:
    """Child process: one configuration; prints one JSON line."""
    import torch

    from napari_weakseg.inference.export import ExportOptions, export_cohort

    files = [Path(p) for p in json.loads(args.files)]
    options = ExportOptions(device=args.device, threads=args.threads, batch_slices=16,
                            **CONFIGS[args.one][1])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = []
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        report = export_cohort(args.model, files, out, options,
                               progress=lambda e: seconds.append(e.seconds)
                               if e.status == "exported" else None)
        wall = time.perf_counter() - start
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    print(json.dumps({"volumes": len(report.exported), "failed": len(report.failed),
                      "wall_s": wall, "median_s": float(np.median(seconds)) if seconds else None,
                      "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "rss_before_mib": rss_before, "gpu_mib": gpu,
                      "threads": torch.get_num_threads(), "device": str(options.device)}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model folder (default: untrained width 16)")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--configs", default="labels,no-prefetch,all")
    parser.add_argument("--data", type=Path, default=ACDC_IMAGES)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args)
        return 0
    if not args.data.is_dir():
        print(f"ACDC images not found at {args.data}", file=sys.stderr)
        return 1
    files = largest_volumes(args.data, args.count)
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None:
            model = fresh_model(Path(tmp) / "model")
            model_text = ("a freshly initialised width-16 U-Net, 256² input (UNTRAINED: speed "
                          "and memory are representative, its predictions are not)")
        else:
            model, model_text = args.model, str(args.model)
        import nibabel as nib

        voxels = sum(int(np.prod(nib.load(p).shape)) for p in files)
        print(f"Export benchmark: {len(files)} largest ACDC volumes ({voxels / 1e6:.1f} M voxels, "
              f"{sum(nib.load(p).shape[2] for p in files)} slices), model: {model_text}")
        print(f"device {args.device}, {os.cpu_count()} CPUs, load average before "
              f"{os.getloadavg()[0]:.1f}\n")
        rows = []
        for key in args.configs.split(","):
            command = [sys.executable, __file__, "--one", key, "--model", str(model),
                       "--files", json.dumps([str(p) for p in files]), "--device", args.device]
            if args.threads:
                command += ["--threads", str(args.threads)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                print(result.stderr[-2000:], file=sys.stderr)
                return 1
            rows.append((CONFIGS[key][0], json.loads(result.stdout.strip().splitlines()[-1])))
    print("| configuration | device (threads) | volumes | wall s | volumes/min | median s/volume "
          "| peak RSS MiB (after imports) | peak GPU MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        gpu = f"{r['gpu_mib']:.0f}" if r["gpu_mib"] is not None else "–"
        print(f"| {name} | {r['device']} ({r['threads']}) | {r['volumes']} | {r['wall_s']:.1f} | "
              f"{r['volumes'] / r['wall_s'] * 60:.1f} | {r['median_s']:.2f} | "
              f"{r['rss_mib']:.0f} ({r['rss_before_mib']:.0f}) | {gpu} |")
    print(f"\nload average after {os.getloadavg()[0]:.1f} (other processes share the CPU: "
          "figures are a lower bound on a busy machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
