"""Training configuration and profiles (JSON-serialisable)."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import OptionError, UnknownNameError
from ..fields import check_values, option_field


@dataclass
class TrainConfig:
    """Everything a run needs besides its data.

    ``size``: slices are resized to ``size × size`` (multiple of 16). ``base_width``: U-Net
    width (16 = the reference). ``lr``/``optimizer``: ``None`` = the method's defaults.
    ``val_every``/``checkpoint_every`` in iterations. ``device``: ``auto`` (CUDA → MPS →
    CPU), ``cpu``, ``cuda``, ``cuda:N``, ``mps``. ``threads``: CPU threads (``None`` = torch's
    default). ``init_model``: a model folder to fine-tune from.

    The user-facing fields carry their declaration (:func:`~napari_weakseg.fields.option_field`:
    label, help, flag, bounds): ``weakseg train``'s flags and the Train panel's form are
    generated from it, and :meth:`validate` checks the declared minima.
    """

    method: str = "pce"
    iterations: int = option_field(60000, "Iterations", "training iterations (optimiser steps)",
                                   minimum=1, maximum=10_000_000, step=100)
    batch_size: int = option_field(12, "Batch size", "slices per training step", minimum=1,
                                   maximum=512, step=1)
    size: int = option_field(256, "Slice size (px)", "training slice size (multiple of 16)",
                             minimum=16, maximum=1024, step=16)
    base_width: int = option_field(16, "U-Net width", "U-Net base width", flag="--width",
                                   minimum=1, maximum=256, step=2)
    lr: float | None = option_field(
        None, "Learning rate", "learning rate (default: the method's; a fine-tune starts at "
        "a tenth of it)", minimum=0, above_minimum=True, maximum=10.0, step=0.001, decimals=5,
        none_text="method default")
    val_every: int = option_field(200, "Validate every", "validate every that many iterations",
                                  minimum=1, maximum=1_000_000, step=50)
    checkpoint_every: int = 200
    seed: int = 2022
    device: str = option_field("auto", "Device", "auto, cpu, cuda, cuda:N, mps",
                               suggestions=("auto", "cpu"))  # the panel adds those found
    amp: bool = True
    threads: int | None = option_field(None, "CPU threads", "CPU threads of the training "
                                       "process (default: torch's)", minimum=1, maximum=256)
    init_model: str | None = option_field(
        None, "Start from", "model folder, or zoo model name, to fine-tune from", flag="--init")
    method_options: dict = field(default_factory=dict)
    max_seconds: float | None = option_field(
        None, "Time budget", "wall-clock budget in minutes", flag="--minutes", scale=60,
        minimum=0, above_minimum=True, maximum=100_000, suffix=" min", none_text="no limit")
    sampling: str | None = None
    half_precision_weights: bool = False
    flip_tta_validation: bool = False
    # pre-/post-processing recorded in the model (napari_weakseg.preprocess / .postprocess):
    # ``preprocessing`` "resize" (slices resized whole to size²) or "spacing" (resampled to
    # ``target_spacing`` [y, x] mm — None: the training volumes' median — then centred
    # size² patches); ``normalisation`` by name; ``postprocessing`` none/largest/anatomy.
    # A fine-tune (init_model) inherits all of them, and size/base_width, from its parent.
    preprocessing: str = option_field(
        "resize", "Pre-processing", "resize whole slices to --size, or resample to a target "
        "spacing and take --size patches (default: the profile's)", choices=("resize", "spacing"))
    target_spacing: list[float] | None = option_field(
        None, "Target spacing", "in-plane spacing for --preprocessing spacing (default: the "
        "training volumes' median)", kind=float, nargs=2, metavar=("Y_MM", "X_MM"), minimum=0,
        above_minimum=True, suffix=" mm")
    normalisation: str = option_field("wsl4mis-p99-minmax", "Normalisation",
                                      "intensity normalisation by name (wsl4mis-p99-minmax, "
                                      "zscore)")
    postprocessing: str = option_field(
        "anatomy", "Post-processing", "post-processing the model records for prediction",
        flag="--postprocess", choices=("none", "largest", "anatomy"))
    #: appearance augmentation for other scanners/sequences (``training.data.intensity_augment``)
    intensity_augmentation: bool = False
    #: live previews: every that many seconds the current weights are written to
    #: ``RUN_DIR/model_preview`` (a model folder) and a ``preview`` event is emitted, so a
    #: viewer can show what the model predicts while it trains (``None`` = no previews)
    preview_every_s: float | None = option_field(
        None, "Live preview every", "while training, the Review tab's volume is predicted with "
        "the latest weights this often (a preview layer)", cli=False, minimum=0,
        above_minimum=True, maximum=3600, decimals=0, suffix=" s", none_text="off")
    #: prepare the next batch in a background thread while the current step runs
    #: (``training.loop.BatchPrefetcher``; the batches are the same either way)
    prefetch: bool = True
    #: channels-last (NHWC) network and inputs: measured on 2 CPU cores, 14 % faster per
    #: step at 256² width 16 but 8 % slower at 128² width 8 (benchmarks/train_step.py
    #: --variants), so off unless asked for
    channels_last: bool = False
    #: a fine-tune (``init_model``) without an explicit ``lr`` starts at this fraction of
    #: the method's learning rate: at the full rate a few steps undo the parent — the zoo
    #: model fine-tuned on 10 ACDC volumes for 3 minutes fell from 0.869 to 0.849 val Dice
    #: at 0.01 and kept 0.863 at 0.001 (docs/results.md)
    fine_tune_lr_scale: float = 0.1
    #: learning without forgetting (``training.distill``), off by default: on ACDC with the
    #: zoo model it gained 0.001–0.003 mean Dice per round at +30–40 % training time
    #: (docs/results.md), not enough to pay for itself under a time budget
    parent_distillation: float = option_field(
        0.0, "Keep the parent (LwF)", "a fine-tune learns without forgetting: weight of the "
        "KL divergence from the parent model's prediction on pixels without annotation, "
        "e.g. 1 (default 0: off; training.distill)", minimum=0, maximum=100.0, step=0.1,
        decimals=2)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise OptionError(f"unknown training options {sorted(unknown)}")
        return cls(**data)

    def validate(self, num_classes: int | None = None) -> TrainConfig:
        """Check types and ranges of every field and the method's options (names, types,
        and — with ``num_classes`` — the method's own checks), in the parent process before
        any worker is spawned. Raises :class:`~napari_weakseg.errors.OptionError` naming the
        option; returns ``self``."""
        check_values(self)  # the declared fields: types, minima, choices
        if self.size % 16:
            nearest = max(16, round(self.size / 16) * 16)
            raise OptionError(f"size: {self.size} is not a multiple of 16 (the U-Net halves "
                              f"it four times); try {nearest}")
        _check_int("checkpoint_every", self.checkpoint_every, 1)
        _check_int("seed", self.seed, 0)
        _check_float("fine_tune_lr_scale", self.fine_tune_lr_scale, positive=True)
        for name in ("amp", "half_precision_weights", "flip_tta_validation",
                     "intensity_augmentation"):
            if not isinstance(getattr(self, name), bool):
                raise OptionError(f"{name}: expected true or false, got "
                                  f"{getattr(self, name)!r}")
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise OptionError(f"device: {self.device!r} is not one of auto, cpu, cuda, "
                              "cuda:N, mps")
        if self.sampling is not None and not isinstance(self.sampling, str):
            raise OptionError(f"sampling: expected a name, got {self.sampling!r}")
        if self.init_model is not None:
            folder = Path(self.init_model)
            if not (folder / "config.json").is_file() or not (folder / "weights.pt").is_file():
                raise OptionError(f"init_model: {folder} is not a model folder (config.json "
                                  "and weights.pt expected)")
            from ..nets.model_folder import read_config

            parent = read_config(folder)  # wrong types refused here, naming the field
            if num_classes is not None and len(parent["classes"]) != num_classes:
                raise OptionError(f"init_model: {folder} predicts {len(parent['classes'])} "
                                  f"classes ({', '.join(parent['classes'])}); this project "
                                  f"has {num_classes}")
        if not isinstance(self.method_options, dict):
            raise OptionError(f"method_options: expected a mapping, got "
                              f"{self.method_options!r}")
        check_method_options(self.method, self.method_options, num_classes)
        _check_pipeline(self)
        return self


def _check_pipeline(config: TrainConfig) -> None:
    """The pre-/post-processing options (issue 13): known names, a positive spacing."""
    from ..postprocess import POSTPROCESSORS
    from ..preprocess import NORMALISERS, PIPELINES

    for name, value, known in (("preprocessing", config.preprocessing, PIPELINES),
                               ("normalisation", config.normalisation, tuple(NORMALISERS)),
                               ("postprocessing", config.postprocessing, POSTPROCESSORS)):
        if value not in known:
            raise OptionError(f"{name}: {value!r} is not one of {', '.join(known)}")
    spacing = config.target_spacing
    if spacing is not None:
        if not isinstance(spacing, (list, tuple)) or len(spacing) != 2:
            raise OptionError(f"target_spacing: expected [y, x] in mm, got {spacing!r}")
        for value in spacing:
            _check_float("target_spacing", value, positive=True)


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(f"{name}: expected a whole number, got {value!r}")
    if value < minimum:
        raise OptionError(f"{name}: {value} is too small (at least {minimum})")


def _check_float(name: str, value: Any, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise OptionError(f"{name}: expected a finite number, got {value!r}")
    if positive and value <= 0:
        raise OptionError(f"{name}: {value} must be greater than 0")


def check_method_options(method: str, options: dict, num_classes: int | None = None) -> None:
    """Unknown method, unknown option names and values of the wrong type (the method's
    ``Options`` dataclass decides) raise :class:`OptionError`; with ``num_classes`` the
    method is also built once (its own range checks), which imports torch."""
    from ..methods import get_method

    try:
        cls = get_method(method)
    except KeyError as exc:
        raise OptionError(f"--method: {exc.args[0]}") from None
    if cls.Options is not None:  # the method's typed options: names and types, one rule
        try:
            cls.Options.from_dict(options, method)
        except OptionError as exc:
            raise OptionError(f"--option: {exc}") from None
    if num_classes is not None:
        try:
            cls(num_classes, **options)
        except (ValueError, TypeError, KeyError) as exc:
            raise OptionError(f"--option for {method!r}: {exc}") from None


#: Named starting points. ``paper``: the WSL4MIS/EFFDNet recipe (256², batch 12, width 16,
#: 60k iterations). ``quick-cpu``: a first useful model on a laptop CPU in minutes — half
#: the resolution, half the width, small batches (measured in benchmarks/train_step.py).
PROFILES: dict[str, TrainConfig] = {
    "paper": TrainConfig(),
    "quick-cpu": TrainConfig(iterations=600, batch_size=8, size=128, base_width=8,
                             val_every=100, checkpoint_every=50, device="cpu"),
    # the CPU default: quick-cpu's step cost, plus what makes a model hold on other patients
    # and scanners — in-plane resampling to the training volumes' median spacing (the heart
    # at a constant size in pixels) with 128² patches drawn anywhere in the field of view,
    # and appearance augmentation (training.data.intensity_augment)
    "cpu": TrainConfig(iterations=1000, batch_size=8, size=128, base_width=8,
                       val_every=100, checkpoint_every=50, device="cpu",
                       preprocessing="spacing", intensity_augmentation=True),
}


def default_profile() -> str:
    """``paper`` where a CUDA GPU is present, else ``cpu`` (imports torch)."""
    try:
        import torch

        return "paper" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch is a dependency
        return "cpu"


#: Method options a profile changes from the method's (paper/as-coded) defaults, by method.
#: quick-cpu drops EFFDNet's FADC: it costs ~45 % more time per step (a second student pass)
#: and did not pay back within CPU budgets on ACDC val — 10 min: 0.804 mean Dice without vs
#: 0.714 / 0.731 (two seeds) with; at equal iterations (~850) 0.749 without
#: (``benchmarks/acdc.py effdnet --option use_fadc=false``). It also drops the
#: self-disambiguation entropy regulariser, which delays the minority classes in short runs:
#: 5 min, 3 sources: 0.797 / 0.442 without vs 0.793 / 0.239 with (two seeds); partial
#: sources alone: 0.792 without vs 0.458 with (RV never learnt). Explicit options win;
#: docs/results.md has the tables. ``mixed`` runs without EFFDNet's mean-teacher and FBSL
#: terms on CPU: the teacher pass costs ~20–35 % per step with half the batch scribbled
#: (128², batch 8, width 8, one thread).
PROFILE_METHOD_OPTIONS: dict[str, dict[str, dict]] = {
    "quick-cpu": {"effdnet": {"use_fadc": False}, "disambig": {"entropy_weight": 0.0},
                  "mixed": {"effdnet_terms": False}},
    "cpu": {"effdnet": {"use_fadc": False}, "disambig": {"entropy_weight": 0.0},
            "mixed": {"effdnet_terms": False}},
}


def profile(name: str, **overrides) -> TrainConfig:
    """The named profile with ``overrides``; ``method_options`` given there are merged over
    the profile's own options for that method (:data:`PROFILE_METHOD_OPTIONS`)."""
    try:
        base = PROFILES[name]
    except KeyError:
        raise UnknownNameError(f"--profile: unknown profile {name!r}; profiles: "
                          f"{', '.join(sorted(PROFILES))}") from None
    method = overrides.get("method", base.method)
    profile_options = PROFILE_METHOD_OPTIONS.get(name, {}).get(method, {})
    overrides["method_options"] = {**profile_options,
                                   **(overrides.get("method_options") or {})}
    return replace(base, **overrides)
