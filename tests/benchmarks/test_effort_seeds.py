"""benchmarks/effort_seeds.py (issue 21): paired comparison of strategies over seeds at
equal effort — the arithmetic on hand-made runs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "effort_seeds.py"


def _module():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("effort_seeds", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _rows(arm: str, dice: list[float], minutes: list[float], strokes: list[int]) -> list:
    return [{"arm": arm, "round": i, "mean_dice": d, "minutes": m, "effort": {"strokes": s}}
            for i, (d, m, s) in enumerate(zip(dice, minutes, strokes))]


def _write_run(folder: Path, seed: int, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    (folder / "annotation_effort.json").write_text(json.dumps(
        {"settings": {"seed": seed}, "rounds": rows}))
    return folder


@pytest.mark.parametrize("arm, reference, axis, expected", [
    # same effort axis, a constant lead of 0.1 after round 0 → the mean over [0, 2] of a
    # difference rising linearly from 0 to 0.1 over [0, 1] then 0.1: (0.05 + 0.1) / 2
    (([0.0, 0.6, 0.7], [0, 1, 2], [0, 10, 20]),
     ([0.0, 0.5, 0.6], [0, 1, 2], [0, 10, 20]), "minutes", 0.075),
    # the arm spends half the effort for the same Dice: on [0, 1] its area is
    # 0.5·0.5/2 + 0.5·(0.5 + 0.6)/2 = 0.4 against the reference's 0.5/2 = 0.25
    (([0.0, 0.5, 0.6], [0, 0.5, 1], [0, 10, 20]),
     ([0.0, 0.5, 0.6], [0, 1, 2], [0, 10, 20]), "minutes", 0.15),
    # …but not on the strokes axis, where both spent the same
    (([0.0, 0.5, 0.6], [0, 0.5, 1], [0, 10, 20]),
     ([0.0, 0.5, 0.6], [0, 1, 2], [0, 10, 20]), "strokes", 0.0),
])
def test_mean_gain_at_equal_effort(arm, reference, axis, expected):
    module = _module()
    gain = module.mean_gain_at_equal_effort(_rows("a", *arm), _rows("r", *reference), axis)
    assert gain == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("differences, p", [
    ([0.1, 0.2, 0.3], 2 / 8),            # all ahead: only all-plus and all-minus as extreme
    ([0.1, -0.1], 1.0),
    ([0.1] * 6, 2 / 64),
    ([], float("nan")),
])
def test_sign_flip_p(differences, p):
    module = _module()
    if np.isnan(p):
        assert np.isnan(module.sign_flip_p(differences))
    else:
        assert module.sign_flip_p(differences) == pytest.approx(p)


def test_report_pairs_runs_by_seed(tmp_path):
    module = _module()
    runs = []
    for seed, lead in ((0, 0.05), (1, 0.02), (2, -0.01)):
        runs.append(_write_run(tmp_path / f"random-s{seed}", seed, _rows(
            "zoo-effdnet-scribble-random", [0.0, 0.6, 0.7], [0, 1, 2], [0, 10, 20])))
        runs.append(_write_run(tmp_path / f"cold-s{seed}", seed, _rows(
            "zoo-effdnet-scribble-suggest-cold-all_structures_entropy",
            [0.0, 0.6 + lead, 0.7 + lead], [0, 1, 2], [0, 10, 20])))
    out = tmp_path / "report"
    assert module.main([str(r) for r in runs] + ["--out", str(out)]) == 0
    text = (out / "effort_seeds.md").read_text()
    assert (out / "effort_seeds.png").stat().st_size > 1000
    row = next(line for line in text.splitlines()
               if line.startswith("| zoo-effdnet-scribble-suggest-cold") and "p " in line)
    assert "2/3" in row and "+0.020, 2/3" in row  # round-1 mean lead and seeds ahead
    assert "| zoo-effdnet-scribble-random | 0,1,2 | 0.000 ± 0.000 | 0.600 ± 0.000" in text
    with pytest.raises(SystemExit, match="matches 0 arms"):
        module.compare(module.load_runs(runs), "coverage")
    with pytest.raises(SystemExit, match="given twice"):
        module.load_runs([runs[0], runs[0]])
