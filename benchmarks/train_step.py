"""Training-step throughput and peak memory on the current device.

    .venv/bin/python benchmarks/train_step.py [--methods pce effdnet] [--steps 5]
    .venv/bin/python benchmarks/train_step.py --vs-baseline [--methods pce effdnet] \
        [--repeats 3] [--measure 5] [--baseline-workers 0 1 2] [--no-prefetch]

Default: the loss step alone on random batches; prints method, profile (input size, batch,
width), seconds per iteration, iterations/s and the process's peak resident memory (CPU) or
peak CUDA memory.

``--vs-baseline`` (issue 20): end to end, data included, at the paper profile (256², batch
12, width 16; the method's as-coded options). Ours = :class:`Trainer` on real ACDC
scribbled volumes (its ``SliceDataset``, prefetching, deferred checks); baseline = the plain
eager loop the reference code runs (``benchmarks/baseline_loop.py``: a ``DataLoader`` with
WSL4MIS's augmentation and ``workers`` processes, same U-Net, same loss) on the same slices,
in the same process, alternating. it/s over ``--measure`` iterations after ``--warmup``;
median of ``--repeats``; the ratio is ours / the fastest baseline.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_weakseg.methods import get_method
from napari_weakseg.nets.unet import build_network, default_config
from napari_weakseg.training.config import PROFILES
from napari_weakseg.preprocess import select_device
from napari_weakseg.weak.targets import KIND_BITS

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
        # per-pixel annotation kinds (the mixed method's groups): strokes are scribbles,
        # the coarse maps cover a tenth of the pixels
        "kind": torch.from_numpy(np.where(mask, KIND_BITS["scribble"], 0).astype(np.uint8)
                                 | np.where(rng.random((b, size, size)) < 0.1,
                                            KIND_BITS["coarse"], 0).astype(np.uint8)
                                 ).to(device),
        "rng": np.random.default_rng(0),
    }


VARIANTS = ("eager", "channels_last", "compile", "bf16")


def measure(method_id, size, batch, width, steps, device, variant="eager"):
    """Median seconds per loss step and peak memory. ``variant``: ``eager`` (what the
    trainer runs), ``channels_last`` (network and inputs in NHWC), ``compile``
    (``torch.compile`` of the network, default inductor backend; compile time excluded by
    the warm-up step), ``bf16`` (autocast to bfloat16, also on the CPU)."""
    torch.manual_seed(0)
    net = build_network(default_config(base_width=width)).to(device)
    if variant == "channels_last":
        net = net.to(memory_format=torch.channels_last)
    method = get_method(method_id)(num_classes=4, feature_channels=width)
    method.setup(net)
    extras = [p for m in method.extra_modules().values() for p in m.to(device).parameters()]
    opt = torch.optim.SGD(list(net.parameters()) + extras, lr=1e-3, momentum=0.9)
    rng = np.random.default_rng(0)
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model = torch.compile(net) if variant == "compile" else net
    autocast = dict(device_type=device.type, enabled=device.type == "cuda" or variant == "bf16")
    if variant == "bf16":
        autocast["dtype"] = torch.bfloat16
    for step in range(steps + 1):
        b = fake_batch(batch, size, 4, device, rng)
        if variant == "channels_last":
            b["image"] = b["image"].contiguous(memory_format=torch.channels_last)
        start = time.perf_counter()
        with torch.autocast(**autocast):
            out = method.loss(model, b, step)
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
    parser.add_argument("--cases", nargs="+", help="only these rows of CASES (by name)")
    parser.add_argument("--variants", nargs="+", default=["eager"], choices=VARIANTS,
                        help="also time these execution variants (each a row)")
    parser.add_argument("--vs-baseline", action="store_true")
    parser.add_argument("--volumes", type=int, default=20, help="ACDC train volumes used")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--measure", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--no-prefetch", action="store_true",
                        help="ours without the batch prefetching thread")
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--channels-last", action="store_true",
                        help="ours with TrainConfig.channels_last")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    if args.vs_baseline:
        return vs_baseline(args, device)
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    unit = "peak CUDA GiB" if device.type == "cuda" else "peak RSS GiB (process)"
    print(f"\n| method | profile | variant | input | batch | width | s/iteration | it/s | "
          f"{unit} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for method in args.methods:
        for name, size, batch, width in CASES:
            if args.cases and name not in args.cases:
                continue
            for variant in args.variants:
                seconds, peak = measure(method, size, batch, width, args.steps, device,
                                        variant)
                print(f"| {method} | {name} | {variant} | {size}² | {batch} | {width} | "
                      f"{seconds:.3f} | {1 / seconds:.2f} | {peak:.2f} |", flush=True)
    return 0


def ours_iterations_per_second(method, data, config, warmup, measured) -> float:
    """it/s of the Trainer between iterations ``warmup`` and ``warmup + measured``."""
    import tempfile
    from dataclasses import replace

    from napari_weakseg.training.events import Progress
    from napari_weakseg.training.trainer import Trainer

    marks = {}

    def mark(event):
        if isinstance(event, Progress):
            marks[event.iteration] = time.perf_counter()

    total = warmup + measured
    config = replace(config, iterations=total, val_every=10 ** 9, checkpoint_every=10 ** 9)
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(config, data.train, [], data.class_names, tmp, emit=mark).run()
    # progress is reported at most every 0.25 s (always at the last iteration): time from
    # the first report at or after the warm-up
    first = min(i for i in marks if i >= warmup)
    if first >= total:
        raise RuntimeError("steps too fast to time from progress events; raise --measure")
    return (total - first) / (marks[total] - marks[first])


def baseline_options(method: str, config) -> dict:
    """The as-coded switches the profile sets for ``method`` (EFFDNet's FADC)."""
    if method == "effdnet":
        return {"use_fadc": bool(config.method_options.get("use_fadc", True))}
    return {}


def vs_baseline(args, device) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from baseline_loop import BASELINES, iterations_per_second

    from napari_weakseg.training.config import profile
    from napari_weakseg.training.sources import acdc_data

    acdc = Path(__file__).resolve().parents[2] / "shared" / "data" / "acdc"
    data = acdc_data(acdc, "scribble", limit=args.volumes, val_limit=0)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{len(data.train)} ACDC train volumes (real scribbles); profile {args.profile}; "
          f"{args.warmup} warm-up + {args.measure} timed iterations, median of "
          f"{args.repeats}")
    print("\n| method | input | batch | width | ours it/s | "
          + " | ".join(f"baseline ({w} workers) it/s" for w in args.baseline_workers)
          + " | ours / fastest baseline |")
    print("|---|---|---|---|---|" + "---|" * len(args.baseline_workers) + "---|")
    for method in args.methods:
        config = profile(args.profile, method=method, device=str(device),
                         threads=args.threads, prefetch=not args.no_prefetch,
                         channels_last=args.channels_last)
        ours, base = [], {w: [] for w in args.baseline_workers}
        for _ in range(args.repeats):
            ours.append(ours_iterations_per_second(method, data, config, args.warmup,
                                                   args.measure))
            for workers in args.baseline_workers:
                torch.manual_seed(config.seed)
                net = build_network(default_config(num_classes=len(data.class_names),
                                                   base_width=config.base_width))
                base[workers].append(iterations_per_second(
                    BASELINES[method], args.warmup, args.measure, net=net,
                    volumes=data.train, size=config.size, batch=config.batch_size,
                    device=device, workers=workers, **baseline_options(method, config)))
        ours_median = float(np.median(ours))
        medians = {w: float(np.median(v)) for w, v in base.items()}
        print(f"| {method} | {config.size}² | {config.batch_size} | {config.base_width} | "
              f"{ours_median:.3f} | " + " | ".join(f"{medians[w]:.3f}" for w in medians)
              + f" | **{ours_median / max(medians.values()):.2f}×** |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
