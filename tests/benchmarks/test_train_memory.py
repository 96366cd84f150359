"""benchmarks/train_memory.py (issue 20): a cohort measured in one process goes lazy when its
prepared slices exceed the cache budget, and every column is filled."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_memory.py"


def test_child_row_with_a_lazy_cohort(monkeypatch):
    spec = importlib.util.spec_from_file_location("train_memory", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    monkeypatch.setenv("WEAKSEG_SLICE_CACHE_MB", "0.05")
    row = module.child(6, 7, 1, (3, 32, 32))
    assert row["volumes"] == 6 and row["slices"] == 18 and row["lazy"] is True
    assert row["peak_anon_mib"] > 0 and row["peak_rss_mib"] >= row["peak_anon_mib"] * 0.5
    assert row["it_per_s"] > 0
