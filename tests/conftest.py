"""Shared fixtures: paths to ``../shared`` (skipped cleanly when absent), seeded RNGs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WEAKSEG_SHARED", REPO_ROOT.parent / "shared"))
ORACLES = SHARED / "reference" / "oracles"
ACDC = SHARED / "data" / "acdc"


def load_oracle(name: str) -> dict:
    """Arrays of ``../shared/reference/oracles/<name>.npz``; skips the test when absent."""
    path = ORACLES / f"{name}.npz"
    if not path.exists():
        pytest.skip(f"oracle {path} not available")
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture
def oracle():
    return load_oracle


@pytest.fixture(scope="session")
def acdc_dir() -> Path:
    """``../shared/data/acdc``; skips the test when the real data is absent."""
    if not (ACDC / "images").is_dir():
        pytest.skip(f"ACDC data not found at {ACDC}")
    return ACDC


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped where no CUDA GPU is present (``benchmarks/gpu.sh``
    runs them on a GPU machine)."""
    marked = [item for item in items if item.get_closest_marker("cuda")]
    if not marked:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in marked:
        item.add_marker(skip)
