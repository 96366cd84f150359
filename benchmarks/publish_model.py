"""Publish a trained run's best model into the zoo (``models/NAME``) with fp16 weights and a
model card that carries the validation metrics computed by ``benchmarks/acdc.py``.

    .venv/bin/python benchmarks/publish_model.py RUN_DIR models/NAME --title "..." --notes "..."
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    from napari_weakseg.nets.model_folder import load_model, save_model_folder
    from napari_weakseg.training.trainer import model_card

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--title", required=True)
    parser.add_argument("--notes", default="")
    parser.add_argument("--largest-component", action="store_true",
                        help="record largest-component post-processing as the model's default")
    parser.add_argument("--postprocess", choices=["none", "largest", "anatomy"],
                        help="record this post-processing as the model's default (choose it "
                             "on an inner split: benchmarks/postprocess_ablation.py --split "
                             "inner)")
    parser.add_argument("--zoo-default", action="store_true",
                        help="mark it as the zoo model new users start from (config "
                             "zoo_default: true)")
    parser.add_argument("--extra", type=Path, action="append", default=[],
                        help="a Markdown file appended to the card (e.g. an ablation table)")
    args = parser.parse_args(argv)
    net, config = load_model(args.run_dir / "model")
    trained_post = config.get("postprocessing", {}).get("name", "none")
    if args.postprocess:
        config["postprocessing"] = {**config.get("postprocessing", {}),
                                    "name": args.postprocess}
    lines = [f"# {args.title}", "", model_card(config).split("\n", 2)[2]]
    variants = {"": f"post-processing {trained_post}",
                "_none": "raw network output", "_lcc": "largest 3D component per class"}
    for suffix, label in variants.items():
        metrics_path = args.run_dir / f"val_metrics{suffix}.json"
        if not metrics_path.exists():
            continue
        summary = json.loads(metrics_path.read_text())["summary"]
        lines += [f"## ACDC val split ({label}), whole volumes on their own grid", "",
                  "| class | Dice | HD95 (mm) | ASSD (mm) |", "|---|---|---|---|"]
        for name, row in summary["per_class"].items():
            lines.append(f"| {name} | {row['dice']['mean']:.3f} ± {row['dice']['std']:.3f} | "
                         f"{row['hd95_mm']['mean']:.1f} | {row['assd_mm']['mean']:.1f} |")
        overall = summary["overall"]
        lines += [f"| mean | {overall['dice']['mean']:.3f} | {overall['hd95_mm']['mean']:.1f} | "
                  f"{overall['assd_mm']['mean']:.1f} |", ""]
        config["validation"][f"acdc_val{suffix}"] = summary
    if args.largest_component:
        config["postprocessing"] = {"largest_component": True}
    for extra in args.extra:
        lines += [extra.read_text().strip(), ""]
    if args.zoo_default:
        config["zoo_default"] = True
    if args.notes:
        lines += ["## Notes", "", args.notes, ""]
    save_model_folder(args.target, net, config, "\n".join(lines), half_precision=True)
    load_model(args.target)  # the published folder loads (weights_only) and fits its config
    print(f"published {args.target} ({(args.target / 'weights.pt').stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
