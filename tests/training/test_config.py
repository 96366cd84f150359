"""Profiles: values, per-method option changes, explicit options winning."""

from __future__ import annotations

import pytest

from napari_weakseg.training.config import PROFILE_METHOD_OPTIONS, TrainConfig, profile


@pytest.mark.parametrize("name, method, options, expected", [
    ("paper", "effdnet", None, {}),
    ("quick-cpu", "effdnet", None, {"use_fadc": False}),
    ("quick-cpu", "effdnet", {"use_fadc": True}, {"use_fadc": True}),
    ("quick-cpu", "effdnet", {"lam": 0.5}, {"use_fadc": False, "lam": 0.5}),
    ("quick-cpu", "disambig", None, {"entropy_weight": 0.0}),
    ("quick-cpu", "disambig", {"entropy_weight": 1.0}, {"entropy_weight": 1.0}),
    ("quick-cpu", "pce", None, {}),
])
def test_profile_method_options(name, method, options, expected):
    config = profile(name, method=method, method_options=options)
    assert config.method_options == expected
    assert TrainConfig.from_dict(config.to_dict()) == config  # recorded in the run as used


def test_profile_options_are_not_shared_between_configs():
    first = profile("quick-cpu", method="effdnet")
    first.method_options["use_fadc"] = True
    assert profile("quick-cpu", method="effdnet").method_options == {"use_fadc": False}
    assert PROFILE_METHOD_OPTIONS["quick-cpu"]["effdnet"] == {"use_fadc": False}


def test_unknown_profile_names_the_choices():
    with pytest.raises(KeyError, match="quick-cpu"):
        profile("fast")
