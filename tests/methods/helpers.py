"""Shared helpers for the method tests: tensors from arrays, oracle comparisons."""

from __future__ import annotations

import numpy as np
import pytest
import torch

RTOL = 1e-5


def as_tensor(array) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array))


def as_float(value) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def assert_close(value, expected, rtol: float = RTOL, atol: float = 1e-7) -> None:
    """Scalar ``value`` equals ``expected`` within ``rtol`` (relative) / ``atol``."""
    assert as_float(value) == pytest.approx(as_float(expected), rel=rtol, abs=atol)
