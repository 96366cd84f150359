"""Model folders: wrong-typed config.json fields and NaN/Inf weights are refused with one
line naming the folder and the field; configs without the new fields still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from napari_weakseg.errors import ModelError
from napari_weakseg.nets.model_folder import (CONFIG, WEIGHTS, ModelFolderError, load_model,
                                              model_identity, read_config, save_model_folder)
from napari_weakseg.nets.unet import build_network, default_config

CLASSES = ["background", "RV", "MYO", "LV"]


def tiny_folder(folder: Path, **config_overrides) -> Path:
    torch.manual_seed(0)
    network = default_config(base_width=4)
    config = {"network": network, "classes": CLASSES,
              "preprocessing": {"normalisation": "wsl4mis-p99-minmax", "size": [32, 32],
                                "slice_axis": "z", "resize": "bilinear"}}
    config.update(config_overrides)
    return save_model_folder(folder, build_network(network), config, "# tiny\n")


def edit_config(folder: Path, change) -> None:
    config = json.loads((folder / CONFIG).read_text())
    change(config)
    (folder / CONFIG).write_text(json.dumps(config))


def set_weight(folder: Path, value: float) -> None:
    state = torch.load(folder / WEIGHTS, weights_only=True)
    key = "decoder.out_conv.weight"
    state[key] = state[key].clone()
    state[key].view(-1)[3] = value
    torch.save(state, folder / WEIGHTS)


BAD = {
    "network null": (lambda c: c.update(network=None), "'network'"),
    "base_width a string": (lambda c: c["network"].update(base_width="x"), "network.base_width"),
    "num_classes 1": (lambda c: c["network"].update(num_classes=1), "network.num_classes"),
    "size 0": (lambda c: c["preprocessing"].update(size=[0, 0]), "'preprocessing'"),
    "size a string": (lambda c: c["preprocessing"].update(size="big"), "'preprocessing'"),
    "2 class names, 4 outputs": (lambda c: c.update(classes=["background", "LV"]), "'classes'"),
    "classes not names": (lambda c: c.update(classes=[0, 1, 2, 3]), "'classes'"),
    "unknown normaliser": (lambda c: c["preprocessing"].update(normalisation="nope"),
                           "'preprocessing'"),
    "unknown post-processing": (lambda c: c.update(postprocessing={"name": "blobs"}),
                                "'postprocessing'"),
    "config a list": (lambda c: None, "expected a JSON object"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_wrong_typed_config_is_refused_naming_the_field(tmp_path, case):
    folder = tiny_folder(tmp_path / "model")
    change, phrase = BAD[case]
    if case == "config a list":
        (folder / CONFIG).write_text("[1, 2]")
    else:
        edit_config(folder, change)
    with pytest.raises(ModelFolderError) as caught:
        load_model(folder)
    message = str(caught.value)
    assert phrase in message and str(folder) in message and "\n" not in message
    assert isinstance(caught.value, ModelError)


@pytest.mark.parametrize("value, phrase", [(float("nan"), "NaN"), (float("inf"), "Inf"),
                                           (float("-inf"), "Inf")])
def test_non_finite_weights_are_refused(tmp_path, value, phrase):
    folder = tiny_folder(tmp_path / "model")
    set_weight(folder, value)
    with pytest.raises(ModelFolderError, match=f"decoder.out_conv.weight.*{phrase}") as caught:
        load_model(folder)
    assert str(folder / WEIGHTS) in str(caught.value)


def test_missing_weights_are_refused(tmp_path):
    folder = tiny_folder(tmp_path / "model")
    (folder / WEIGHTS).unlink()
    with pytest.raises(ModelFolderError, match=f"no {WEIGHTS}"):
        load_model(folder)
    with pytest.raises(ModelFolderError, match=f"no {WEIGHTS}"):
        model_identity(folder)


@pytest.mark.parametrize("preprocessing", [
    {"normalisation": "wsl4mis-p99-minmax", "size": [128, 128], "slice_axis": "z",
     "resize": "bilinear"},                       # as models/acdc-cine-pce records it
    {"size": 32},                                 # older still
])
def test_config_without_the_new_fields_loads(tmp_path, preprocessing):
    folder = tiny_folder(tmp_path / "model", preprocessing=preprocessing)
    net, config = load_model(folder)
    assert "postprocessing" not in config and read_config(folder) == config
