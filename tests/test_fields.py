"""One declaration of the user-facing options (``napari_weakseg.fields``): every declared
field has a flag that parses back to the value, its help, its range; the existing flags
stay; a new user-facing field cannot be added without its declaration."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from napari_weakseg.errors import OptionError
from napari_weakseg.fields import (add_arguments, check_value, given_flags, option_fields,
                                   undeclared_fields, values_from_args)
from napari_weakseg.inference.export.options import ExportOptions
from napari_weakseg.training.config import TrainConfig

#: fields deliberately without a declaration, with where they are set instead
INTERNAL = {
    TrainConfig: {
        "method": "--method / the Train panel's method list (chosen from the project)",
        "method_options": "--option KEY=VALUE, checked per method",
        "checkpoint_every": "profiles; the panel derives it from val_every",
        "seed": "profiles and benchmarks",
        "amp": "profiles",
        "sampling": "the method's default",
        "half_precision_weights": "benchmarks",
        "flip_tta_validation": "benchmarks",
        "intensity_augmentation": "profiles",
        "prefetch": "always on (same batches either way)",
        "channels_last": "benchmarks (no end-to-end gain)",
        "fine_tune_lr_scale": "benchmarks",
    },
    ExportOptions: {"batch_slices": "the predictor's batching, not the user's choice"},
}
CLASSES = list(INTERNAL)


@pytest.mark.parametrize("cls", CLASSES)
def test_every_field_is_declared_or_listed_as_internal(cls):
    """A new user-facing field needs a declaration (fields.option_field) — or an entry here
    saying why it has no flag and no form widget."""
    assert set(undeclared_fields(cls)) == set(INTERNAL[cls])


@pytest.mark.parametrize("cls", CLASSES)
def test_declarations_are_complete(cls):
    flags = [o.cli_flag for o in option_fields(cls) if o.cli]
    assert len(flags) == len(set(flags))
    for option in option_fields(cls):
        assert option.label and option.help and "\n" not in option.help, option.name
        assert option.kind is not None or option.parse is not None, option.name
        if option.none_text is not None and option.kind in (int, float):
            assert option.minimum is not None and option.nullable, option.name
        if option.choice_labels is not None:
            assert len(option.choice_labels) == len(option.choices), option.name
        if option.minimum is not None and option.maximum is not None:
            assert option.minimum < option.maximum, option.name
        default = option.default
        if default is not None and option.kind in (int, float):
            check_value(option, default)  # the defaults are in range


def test_declared_choices_are_the_known_names():
    from napari_weakseg.postprocess import POSTPROCESSORS
    from napari_weakseg.preprocess import PIPELINES

    train = {o.name: o for o in option_fields(TrainConfig)}
    assert train["preprocessing"].choices == PIPELINES
    assert train["postprocessing"].choices == POSTPROCESSORS
    assert {o.name: o for o in option_fields(ExportOptions)}["postprocess"].choices == \
        POSTPROCESSORS


def parser_for(cls) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(parser, cls)
    return parser


#: (class, argv, the stored values it gives) — every declared flag appears at least once
ROUND_TRIPS = [
    (TrainConfig, ["--iterations", "7", "--batch-size", "3", "--size", "64"],
     {"iterations": 7, "batch_size": 3, "size": 64}),
    (TrainConfig, ["--width", "8", "--lr", "0.01", "--val-every", "5", "--threads", "2"],
     {"base_width": 8, "lr": 0.01, "val_every": 5, "threads": 2}),
    (TrainConfig, ["--device", "cuda:1", "--init", "zoo-model", "--minutes", "2.5",
                   "--parent-distillation", "1.5"],
     {"device": "cuda:1", "init_model": "zoo-model", "max_seconds": 150.0,
      "parent_distillation": 1.5}),
    (TrainConfig, ["--preprocessing", "spacing", "--target-spacing", "1.5", "1.25",
                   "--normalisation", "zscore", "--postprocess", "largest"],
     {"preprocessing": "spacing", "target_spacing": [1.5, 1.25], "normalisation": "zscore",
      "postprocessing": "largest"}),
    (TrainConfig, [], {}),
    (ExportOptions, ["--probabilities", "--uncertainty", "--largest-component",
                     "--fill-holes", "--flip-tta", "--force"],
     {"probabilities": True, "uncertainty": True, "largest_component": True,
      "fill_holes": True, "flip_tta": True, "force": True}),
    (ExportOptions, ["--device", "cpu", "--shard", "1/4", "--prefetch", "0", "--threads", "3",
                     "--postprocess", "anatomy", "--no-qc-report", "--qc-lowest", "2",
                     "--tta", "none"],
     {"device": "cpu", "shard": (1, 4), "prefetch": 0, "threads": 3, "postprocess": "anatomy",
      "qc_report": False, "qc_lowest": 2, "tta": "none"}),
    (ExportOptions, ["--tta", "mirror"], {"tta": "mirror"}),
    (ExportOptions, ["--qc-report"], {"qc_report": True}),
    (ExportOptions, [], {}),
]


@pytest.mark.parametrize("cls, argv, expected", ROUND_TRIPS)
def test_flags_parse_to_the_stored_values(cls, argv, expected):
    args = parser_for(cls).parse_args(argv)
    values = values_from_args(args, cls)
    assert values == expected
    instance = cls(**values)  # accepted by the dataclass as they are
    assert {k: getattr(instance, k) for k in values} == expected


@pytest.mark.parametrize("cls", CLASSES)
def test_every_declared_flag_is_in_the_round_trips(cls):
    given = {arg for c, argv, _ in ROUND_TRIPS if c is cls for arg in argv
             if arg.startswith("--")}
    declared = {o.cli_flag for o in option_fields(cls) if o.cli}
    assert declared - given - {"--qc-report"} == set()


@pytest.mark.parametrize("cls", CLASSES)
def test_every_flag_has_the_declared_help(cls):
    parser = parser_for(cls)
    actions = {flag: action for action in parser._actions for flag in action.option_strings}
    for option in option_fields(cls):
        if not option.cli:
            assert option.cli_flag not in actions
            continue
        assert actions[option.cli_flag].help == option.help
        assert actions[option.cli_flag].dest == option.name
    parser.format_help()  # no stray % in a help text


#: the flags of the commands before they were generated: none may disappear
TRAIN_FLAGS = ["--iterations", "--batch-size", "--size", "--width", "--lr", "--init",
               "--device", "--minutes", "--preprocessing", "--target-spacing",
               "--normalisation", "--postprocess", "--method", "--profile", "--val",
               "--option", "--ground-truth", "--out", "--force", "--run-dir", "--resume"]
EXPORT_FLAGS = ["--out", "--shard", "--force", "--probabilities", "--uncertainty",
                "--postprocess", "--largest-component", "--fill-holes", "--device",
                "--flip-tta", "--tag", "--threads", "--prefetch", "--no-qc-report",
                "--qc-lowest", "--tta"]


@pytest.mark.parametrize("command, flags", [("train", TRAIN_FLAGS), ("export", EXPORT_FLAGS)])
def test_the_commands_keep_their_flags(command, flags):
    from napari_weakseg.cli import build_parser

    sub = next(a for a in build_parser()._actions
               if isinstance(a, argparse._SubParsersAction)).choices[command]
    present = {flag for action in sub._actions for flag in action.option_strings}
    assert set(flags) - present == set()


def test_not_given_leaves_the_defaults():
    """Not given = None in the namespace (a profile's or the dataclass's value applies)."""
    args = parser_for(ExportOptions).parse_args([])
    assert ExportOptions(**values_from_args(args, ExportOptions)) == ExportOptions()
    args = parser_for(TrainConfig).parse_args(["--lr", "0.5"])
    assert [flag for flag, value in given_flags(args, TrainConfig) if value] == ["--lr"]


@pytest.mark.parametrize("cls, argv", [
    (TrainConfig, ["--iterations", "many"]),
    (TrainConfig, ["--preprocessing", "crop"]),
    (TrainConfig, ["--target-spacing", "1.0"]),
    (ExportOptions, ["--postprocess", "biggest"]),
    (ExportOptions, ["--shard", "4/4"]),
    (ExportOptions, ["--qc-lowest", "1.5"]),
])
def test_bad_flags_are_usage_errors(cls, argv):
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        parser_for(cls).parse_args(argv)


def _numbers(cls):
    return [pytest.param(cls, o, id=f"{cls.__name__}.{o.name}") for o in option_fields(cls)
            if o.kind in (int, float) and o.minimum is not None]


@pytest.mark.parametrize("cls, option", _numbers(TrainConfig) + _numbers(ExportOptions))
def test_declared_minima_are_refused_below(cls, option):
    bound = option.stored(option.minimum)
    below = bound - 1
    single = dataclasses.replace(option, nargs=None)
    values = {option.name: [below] * option.nargs if option.nargs else below}
    with pytest.raises(OptionError, match=option.name if cls is TrainConfig else "--"):
        if cls is TrainConfig:
            TrainConfig(**values).validate()
        else:
            cls(**values)
    if option.above_minimum:
        with pytest.raises(OptionError, match="greater than"):
            check_value(single, bound)
    else:
        check_value(single, bound)  # the minimum itself is allowed
    with pytest.raises(OptionError, match="expected"):
        check_value(single, "seven")


@pytest.mark.parametrize("overrides, message", [
    ({"iterations": 0}, "iterations: 0 is too small (at least 1)"),
    ({"batch_size": 2.5}, "batch_size: expected a whole number"),
    ({"base_width": 0}, "base_width (--width): 0 is too small"),
    ({"lr": -1.0}, "lr: -1.0 must be greater than 0"),
    ({"lr": float("nan")}, "lr: expected a finite number"),
    ({"max_seconds": 0.0}, "max_seconds (--minutes): 0.0 must be greater than 0"),
    ({"preview_every_s": -1.0}, "preview_every_s: -1.0 must be greater than 0"),
    ({"threads": 0}, "threads: 0 is too small (at least 1)"),
    ({"preprocessing": "crop"}, "preprocessing: 'crop' is not one of resize, spacing"),
    ({"size": 100}, "multiple of 16"),
])
def test_validate_messages_name_the_option(overrides, message):
    with pytest.raises(OptionError) as error:
        TrainConfig(**overrides).validate()
    assert message in str(error.value)


def test_the_defaults_did_not_move():
    """The declaration kept the dataclasses' defaults."""
    config = TrainConfig()
    assert (config.iterations, config.batch_size, config.size, config.base_width, config.lr,
            config.val_every, config.device, config.threads, config.init_model,
            config.max_seconds, config.preprocessing, config.target_spacing,
            config.normalisation, config.postprocessing, config.preview_every_s) == \
        (60000, 12, 256, 16, None, 200, "auto", None, None, None, "resize", None,
         "wsl4mis-p99-minmax", "anatomy", None)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert ExportOptions() == ExportOptions(
        probabilities=False, uncertainty=False, largest_component=False, fill_holes=False,
        flip_tta=False, device="auto", force=False, shard=None, prefetch=1, threads=None,
        batch_slices=16, postprocess=None, qc_report=True, qc_lowest=10, tta=None)
