"""Training configuration and profiles (JSON-serialisable)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace


@dataclass
class TrainConfig:
    """Everything a run needs besides its data.

    ``size``: slices are resized to ``size × size`` (multiple of 16). ``base_width``: U-Net
    width (16 = the reference). ``lr``/``optimizer``: ``None`` = the method's defaults.
    ``val_every``/``checkpoint_every`` in iterations. ``device``: ``auto`` (CUDA → MPS →
    CPU), ``cpu``, ``cuda``, ``cuda:N``, ``mps``. ``threads``: CPU threads (``None`` = torch's
    default). ``init_model``: a model folder to fine-tune from.
    """

    method: str = "pce"
    iterations: int = 60000
    batch_size: int = 12
    size: int = 256
    base_width: int = 16
    lr: float | None = None
    val_every: int = 200
    checkpoint_every: int = 200
    seed: int = 2022
    device: str = "auto"
    amp: bool = True
    threads: int | None = None
    init_model: str | None = None
    method_options: dict = field(default_factory=dict)
    max_seconds: float | None = None
    sampling: str | None = None
    half_precision_weights: bool = False
    flip_tta_validation: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}")
        return cls(**data)


#: Named starting points. ``paper``: the WSL4MIS/EFFDNet recipe (256², batch 12, width 16,
#: 60k iterations). ``quick-cpu``: a first useful model on a laptop CPU in minutes — half
#: the resolution, half the width, small batches (measured in benchmarks/train_step.py).
PROFILES: dict[str, TrainConfig] = {
    "paper": TrainConfig(),
    "quick-cpu": TrainConfig(iterations=600, batch_size=8, size=128, base_width=8,
                             val_every=100, checkpoint_every=50, device="cpu"),
}


#: Method options a profile changes from the method's (paper/as-coded) defaults, by method.
#: quick-cpu drops EFFDNet's FADC: it costs ~45 % more time per step (a second student pass)
#: and did not pay back within CPU budgets on ACDC val — 10 min: 0.804 mean Dice without vs
#: 0.714 / 0.731 (two seeds) with; at equal iterations (~850) 0.749 without
#: (``benchmarks/acdc.py effdnet --option use_fadc=false``). It also drops the
#: self-disambiguation entropy regulariser, which delays the minority classes in short runs:
#: 5 min, 3 sources: 0.797 / 0.442 without vs 0.793 / 0.239 with (two seeds); partial
#: sources alone: 0.792 without vs 0.458 with (RV never learnt). Explicit options win;
#: docs/results.md has the tables.
PROFILE_METHOD_OPTIONS: dict[str, dict[str, dict]] = {
    "quick-cpu": {"effdnet": {"use_fadc": False}, "disambig": {"entropy_weight": 0.0}},
}


def profile(name: str, **overrides) -> TrainConfig:
    """The named profile with ``overrides``; ``method_options`` given there are merged over
    the profile's own options for that method (:data:`PROFILE_METHOD_OPTIONS`)."""
    try:
        base = PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; profiles: {sorted(PROFILES)}") from None
    method = overrides.get("method", base.method)
    profile_options = PROFILE_METHOD_OPTIONS.get(name, {}).get(method, {})
    overrides["method_options"] = {**profile_options,
                                   **(overrides.get("method_options") or {})}
    return replace(base, **overrides)
