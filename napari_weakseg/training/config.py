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


def profile(name: str, **overrides) -> TrainConfig:
    try:
        base = PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; profiles: {sorted(PROFILES)}") from None
    return replace(base, **overrides)
