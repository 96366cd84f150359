"""Peak memory and speed of training against cohort size (issue 20).

    .venv/bin/python benchmarks/train_memory.py [--volumes 50 500 2000] [--iterations 40] \
        [--cache-mb 256] [--threads 2]

For each cohort size, in a fresh process: synthetic scribbled volumes (Z × Y × X, default
8 × 128 × 128, a heart-like phantom with stroke labels) are written one at a time to a
temporary folder as ``.npy`` files and opened memory-mapped
(``training.data.memory_mapped``'s layout), so the cohort is never in memory at once; then
the quick-cpu recipe (pCE, 128², batch 8, width 8) trains for ``--iterations`` with a
prepared-slice cache of ``--cache-mb`` MiB (``WEAKSEG_SLICE_CACHE_MB``).

Prints a Markdown table: volumes, supervised slices, whether the dataset went lazy, peak
anonymous memory (sampled every 20 ms: the process's own allocations — what cannot be
reclaimed), peak resident set (``VmHWM``, which also counts memory-mapped file pages the
kernel can drop), dataset set-up seconds and iterations per second.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _write_cohort(folder: Path, count: int, shape: tuple[int, int, int]):
    import numpy as np

    from napari_weakseg.training.data import TrainingVolume

    volumes = []
    z, h, w = shape
    yy, xx = np.mgrid[:h, :w]
    for i in range(count):
        rng = np.random.default_rng(i)
        cy, cx = h / 2 + rng.normal(0, h / 20), w / 2 + rng.normal(0, w / 20)
        r = np.hypot(yy - cy, xx - cx)
        truth = np.where(r < h / 10, 3, np.where(r < h / 7, 2, 0))
        truth[(np.abs(xx - cx + h / 5) < h / 16) & (np.abs(yy - cy) < h / 6)] = 1
        image = (truth * 0.25 + rng.normal(0, 0.05, (z, h, w))).astype(np.float32)
        labels = np.full((z, h, w), -1, np.int64)
        labels[:, int(cy), :] = np.broadcast_to(truth[int(cy)], (z, w))  # one stroke row
        volume = TrainingVolume(f"v{i:05d}", image,
                                {"labels": labels, "valid": np.ones((z, h, w), bool),
                                 "annotated": np.zeros((z, 4), bool)}, None,
                                (8.0, 1.5, 1.5), {"dataset": "synthetic"})
        from napari_weakseg.training.data import memory_mapped

        volumes.append(memory_mapped(volume, folder / volume.name))
        del volume, image, labels
    return volumes


def child(count: int, iterations: int, threads: int, shape) -> dict:
    """One cohort size in this process; returns the measured row."""
    from napari_weakseg.training.config import profile
    from napari_weakseg.training.data import SliceDataset
    from napari_weakseg.training.events import Progress
    from napari_weakseg.training.trainer import Trainer

    peak_anon = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak_anon[0] = max(peak_anon[0], _status_kib("RssAnon"))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with tempfile.TemporaryDirectory() as tmp:
        volumes = _write_cohort(Path(tmp) / "cohort", count, shape)
        config = profile("quick-cpu", method="pce", device="cpu", threads=threads,
                         iterations=iterations, val_every=10 ** 9, checkpoint_every=10 ** 9)
        started = time.perf_counter()
        probe = SliceDataset(volumes, config.size, seed=config.seed)
        setup_s = time.perf_counter() - started
        slices, lazy = len(probe), probe.lazy
        del probe
        marks = {}

        def mark(event):
            if isinstance(event, Progress):
                marks[event.iteration] = time.perf_counter()

        Trainer(config, volumes, [], ["background", "RV", "MYO", "LV"], Path(tmp) / "run",
                emit=mark).run()
    stop.set()
    sampler.join()
    first = min(i for i in marks if i >= min(5, iterations - 1))
    rate = (iterations - first) / (marks[iterations] - marks[first])
    return {"volumes": count, "slices": slices, "lazy": lazy,
            "peak_anon_mib": peak_anon[0] / 1024, "peak_rss_mib": _status_kib("VmHWM") / 1024,
            "setup_s": setup_s, "it_per_s": rate}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--volumes", type=int, nargs="+", default=[50, 500, 2000])
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-mb", type=float, default=256)
    parser.add_argument("--shape", type=int, nargs=3, default=[8, 128, 128])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.iterations, args.threads, args.shape)))
        return 0
    import os

    print(f"quick-cpu pCE, {args.iterations} iterations, {args.threads} threads, volumes "
          f"{'×'.join(map(str, args.shape))}, slice cache {args.cache_mb:g} MiB\n")
    print("| volumes | supervised slices | lazy | peak anonymous MiB | peak RSS MiB (with "
          "mapped files) | dataset set-up s | it/s |")
    print("|---|---|---|---|---|---|---|")
    for count in args.volumes:
        env = {**os.environ, "WEAKSEG_SLICE_CACHE_MB": str(args.cache_mb)}
        out = subprocess.run([sys.executable, __file__, "--child", str(count),
                              "--iterations", str(args.iterations), "--threads",
                              str(args.threads), "--shape", *map(str, args.shape)],
                             env=env, capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {row['volumes']:,} | {row['slices']:,} | {'yes' if row['lazy'] else 'no'} | "
              f"{row['peak_anon_mib']:.0f} | {row['peak_rss_mib']:.0f} | {row['setup_s']:.1f} | "
              f"{row['it_per_s']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
