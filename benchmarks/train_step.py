"""Training-step throughput and peak memory on the current device.

    .venv/bin/python benchmarks/train_step.py [--methods pce effdnet] [--steps 5]

Prints a Markdown table: method, profile (input size, batch, width), seconds per
iteration, iterations/s and the process's peak resident memory (CPU) or peak CUDA memory.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import torch

from napari_weakseg.methods import get_method
from napari_weakseg.nets.unet import build_network, default_config
from napari_weakseg.training.config import PROFILES
from napari_weakseg.preprocess import select_device

CASES = [("paper", 256, 12, 16), ("quick-cpu", 128, 8, 8), ("256² width 8", 256, 12, 8),
         ("128² width 16", 128, 12, 16)]


def fake_batch(b, size, classes, device, rng):
    labels = np.full((b, size, size), -1, np.int64)
    mask = rng.random((b, size, size)) < 0.02
    labels[mask] = rng.integers(0, classes, mask.sum())
    return {
        "image": torch.from_numpy(rng.random((b, 1, size, size), dtype=np.float32)).to(device),
        "labels": torch.from_numpy(labels).to(device),
        "valid": torch.ones((b, size, size), dtype=torch.bool, device=device),
        "annotated": torch.zeros((b, classes), dtype=torch.bool, device=device),
        "coarse_pos": torch.from_numpy(np.where(mask, labels, -1)[:, None]).to(device),
        "coarse_neg": torch.from_numpy(rng.random((b, 1, classes, size, size)) < 0.1).to(device),
        "rng": np.random.default_rng(0),
    }


def measure(method_id, size, batch, width, steps, device):
    torch.manual_seed(0)
    net = build_network(default_config(base_width=width)).to(device)
    method = get_method(method_id)(num_classes=4, feature_channels=width)
    method.setup(net)
    extras = [p for m in method.extra_modules().values() for p in m.to(device).parameters()]
    opt = torch.optim.SGD(list(net.parameters()) + extras, lr=1e-3, momentum=0.9)
    rng = np.random.default_rng(0)
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step in range(steps + 1):
        b = fake_batch(batch, size, 4, device, rng)
        start = time.perf_counter()
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            out = method.loss(net, b, step)
        opt.zero_grad()
        out.total.backward()
        opt.step()
        method.after_step(net, step)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:  # the first step warms up allocators
            times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2 ** 30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    return float(np.median(times)), peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--methods", nargs="+", default=["pce", "effdnet"])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    unit = "peak CUDA GiB" if device.type == "cuda" else "peak RSS GiB (process)"
    print(f"\n| method | profile | input | batch | width | s/iteration | it/s | {unit} |")
    print("|---|---|---|---|---|---|---|---|")
    for method in args.methods:
        for name, size, batch, width in CASES:
            seconds, peak = measure(method, size, batch, width, args.steps, device)
            print(f"| {method} | {name} | {size}² | {batch} | {width} | {seconds:.3f} | "
                  f"{1 / seconds:.2f} | {peak:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
