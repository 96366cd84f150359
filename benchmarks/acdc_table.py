"""One Markdown table from several ``benchmarks/acdc.py --out DIR`` runs.

    .venv/bin/python benchmarks/acdc_table.py runs/pce=pce runs/effdnet="effdnet" ...

Each argument is a run folder (optionally ``=LABEL``). Columns: iterations done in the
budget; per-class and mean 3D Dice and mean HD95 of the model kept by validation
(``model/``, from ``val_metrics.json``); the same after keeping each class's largest
component (``val_metrics_lcc.json``, when the run was evaluated with
``--largest-component``); and the mean Dice of the *last* model from the final validation.
The kept model was selected on the same val split it is scored on, so its Dice is
optimistic; the last model's is not (the poly schedule ends at learning rate 0, so the two
are usually close).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CLASSES = ("RV", "MYO", "LV")


def number(value, digits: int) -> str:
    """``value`` rounded, or "—" where the metric is undefined (e.g. HD95 of an empty
    prediction)."""
    return "—" if value is None else f"{value:.{digits}f}"


def run_row(run_dir: Path, label: str) -> str:
    metrics = json.loads((run_dir / "val_metrics.json").read_text())["summary"]
    last = json.loads((run_dir / "model_last" / "config.json").read_text())
    iterations = last["training"]["iterations_done"]
    latest = (last.get("validation") or {}).get("latest") or {}
    cells = [label, f"{iterations:,}"]
    cells += [number(metrics["per_class"][c]["dice"]["mean"], 3) for c in CLASSES]
    cells += [f"**{number(metrics['overall']['dice']['mean'], 3)}**",
              number(metrics["overall"]["hd95_mm"]["mean"], 1)]
    lcc_path = run_dir / "val_metrics_lcc.json"
    if lcc_path.exists():
        lcc = json.loads(lcc_path.read_text())["summary"]["overall"]
        cells.append(f"{number(lcc['dice']['mean'], 3)} ({number(lcc['hd95_mm']['mean'], 1)})")
    else:
        cells.append("—")
    cells.append(f"{latest['mean_dice']:.3f}" if "mean_dice" in latest else "—")
    return "| " + " | ".join(cells) + " |"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR[=LABEL]")
    args = parser.parse_args(argv)
    print("| run | iterations | RV | MYO | LV | mean Dice | HD95 mm | largest component: "
          "Dice (HD95) | last model Dice |")
    print("|---|---|---|---|---|---|---|---|---|")
    status = 0
    for item in args.runs:
        path, _, label = item.partition("=")
        run_dir = Path(path)
        try:
            print(run_row(run_dir, label or run_dir.name))
        except (OSError, KeyError, ValueError) as exc:
            print(f"{run_dir}: not a finished benchmark run ({exc})", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
