"""Every method's typed options (``Method.Options``): the defaults they had as dicts, what is
refused (unknown names, wrong types), and the dict ↔ dataclass round trip (the stored format,
``method_options`` in config.json / run.json, is a plain dict)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from napari_weakseg.errors import OptionError
from napari_weakseg.methods import available_methods, get_method
from napari_weakseg.methods.base import MethodOptions
from napari_weakseg.training.config import check_method_options

#: The reference: each method's options and defaults before they were typed — the
#: ``DEFAULTS`` dicts of pce, full, effdnet, mixed; for refineseg and disambig (which had
#: none) the defaults of their ``options.get(name, default)`` reads.
OLD_DEFAULTS = {
    "pce": {"use_coarse_pos": True},
    "full": {"ce_weight": 0.5, "dice_weight": 0.5},
    "effdnet": {"lam": 0.6, "delta": 0.3, "fbsl_k": 8, "tau": 0.07, "use_fbsl": True,
                "use_fadc": True, "fadc_box": "all", "fadc_max_redraws": None,
                "teacher_mode": "train", "teacher_init": "random", "ema_decay": 0.99,
                "noise_std": 0.1, "noise_clip": 0.05, "seed": 2022},
    "mixed": {"scribble_weight": 1.0, "coarse_weight": 1.0, "partial_weight": 1.0,
              "dense_weight": 1.0, "effdnet_terms": True, "entropy_weight": 0.0,
              "dense_ce_weight": 0.5, "dense_dice_weight": 0.5, "num_positive": 1,
              "num_negative": 1, "effdnet": {}, "refineseg": {}, "disambig": {}},
    "refineseg": {"ablation": "full", "alpha": 0.6, "beta": 0.4, "lam": 0.2, "eps": 1e-6,
                  "dice_mode": "per_class", "negative_multi": "mean", "use_heads": True,
                  "use_negative": True, "use_regulariser": True, "regularise_negative": False,
                  "num_positive": 1, "num_negative": 1, "learn_complementary": False,
                  "head_normalisation": "softmax", "head_init_diag": 0.9,
                  "head_init_scale": 0.1},
    "disambig": {"annotated_from": "declared", "gamma": 2.0, "eps": 1e-6, "smooth": 1.0,
                 "unlabelled_weight": 3.0, "entropy_weight": 1.0},
}

#: Valid non-default values of every option (the methods accept them when built).
OTHER_VALUES = {
    "pce": {"use_coarse_pos": False},
    "full": {"ce_weight": 1.0, "dice_weight": 0.25},
    "effdnet": {"lam": 0.5, "delta": 0.1, "fbsl_k": 4, "tau": 0.1, "use_fbsl": False,
                "use_fadc": False, "fadc_box": "foreground", "fadc_max_redraws": 3,
                "teacher_mode": "eval", "teacher_init": "copy", "ema_decay": 0.9,
                "noise_std": 0.2, "noise_clip": 0.1, "seed": 7},
    "mixed": {"scribble_weight": 0.5, "coarse_weight": 2.0, "partial_weight": 0.25,
              "dense_weight": 3.0, "effdnet_terms": False, "entropy_weight": 0.5,
              "dense_ce_weight": 0.25, "dense_dice_weight": 0.75, "num_positive": 2,
              "num_negative": 3, "effdnet": {"fbsl_k": 4, "lam": 0.5},
              "refineseg": {"ablation": "no_heads"}, "disambig": {"gamma": 1.0}},
    "refineseg": {"ablation": "positive_only", "alpha": 0.5, "beta": 0.5, "lam": 0.1,
                  "eps": 1e-5, "dice_mode": "global", "negative_multi": "mass",
                  "use_heads": False, "use_negative": True, "use_regulariser": False,
                  "regularise_negative": True, "num_positive": 2, "num_negative": 3,
                  "learn_complementary": True, "head_normalisation": "softplus",
                  "head_init_diag": 0.8, "head_init_scale": 0.2},
    "disambig": {"annotated_from": "present", "gamma": 1.0, "eps": 1e-5, "smooth": 0.5,
                 "unlabelled_weight": 2.0, "entropy_weight": 0.0},
}

METHODS = sorted(OLD_DEFAULTS)


def _wrong_values(default):
    """Values of the wrong type for an option with this default."""
    if default is None:  # fadc_max_redraws: a whole number or None
        return ["3", 2.5, True]
    if isinstance(default, bool):
        return [1, "true", None]
    if isinstance(default, int):
        return [2.5, "2", True, None]
    if isinstance(default, float):
        return ["0.5", True, None, [0.5]]
    if isinstance(default, str):
        return [3, None, True]
    return [[], "{}", None]  # dict


WRONG = [(method, name, value) for method in METHODS
         for name, default in OLD_DEFAULTS[method].items() for value in _wrong_values(default)]


def test_every_registered_method_is_in_the_table():
    assert set(available_methods()) == set(OLD_DEFAULTS) == set(OTHER_VALUES)
    for method in METHODS:
        assert set(OTHER_VALUES[method]) == set(OLD_DEFAULTS[method])


@pytest.mark.parametrize("method", METHODS)
def test_options_dataclass_has_the_old_defaults(method):
    cls = get_method(method)
    options = cls.Options
    assert dataclasses.is_dataclass(options) and issubclass(options, MethodOptions)
    assert options.__dataclass_params__.frozen
    assert [f.name for f in dataclasses.fields(options)] == list(OLD_DEFAULTS[method])
    for derived in (options().to_dict(), options.defaults(), cls.DEFAULTS):
        assert derived == OLD_DEFAULTS[method]
        assert {k: type(v) for k, v in derived.items()} == \
            {k: type(v) for k, v in OLD_DEFAULTS[method].items()}
    with pytest.raises(dataclasses.FrozenInstanceError):
        options().__setattr__(next(iter(OLD_DEFAULTS[method])), None)


@pytest.mark.parametrize("method", METHODS)
def test_built_method_holds_typed_options(method):
    cls = get_method(method)
    built = cls(4, 4)
    assert isinstance(built.options, cls.Options)
    assert built.options.to_dict() == OLD_DEFAULTS[method]
    given = {k: v for k, v in OTHER_VALUES[method].items() if k != "ablation"}
    assert cls(4, 4, **given).options.to_dict() == {**OLD_DEFAULTS[method], **given}


@pytest.mark.parametrize("method", METHODS)
def test_unknown_option_refused_with_the_old_text(method):
    cls = get_method(method)
    known = sorted(OLD_DEFAULTS[method])
    text = f"unknown options for {method!r}: ['no_such_option']; known: {known}"
    for build in (lambda: cls(4, 4, no_such_option=1),
                  lambda: cls.Options.from_dict({"no_such_option": 1}, method)):
        with pytest.raises(OptionError) as info:
            build()
        assert str(info.value) == text
    with pytest.raises(OptionError, match="no_such_option"):
        check_method_options(method, {"no_such_option": 1})


@pytest.mark.parametrize("method, name, value", WRONG)
def test_wrong_type_refused_naming_the_option(method, name, value):
    cls = get_method(method)
    with pytest.raises(OptionError, match=f"option '{name}' of '{method}': expected"):
        cls.Options.from_dict({name: value}, method)
    with pytest.raises(ValueError, match=name):  # refineseg checks its preset name first
        cls(4, 4, **{name: value})


@pytest.mark.parametrize("method", METHODS)
def test_whole_numbers_accepted_for_float_options(method):
    options = get_method(method).Options
    for name, default in OLD_DEFAULTS[method].items():
        if isinstance(default, float):
            value = getattr(options.from_dict({name: 2}, method), name)
            assert value == 2.0 and type(value) is float


def test_none_or_whole_number_for_optional_option():
    options = get_method("effdnet").Options
    assert options.from_dict({"fadc_max_redraws": None}).fadc_max_redraws is None
    assert options.from_dict({"fadc_max_redraws": 5}).fadc_max_redraws == 5


@pytest.mark.parametrize("method", METHODS)
def test_dict_round_trip(method):
    options = get_method(method).Options
    for data in (OLD_DEFAULTS[method], OTHER_VALUES[method]):
        typed = options.from_dict(data, method)
        assert typed.to_dict() == data
        stored = json.loads(json.dumps(typed.to_dict()))  # as in config.json / run.json
        assert options.from_dict(stored, method) == typed
    partial = dict(list(OTHER_VALUES[method].items())[:1])
    assert options.from_dict(partial, method).to_dict() == {**OLD_DEFAULTS[method], **partial}


@pytest.mark.parametrize("method", METHODS)
def test_check_method_options_accepts_every_option(method):
    check_method_options(method, OTHER_VALUES[method])


def test_refineseg_preset_is_applied_under_explicit_options():
    cls = get_method("refineseg")
    built = cls(3, 4, ablation="no_heads")
    assert built.options.to_dict() == {**OLD_DEFAULTS["refineseg"], "ablation": "no_heads",
                                       "use_heads": False}
    assert cls(3, 4, **built.options.to_dict()).options == built.options
    assert cls(3, 4, ablation="positive_only", use_negative=True).options.use_negative
