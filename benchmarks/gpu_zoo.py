"""Train zoo candidates on a GPU machine that cannot read ``../shared`` (issue 14).

The lent GPU machine receives only the repository (64 MiB at most) and has no nibabel, so
ACDC travels as one compact pack made here, and several candidate recipes train there at
once, each in its own process on the one GPU, each choosing its checkpoint on the same
inner split of the training patients as ``benchmarks/acdc.py --inner-val 10`` (seed 0).
The ACDC val split never travels: the models come back and are reported here with
``benchmarks/postprocess_ablation.py`` (inner split chooses, val only reports).

    # here: the train split's 140 volumes → one pack (≈ 50 MB)
    .venv/bin/python benchmarks/gpu_zoo.py pack --acdc ../shared/data/acdc --out .gpu_carry/acdc.npz.xz
    # there: three candidates for 6.5 minutes each, in parallel
    python3 benchmarks/gpu_zoo.py train --pack .gpu_carry/acdc.npz.xz --out $OUT --minutes 6.5 \
        --candidate a:effdnet --candidate b:effdnet:use_fadc=true --candidate c:effdnet:batch=16

What the pack holds, per volume: the image *after* the model's normalisation
(``wsl4mis-p99-minmax``, values in [0, 1]) quantised to 8 bits (largest error 1/510 of the
range, below the appearance augmentation's own noise), the dense labels (inner split only
chooses on them; training never sees them for scribble methods), the real scribbles
(WSL4MIS encoding, 4 = unannotated) and the spacing in mm (z, y, x). The images differ from
the NIfTI files only by that quantisation; the pipeline (spacing resampling, patches,
augmentation) is the one ``benchmarks/acdc.py`` runs.

The candidates use the ``cpu`` profile (spacing pre-processing, 128² patches, appearance
augmentation) at width 16 on ``cuda``, seed 2022, with the per-candidate changes given as
``name:method[:key=value,…]``: ``batch``, ``width``, ``size``, ``lr``, ``seed`` change the
recipe, any other key is a method option (JSON value).
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RECIPE_KEYS = {"batch": "batch_size", "width": "base_width", "size": "size", "lr": "lr",
               "seed": "seed"}


def pack(acdc: Path, out: Path) -> None:
    from napari_weakseg.io import read_labels, read_volume
    from napari_weakseg.preprocess import get_normaliser

    splits = json.loads((acdc / "splits.json").read_text())
    normalise = get_normaliser(None)
    arrays: dict[str, np.ndarray] = {}
    for case in splits["train"]:
        image = read_volume(acdc / "images" / f"{case}.nii.gz")
        truth = read_labels(acdc / "labels" / f"{case}.nii.gz", like=image.geometry).data
        wsl = read_labels(acdc / "scribbles" / f"{case}.nii.gz", like=image.geometry).data
        normalised = normalise(image.data)
        arrays[f"{case}/image"] = np.round(normalised * 255).astype(np.uint8)
        arrays[f"{case}/truth"] = truth.astype(np.uint8)
        arrays[f"{case}/scribble"] = wsl.astype(np.uint8)
        arrays[f"{case}/spacing"] = np.asarray(image.geometry.spatial_spacing, np.float64)
    arrays["cases"] = np.asarray(splits["train"])
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".part")
    tmp.write_bytes(lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME))
    tmp.replace(out)
    print(f"{out}: {len(splits['train'])} volumes, {out.stat().st_size / 1e6:.1f} MB")


def load_pack(path: Path, inner_val: int = 10, inner_seed: int = 0):
    """The pack as :class:`TrainingData` — train and inner split exactly as
    ``acdc_data(supervision='scribble', inner_val=10)`` draws them."""
    from napari_weakseg.datasets.acdc import inner_val_patients
    from napari_weakseg.datasets.base import TrainingData, dense_targets, scribble_targets
    from napari_weakseg.schema import LabelSchema
    from napari_weakseg.training.data import TrainingVolume

    arrays = np.load(io.BytesIO(lzma.decompress(path.read_bytes())))
    cases = [str(c) for c in arrays["cases"]]
    names = LabelSchema.cardiac().names
    patients = sorted({c.split("_")[0] for c in cases})
    held = set(inner_val_patients(patients, inner_val, inner_seed))

    def volume(case: str, for_training: bool) -> TrainingVolume:
        image = arrays[f"{case}/image"].astype(np.float32) / 255.0
        truth = arrays[f"{case}/truth"]
        if for_training:
            wsl = arrays[f"{case}/scribble"]
            targets = scribble_targets(np.where(wsl == len(names), 0, wsl.astype(np.int64) + 1),
                                       len(names))
        else:
            targets = dense_targets(truth, len(names))
        return TrainingVolume(case, image, targets, truth,
                              tuple(float(s) for s in arrays[f"{case}/spacing"]),
                              {"dataset": "acdc", "modality": "cine-MRI"})

    train = [volume(c, True) for c in cases if c.split("_")[0] not in held]
    val = [volume(c, False) for c in cases if c.split("_")[0] in held]
    return TrainingData(train, val, names,
                        f"ACDC train split less {len(held)} inner-validation patients "
                        f"({len(train)} volumes, real manual scribbles; images normalised and "
                        f"quantised to 8 bits for transport); checkpoints chosen on the inner "
                        f"validation ({len(val)} volumes of the train split)",
                        LabelSchema.cardiac().rules())


def parse_candidate(text: str) -> tuple[str, str, dict, dict]:
    name, method, *rest = text.split(":", 2)
    recipe, options = {}, {}
    for item in (rest[0].split(",") if rest else []):
        key, value = item.split("=", 1)
        if key in RECIPE_KEYS:
            recipe[RECIPE_KEYS[key]] = json.loads(value)
        else:
            options[key] = json.loads(value)
    return name, method, recipe, options


def train_one(text: str, pack_path: str, out: str, work: str, minutes: float, device: str,
              threads: int, val_every: int, max_iterations: int) -> None:
    from napari_weakseg.training.config import profile
    from napari_weakseg.training.trainer import Trainer

    name, method, recipe, options = parse_candidate(text)
    run_dir = Path(work) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    log = open(run_dir / "log.txt", "a", buffering=1)
    t0 = time.time()
    data = load_pack(Path(pack_path))
    settings = {"base_width": 16, "seed": 2022, "threads": threads, **recipe}
    config = profile("cpu", method=method, device=device, method_options=options, **settings)
    config = replace(config, iterations=max_iterations, max_seconds=minutes * 60,
                     val_every=val_every, checkpoint_every=val_every)
    print(f"{name}: {method} {options} {settings}; {len(data.train)} train / {len(data.val)} "
          f"inner volumes loaded in {time.time() - t0:.0f} s", file=log)

    def emit(event):
        if event.type in ("validation", "finished"):
            print(event.to_json(), file=log)

    result = Trainer(config, data.train, data.val, data.class_names, run_dir / "work",
                     emit=emit, data_description=data.description, rules=data.rules).run()
    print(f"{name}: {result.status} at iteration {result.iteration}, best inner "
          f"{result.best_mean_dice}", file=log)
    back = Path(out) / name  # what comes back from the device: few files, shallow folders
    back.mkdir(parents=True, exist_ok=True)
    for part in ("config.json", "weights.pt"):
        source = Path(result.model_dir) / part
        if source.exists():
            (back / part).write_bytes(source.read_bytes())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--acdc", type=Path, default=Path("../shared/data/acdc"))
    p.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("train")
    t.add_argument("--pack", required=True)
    t.add_argument("--out", required=True, help="the chosen models: OUT/NAME/{config.json,weights.pt}")
    t.add_argument("--work", default="runs/gpu-zoo", help="run folders and logs (WORK/NAME)")
    t.add_argument("--minutes", type=float, default=6.5)
    t.add_argument("--device", default="cuda")
    t.add_argument("--threads", type=int, default=4)
    t.add_argument("--val-every", type=int, default=400)
    t.add_argument("--max-iterations", type=int, default=60000)
    t.add_argument("--candidate", action="append", required=True)
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.acdc, args.out)
        return 0
    import multiprocessing as mp

    context = mp.get_context("spawn")
    workers = [context.Process(target=train_one, args=(c, args.pack, args.out, args.work, args.minutes,
                                                       args.device, args.threads,
                                                       args.val_every, args.max_iterations))
               for c in args.candidate]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for c in args.candidate:
        log = Path(args.work) / parse_candidate(c)[0] / "log.txt"
        print(log.read_text() if log.exists() else f"{log}: missing", flush=True)
    return max((w.exitcode or 0) for w in workers)


if __name__ == "__main__":
    sys.exit(main())
