"""``weakseg demo``: the headless demo (what runs where no display is available)."""

from __future__ import annotations

import argparse

PLAN = """\
weakseg demo — headless walk through the annotate → train → review loop.

What it does (training lands with the engine issue; until then it stops after step 2):
  1. generates the synthetic cardiac cine sample cohort (no downloads) into {out}
  2. reads it back through the core NIfTI reader and prints each volume's geometry
  3. imports it into a project with its scribbles as annotations
  4. trains the pCE baseline briefly on CPU (the quick profile)
  5. predicts the held-out volume, prints per-class Dice and writes an overlay PNG
"""


def register(subparsers) -> None:
    demo = subparsers.add_parser("demo", help="run the headless demo",
                                 description="Run the headless demo on synthetic data.")
    demo.add_argument("--out", default="weakseg-demo", help="working folder")
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from ..io import describe, read_volume
    from ..synthetic import make_cohort, write_cohort

    print(PLAN.format(out=args.out))
    folder = write_cohort(args.out, make_cohort(2, seed=0))
    for path in sorted((folder / "images").glob("*.nii.gz")):
        print("  ", describe(read_volume(path).geometry))
    print("steps 3–5 need the store and training engine, which are not built yet.")
    return 0
