"""``weakseg info`` and ``weakseg sample``: look at NIfTI files, make synthetic data."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    info = subparsers.add_parser("info", help="print the geometry of NIfTI files",
                                 description="Print shape, spacing, orientation and value "
                                             "range of each NIfTI file, or its error.")
    info.add_argument("files", nargs="+", type=Path)
    info.set_defaults(handler=run_info)

    sample = subparsers.add_parser(
        "sample", help="write a synthetic cardiac cine cohort (ACDC layout)",
        description="Write N synthetic subjects × (ED, ES) as images/, labels/ and "
                    "scribbles/ NIfTI folders (scribbles: 4 = unannotated).")
    sample.add_argument("--out", type=Path, required=True)
    sample.add_argument("--subjects", type=int, default=4)
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(handler=run_sample)


def run_info(args: argparse.Namespace) -> int:
    import numpy as np

    from ..io import VolumeError, describe, read_volume

    failed = 0
    for path in args.files:
        try:
            volume = read_volume(path)
        except VolumeError as exc:
            print(f"error: {exc}")
            failed += 1
            continue
        data = volume.data
        print(f"{describe(volume.geometry)}; dtype {data.dtype}, values "
              f"[{np.min(data):g}, {np.max(data):g}]")
    return 1 if failed else 0


def run_sample(args: argparse.Namespace) -> int:
    from ..synthetic import make_cohort, write_cohort

    cases = make_cohort(args.subjects, seed=args.seed)
    folder = write_cohort(args.out, cases)
    print(f"wrote {len(cases)} synthetic volumes to {folder}")
    return 0
