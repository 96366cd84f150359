"""Compare slice-choice strategies of ``annotation_effort.py`` over several seeds, paired,
at equal annotation effort (issue 21: "clearly better than random at equal effort").

    .venv/bin/python benchmarks/effort_seeds.py runs/inv-random-s* runs/inv-ase-s* \
        runs/inv-cold-s* --reference random --out runs/inv-seeds

Each argument is an ``annotation_effort.py --out`` folder (its ``annotation_effort.json``);
runs are grouped by arm (``init-method-kind-strategy[-measure]``) and paired by their
``--seed`` (the seed draws the annotator's patients and the training seeds, so two arms with
the same seed scribble the same patients and differ only in the slices chosen).

Per arm and round: the mean Dice over the seeds (and its standard deviation). Then, against
the ``--reference`` arm (a strategy name, e.g. ``random``), per seed:

* **at equal effort** — each run's Dice curve, linear between rounds and starting at the
  round-0 model (0 effort), averaged over the effort range both runs cover (the area
  between the curves divided by that range: "Dice gained at the same drawing time"), in
  estimated minutes and in strokes;
* **per round** — the difference at each round (same number of slices).

The paired differences are summarised by their mean, a 95 % t interval, how many seeds are
ahead, and an exact sign-flip permutation p-value (two-sided; all ``2^n`` sign patterns of
the ``n`` paired differences — no normality assumed; with 6 seeds the smallest possible p is
1/32). Writes ``effort_seeds.md`` and ``effort_seeds.png`` (mean curves; the plot of
``annotation_effort.py``) into ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotation_effort import plot_png  # noqa: E402


def load_runs(folders: list[Path]) -> dict[str, dict[int, list[dict]]]:
    """arm → seed → that run's rows (round order)."""
    arms: dict[str, dict[int, list[dict]]] = {}
    for folder in folders:
        path = folder / "annotation_effort.json" if folder.is_dir() else folder
        if not path.is_file():
            raise SystemExit(f"{path}: no annotation_effort.json (is the run finished?)")
        result = json.loads(path.read_text())
        seed = int(result["settings"]["seed"])
        by_arm: dict[str, list[dict]] = {}
        for row in result["rounds"]:
            by_arm.setdefault(row["arm"], []).append(row)
        for arm, rows in by_arm.items():
            if seed in arms.setdefault(arm, {}):
                raise SystemExit(f"{path}: arm {arm} seed {seed} given twice")
            arms[arm][seed] = sorted(rows, key=lambda r: r["round"])
    return arms


def effort_of(row: dict, axis: str) -> float:
    return float(row["minutes"] if axis == "minutes" else row["effort"]["strokes"])


def mean_gain_at_equal_effort(rows: list[dict], reference: list[dict], axis: str,
                              points: int = 2001) -> float:
    """Mean of (Dice of ``rows`` − Dice of ``reference``) over the effort range both cover,
    each curve linear between rounds (round 0 at effort 0)."""
    xa = [effort_of(r, axis) for r in rows]
    xr = [effort_of(r, axis) for r in reference]
    top = min(xa[-1], xr[-1])
    if top <= 0:
        return float("nan")
    grid = np.linspace(0.0, top, points)
    da = np.interp(grid, xa, [r["mean_dice"] for r in rows])
    dr = np.interp(grid, xr, [r["mean_dice"] for r in reference])
    return float(np.trapezoid(da - dr, grid) / top)


def sign_flip_p(differences: list[float]) -> float:
    """Exact two-sided sign-flip permutation p-value of the mean of paired differences."""
    values = np.asarray([d for d in differences if np.isfinite(d)], dtype=np.float64)
    if len(values) == 0:
        return float("nan")
    observed = abs(values.mean())
    flips = [abs((values * np.array(signs)).mean())
             for signs in itertools.product((1, -1), repeat=len(values))]
    return float(np.mean([f >= observed - 1e-12 for f in flips]))


def summary(differences: list[float]) -> dict:
    """Mean, 95 % t interval, seeds ahead (of those with a difference), sign-flip p."""
    from scipy import stats

    values = np.asarray([d for d in differences if np.isfinite(d)], dtype=np.float64)
    n = len(values)
    mean = float(values.mean()) if n else float("nan")
    if n > 1:
        half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))
    else:
        half = float("nan")
    return {"n": n, "mean": mean, "low": mean - half, "high": mean + half,
            "ahead": int((values > 0).sum()), "p": sign_flip_p(list(values))}


def _fmt(value: float, spec: str = "+.3f") -> str:
    return "—" if value is None or not np.isfinite(value) else format(value, spec)


def compare(arms: dict[str, dict[int, list[dict]]], reference: str) -> str:
    """The markdown report."""
    ref_arms = [a for a in arms if a.endswith(f"-{reference}")]
    if len(ref_arms) != 1:
        raise SystemExit(f"--reference {reference!r} matches {len(ref_arms)} arms: "
                         f"{', '.join(arms)}")
    ref = ref_arms[0]
    lines = ["### Mean Dice per round over the seeds (± standard deviation)", ""]
    rounds = max(len(rows) for runs in arms.values() for rows in runs.values())
    lines.append("| arm | seeds | " + " | ".join(f"round {i}" for i in range(rounds))
                 + " | strokes after the last round |")
    lines.append("|---|---|" + "---|" * rounds + "---|")
    for arm, runs in arms.items():
        cells = []
        for i in range(rounds):
            values = [rows[i]["mean_dice"] for rows in runs.values() if len(rows) > i]
            cells.append(f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"
                         if len(values) > 1 else (f"{values[0]:.3f}" if values else "—"))
        strokes = np.mean([rows[-1]["effort"]["strokes"] for rows in runs.values()])
        lines.append(f"| {arm} | {','.join(map(str, sorted(runs)))} | " + " | ".join(cells)
                     + f" | {strokes:.0f} |")
    lines += ["", f"### Against `{ref}`, paired by seed", "",
              "Differences in mean Dice (arm − reference): mean [95 % t interval], seeds "
              "ahead / seeds, exact sign-flip p.", "",
              "| arm | at equal minutes | at equal strokes | "
              + " | ".join(f"round {i}" for i in range(1, rounds)) + " |",
              "|---|---|---|" + "---|" * (rounds - 1)]
    for arm, runs in arms.items():
        if arm == ref:
            continue
        seeds = sorted(set(runs) & set(arms[ref]))
        cells = []
        for axis in ("minutes", "strokes"):
            s = summary([mean_gain_at_equal_effort(runs[k], arms[ref][k], axis)
                         for k in seeds])
            cells.append(f"{_fmt(s['mean'])} [{_fmt(s['low'])}, {_fmt(s['high'])}], "
                         f"{s['ahead']}/{s['n']}, p {_fmt(s['p'], '.2f')}")
        for i in range(1, rounds):
            s = summary([runs[k][i]["mean_dice"] - arms[ref][k][i]["mean_dice"]
                         for k in seeds if len(runs[k]) > i and len(arms[ref][k]) > i])
            cells.append(f"{_fmt(s['mean'])}, {s['ahead']}/{s['n']}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", "Per seed, mean Dice gained at equal minutes (arm − reference):", "",
              "| arm | " + " | ".join(f"seed {k}" for k in sorted(arms[ref])) + " |",
              "|---|" + "---|" * len(arms[ref])]
    for arm, runs in arms.items():
        if arm == ref:
            continue
        cells = [_fmt(mean_gain_at_equal_effort(runs[k], arms[ref][k], "minutes"))
                 if k in runs else "—" for k in sorted(arms[ref])]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def mean_rows(arms: dict[str, dict[int, list[dict]]]) -> list[dict]:
    """Per arm and round, the seeds' mean Dice, minutes and strokes (for the plot)."""
    out = []
    for arm, runs in arms.items():
        rounds = min(len(rows) for rows in runs.values())
        for i in range(rounds):
            rows = [r[i] for r in runs.values()]
            out.append({"arm": f"{arm} (mean of {len(rows)} seeds)", "round": i,
                        "mean_dice": float(np.mean([r["mean_dice"] for r in rows])),
                        "minutes": float(np.mean([r["minutes"] for r in rows])),
                        "effort": {"strokes": float(np.mean([r["effort"]["strokes"]
                                                             for r in rows]))}})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="annotation_effort.py --out folders")
    parser.add_argument("--reference", default="random", help="the strategy compared against")
    parser.add_argument("--out", type=Path, help="folder for effort_seeds.md / .png")
    parser.add_argument("--target", type=float, default=0.85)
    args = parser.parse_args(argv)
    arms = load_runs(args.runs)
    report = compare(arms, args.reference)
    print(report)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        from napari_weakseg.io.atomic import atomic_path, write_bytes_atomic

        write_bytes_atomic(args.out / "effort_seeds.md", report.encode())
        with atomic_path(args.out / "effort_seeds.png", suffix=".png") as temporary:
            plot_png(mean_rows(arms), temporary, args.target)
        print(f"wrote {args.out / 'effort_seeds.md'}, .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
