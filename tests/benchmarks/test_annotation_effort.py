"""benchmarks/annotation_effort.py (issue 21): the loop's mechanics on synthetic data, not
the values — ``--quick`` writes every number, the slice strategies pick what they say."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "annotation_effort.py"


def _module():
    spec = importlib.util.spec_from_file_location("annotation_effort", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


def test_quick_mode_writes_rounds_table_and_plot(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads((out / "annotation_effort.json").read_text())
    rows = result["rounds"]
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[0]["mean_dice"] is None  # from scratch: no model before round 1
    assert rows[1]["strategy_used"] == "coverage"  # nothing to rank with yet
    assert rows[2]["strategy_used"] == "suggest"
    for previous, row in zip(rows[1:], rows[2:]):
        assert row["effort"]["slices"] == previous["effort"]["slices"] + 2
        assert row["effort"]["strokes"] >= previous["effort"]["strokes"]
        assert row["seconds"] > previous["seconds"]
    for row in rows[1:]:
        assert len(row["picks"]) == 2
        assert 0.0 <= row["mean_dice"] <= 1.0 and set(row["dice"]) == {"RV", "MYO", "LV"}
        assert row["iterations"] == 3
    picked = [tuple(p) for r in rows for p in r["picks"]]
    assert len(picked) == len(set(picked))  # a slice is never annotated twice
    table = (out / "annotation_effort.md").read_text()
    assert "| arm | round |" in table and "reach mean Dice 0.85" in table
    png = (out / "annotation_effort.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # the accepted corrections are in the project store as sparse, slices declared complete
    sys.path.insert(0, str(REPO))
    from napari_weakseg.store import Project

    project = Project.open(out / "work" / rows[0]["arm"] / "project")
    try:
        declared = {(r.volume_name, z) for r in project.annotations(kind="sparse")
                    for z in (r.declared_slices or {})}
        assert declared == set(picked)
        assert len(project.models()) == 2
    finally:
        project.close()


def test_slice_strategies():
    module = _module()
    depths = {"a": 10, "b": 6}
    touched = {"a": {0}, "b": set()}
    rng = random.Random(0)
    picks = module.choose_slices("random", 5, depths, touched, rng)
    assert len(set(picks)) == 5 and ("a", 0) not in picks
    assert picks == module.choose_slices("random", 5, depths, touched, random.Random(0))
    # coverage: the untouched volume first (its middle), then far from what is annotated
    picks = module.choose_slices("coverage", 3, depths, touched, random.Random(0))
    assert picks[0] == ("b", 2) or picks[0] == ("b", 3)
    assert ("a", 9) in picks
    scores = {"a": np.arange(10.0), "b": np.full(6, 100.0)}
    scores["b"][4] = -1
    picks = module.choose_slices("suggest", 6, depths, touched, rng, scores)
    assert picks[:5] == [("b", 0), ("b", 1), ("b", 2), ("b", 3), ("b", 5)]
    assert picks[5] == ("a", 9)
    # spread: each volume's best before any volume's second; touched slices skipped
    picks = module.choose_slices("suggest-spread", 4, depths, touched, rng, scores)
    assert picks == [("b", 2), ("a", 9), ("b", 3), ("a", 8)]  # b: ties, middle first
    # cold: while nothing is annotated, every volume's middle slice (best volume first);
    # then the pooled ranking of suggest
    nothing = {"a": set(), "b": set()}
    picks = module.choose_slices("suggest-cold", 3, depths, nothing, rng, scores)
    assert picks == [("b", 2), ("a", 4), ("b", 3)]
    assert module.choose_slices("suggest-cold", 6, depths, touched, rng, scores) == \
        module.choose_slices("suggest", 6, depths, touched, rng, scores)
    # never more than the free slices
    assert len(module.choose_slices("random", 99, depths, touched, rng)) == 15


@pytest.mark.parametrize("depth, exclude, expected", [
    (1, (), [0]),
    (5, (), [2, 1, 3, 0, 4]),
    (4, (), [1, 2, 0, 3]),          # two middles: the lower z first
    (6, (2, 3), [1, 4, 0, 5]),
    (3, (0, 1, 2), []),
    (0, (), []),
])
def test_middle_out(depth, exclude, expected):
    assert _module().middle_out(depth, exclude) == expected


def test_cold_start_picks_middle_slices_of_the_least_sure_volumes_first():
    module = _module()
    scores = {"a": np.array([0.9, 0.1, 0.1, 0.1, 0.1]),   # best 0.9, but at the end
              "b": np.array([0.1, 0.2, 0.3, 0.95]),
              "c": np.zeros(6),
              "d": np.array([])}
    # pass 1: each volume's middle slice, the volume whose best slice scores highest first
    assert module.cold_start_picks(scores, 3) == [("b", 1), ("a", 2), ("c", 2)]
    # pass 2: the next slice from each middle outwards; done slices skipped
    assert module.cold_start_picks(scores, 5, exclude={"a": [2]}) == [
        ("b", 1), ("a", 1), ("c", 2), ("b", 2), ("a", 3)]
    assert len(module.cold_start_picks(scores, 99)) == 15
    assert module.cold_start_picks(scores, 0) == []
